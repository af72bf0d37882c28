"""Self-signed TLS certificates for a SuperLink: a CA and a server certificate it signs.

SuperNodes and `flwr run` trust the CA (`ca.crt`); the SuperLink presents
`server.pem`/`server.key`. The server certificate always names `localhost`,
`127.0.0.1` and `::1` (Flower's own SuperExec reaches the SuperLink on loopback),
plus any host names or IP addresses the clients will dial.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from fedft.errors import FedftError
from fedft.state import atomic

LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPaths:
    """The files of one certificate folder."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    def check_server_side(self) -> None:
        """The three files a SuperLink needs, or a clear error naming the fix."""
        for path in (self.ca_cert, self.server_cert, self.server_key):
            if not path.is_file():
                raise FedftError("--certs", f"'{path}' does not exist.", f"create the folder with `fedft certs --out {self.folder}`, or pass --insecure (no TLS).")


def _san(hosts: list[str]):
    from cryptography import x509

    names: list = []
    for host in dict.fromkeys([*LOOPBACK, *hosts]):  # keep order, drop repeats
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Atomically; a private key's file is 0600 from its creation, never readable by others."""
    atomic.write_bytes(path, data, private=private)


def make_certs(out: str | Path, hosts: list[str] | None = None, days: int = 365, ca_key: str | Path | None = None) -> CertPaths:
    """Write ca.crt, server.pem, server.key into `out` (new or empty).

    EC P-256 keys; the CA is valid for `days`, the server certificate for the
    same span, with subjectAltName = loopback + `hosts`. The CA's private key signs
    the server certificate and is then forgotten, unless `ca_key` names a file to
    keep it in (never inside `out`: whoever reads the server's folder could mint
    certificates clients trust).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    paths = CertPaths(Path(out))
    if paths.folder.exists() and any(paths.folder.iterdir()):
        raise FedftError("--out", f"'{paths.folder}' exists and is not empty.", "choose a new folder, or remove the old certificates first.")
    if days < 1:
        raise FedftError("--days", f"{days} is not a positive number of days.", "pass --days 1 or more.")
    ca_key_path = Path(ca_key).expanduser() if ca_key else None
    if ca_key_path is not None and (ca_key_path.exists() or ca_key_path.resolve().parent == paths.folder.resolve()):
        raise FedftError("--ca-key", f"'{ca_key_path}' exists or lies in the server's folder '{paths.folder}'.", "name a new file outside it, e.g. ~/fedft-ca.key.")
    paths.folder.mkdir(parents=True, exist_ok=True)

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew
    until = now + dt.timedelta(days=days)
    ca_key_obj = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedft CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key_obj.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key_obj.public_key()), critical=False)
        .sign(ca_key_obj, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    first = (hosts or ["localhost"])[0]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)])).issuer_name(ca_name)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(list(hosts or [])), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key_obj.public_key()), critical=False)
        .sign(ca_key_obj, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    no_pass = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write(paths.ca_cert, ca_cert.public_bytes(pem))
    if ca_key_path is not None:
        ca_key_path.parent.mkdir(parents=True, exist_ok=True)
        _write(ca_key_path, ca_key_obj.private_bytes(pem, pkcs8, no_pass), private=True)
    _write(paths.server_cert, server_cert.public_bytes(pem))
    _write(paths.server_key, server_key.private_bytes(pem, pkcs8, no_pass), private=True)
    return paths


def make_key_pair(private: Path, public: Path) -> tuple[Path, Path]:
    """One EC P-384 key pair for Flower's SuperNode authentication: `private` (OpenSSH,
    0600 from creation) stays on the client's machine; `public` goes to the operator."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if private.exists() or public.exists():
        raise FedftError("--out", f"'{private}' or '{public}' already exists.", "choose a new folder; never overwrite a key a server has registered.")
    private.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    _write(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()), private=True)
    _write(public, key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


def make_supernode_keys(out: str | Path, count: int, start: int = 0) -> list[tuple[Path, Path]]:
    """`supernode-K.key` and `supernode-K.pub` for K in start..start+count-1, all on one
    machine: for `fedft launch` (every node is local) and tests. Real clients make their
    own pair with `fedft client keygen` (`make_key_pair`), so no private key leaves them."""
    folder = Path(out)
    return [make_key_pair(folder / f"supernode-{k}.key", folder / f"supernode-{k}.pub") for k in range(start, start + count)]


INSECURE_WARNING = ("fedft: warning: --insecure: TLS is off; model updates travel unencrypted and anything "
                    "that can reach the port can connect. Use only on a trusted network.")


def warn_insecure() -> None:
    print(INSECURE_WARNING, file=sys.stderr)
