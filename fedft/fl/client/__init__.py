"""The ClientApp (`app`) and a client's work in a round (`pipeline`): merge the received
arrays, evaluate, train (plain or DP-SGD), attack if simulated malicious (`attack`),
correct gradients for FedProx/SCAFFOLD (`corrections`, `scaffold`), inject faults
(`faults`), and read a deployed node's own data (`node_data`)."""
