"""The `flower-superlink` command line fedft uses, and a readiness probe.

In flwr 1.42 one SuperLink port serves the Fleet API (SuperNodes connect here),
the Control API (`flwr run` submits here) and the Runtime API (the ServerApp
process talks to it), all over HTTPS with the same certificate.
"""

from __future__ import annotations

import time
from pathlib import Path
from subprocess import Popen

from fedft.deploy.certs import CertPaths
from fedft.errors import FedftError

DEFAULT_PORT = 9092  # Flower's traditional Fleet API port; any free port works


def superlink_command(host: str, port: int, certs: CertPaths | None, enable_supernode_auth: bool = False, database: str | None = None) -> list[str]:
    """`certs=None` means --insecure (no TLS). Runtime dependency installation is
    off: fedft's dependencies are already installed where the ServerApp runs, and
    `uv sync` of torch per run would be slow and needs the internet."""
    cmd = ["flower-superlink", "--host", host, "--port", str(port), "--disable-runtime-dependency-installation"]
    if certs is None:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(certs.ca_cert.resolve()), "--ssl-certfile", str(certs.server_cert.resolve()),
                "--ssl-keyfile", str(certs.server_key.resolve())]
    if enable_supernode_auth:
        cmd.append("--enable-supernode-auth")
    if database:
        cmd += ["--database", database]
    return cmd


def local_address(host: str, port: int) -> str:
    """How a process on this machine reaches a SuperLink bound to `host`."""
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def wait_until_ready(address: str, ca_cert: Path | None, proc: Popen, log: Path, timeout: float = 60.0) -> None:
    """Poll the SuperLink's /health until it answers, or fail with its log's tail."""
    import httpx

    scheme = "http" if ca_cert is None else "https"
    verify: bool | str = False if ca_cert is None else str(ca_cert)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FedftError("SuperLink", f"exited with code {proc.returncode} at start:\n{tail(log)}", "fix the problem above (port in use? certificate files?).")
        try:
            if httpx.get(f"{scheme}://{address}/health", verify=verify, timeout=1.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise FedftError("SuperLink", f"did not answer on {address} within {timeout:.0f} s:\n{tail(log)}", "check the log above.")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
