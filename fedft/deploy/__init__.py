"""Real deployment: the same ServerApp and ClientApp as a simulation, run as separate
OS processes through Flower's own deployment engine (SuperLink, SuperNodes, `flwr run`).

fedft adds no transport of its own: `certs` makes TLS certificates, `superlink` and
`supernode` build Flower command lines, `processes` starts and stops them (by PID,
with their children), `submit` hands the run to a SuperLink, and `launch` puts it all
together on one machine. See README "Deployment".
"""
