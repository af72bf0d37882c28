"""The Fleet-only front door: nginx (Debian's package) in front of a loopback SuperLink.

Flower 1.42 serves the Fleet API (`/v1/fleet/...`, what SuperNodes call), the Control
API (`/v1/control/...`: submit runs, register SuperNode keys, stop runs) and the Runtime
API on one HTTPS port, and its open-source Control API has no authentication. So
`fedft server` binds the SuperLink to 127.0.0.1 and lets nginx listen on the public
address with the same certificate, forwarding `/v1/fleet/` only (over TLS, verified
against the run's CA); every other path answers 404 at nginx and never reaches the
SuperLink. Only processes on the server machine can reach the Control API.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from subprocess import Popen

from fedft.deploy.certs import CertPaths
from fedft.errors import FedftError

NGINX = "nginx"


def find_nginx() -> str:
    """The nginx binary, or one error saying how to get it (or how to go without)."""
    path = shutil.which(NGINX) or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None)
    if path is None:
        raise FedftError("nginx", "is not installed; `fedft server` puts it in front of the SuperLink so only the Fleet API is reachable from outside.",
                         "install it (Debian/Ubuntu: apt-get install nginx), or pass --expose-control (anyone who reaches the port can then submit runs).")
    return path


def _listen(host: str, port: int) -> str:
    if host in ("::", "[::]"):
        return f"[::]:{port}"
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def nginx_config(host: str, port: int, upstream_port: int, certs: CertPaths | None, prefix: Path) -> str:
    """nginx.conf: TLS on `host:port`, `/v1/fleet/` proxied to https://127.0.0.1:`upstream_port`
    (certificate checked against ca.crt, name localhost), everything else 404. Fleet calls
    are short polls with model-sized bodies: no buffering to disk, no size limit.
    `certs=None` (--insecure): plain HTTP both ways, still Fleet only."""
    tmp = prefix / "tmp"
    if certs is None:
        listen_tls, upstream = "", f"http://127.0.0.1:{upstream_port}"
    else:
        listen_tls = (f" ssl;\n        ssl_certificate {certs.server_cert.resolve()};\n        ssl_certificate_key {certs.server_key.resolve()};\n"
                      f"        ssl_protocols TLSv1.2 TLSv1.3")
        upstream = (f"https://127.0.0.1:{upstream_port};\n            proxy_ssl_trusted_certificate {certs.ca_cert.resolve()};\n"
                    f"            proxy_ssl_verify on;\n            proxy_ssl_name localhost")
    return f"""daemon off;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / 'access.log'};
    client_body_temp_path {tmp / 'body'};
    proxy_temp_path {tmp / 'proxy'};
    fastcgi_temp_path {tmp / 'fastcgi'};
    uwsgi_temp_path {tmp / 'uwsgi'};
    scgi_temp_path {tmp / 'scgi'};
    server {{
        listen {_listen(host, port)}{listen_tls};
        client_max_body_size 0;
        location /v1/fleet/ {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
        location / {{ return 404; }}
    }}
}}
"""


def proxy_command(nginx: str, prefix: Path, conf: Path) -> list[str]:
    """nginx in the foreground with its own prefix (pid, logs, temp files): stopped by PID like the rest."""
    return [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]


def write_proxy(prefix: Path, host: str, port: int, upstream_port: int, certs: CertPaths | None) -> Path:
    """The prefix folder with nginx.conf and its temp folders; returns the config path.
    nginx started as root runs its worker as `nobody`, which must reach the temp folders."""
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o711)
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(host, port, upstream_port, certs, prefix), encoding="utf-8")
    return conf


def wait_until_listening(address: str, ca_cert: Path | None, proc: Popen, error_log: Path, timeout: float = 60.0) -> None:
    """Until nginx answers on `address` (its own 404 for `/`), or one error with its log's tail."""
    import httpx

    scheme, verify = ("http", False) if ca_cert is None else ("https", str(ca_cert))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FedftError("nginx", f"exited with code {proc.returncode} at start:\n{_tail(error_log)}", "fix the problem above (port in use?).")
        try:
            httpx.get(f"{scheme}://{address}/", verify=verify, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise FedftError("nginx", f"did not answer on {address} within {timeout:.0f} s:\n{_tail(error_log)}", "check the log above.")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
