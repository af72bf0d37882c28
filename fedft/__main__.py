import sys

from fedft.cli import main

sys.exit(main())
