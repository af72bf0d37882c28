from fedft.cli import console

console()
