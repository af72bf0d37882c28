"""Real deployment: the same ServerApp and ClientApp as a simulation, run as separate
OS processes through Flower's own deployment engine (SuperLink, SuperNodes, `flwr run`).

fedft adds no transport of its own: `certs` makes TLS certificates, `superlink` and
`supernode` build Flower command lines, `processes` starts and stops them (by PID,
with their children), `submit` hands the run to a SuperLink, `clients_file` reads the
operator's client keys and partition ids, `proxy` puts nginx (Fleet API only) in front
of a loopback SuperLink, and `launch` puts it all together. See docs/deployment.md.
"""
