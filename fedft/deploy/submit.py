"""Submitting a run to a SuperLink the way Flower users do: `flwr run APP CONNECTION`.

`flwr` reads SuperLink connections from `$FLWR_HOME/config.toml` (default
`~/.flwr/config.toml` since flwr 1.26). fedft writes its own small Flower home in
a temporary folder, so a user's `~/.flwr` is never read or changed.
"""

from __future__ import annotations

from pathlib import Path

from fedft.errors import FedftError

CONNECTION = "fedft"


def app_dir() -> Path:
    """The Flower App folder (pyproject.toml with [tool.flwr.app]) holding this fedft."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    try:
        has_app = "app" in tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {}).get("flwr", {})
    except (OSError, tomllib.TOMLDecodeError):
        has_app = False
    if not has_app:
        raise FedftError("fedft server", f"no Flower App (pyproject.toml with [tool.flwr.app]) at '{root}'.", "install fedft from its source folder (`pip install -e .`).")
    return root


def write_flower_home(home: str | Path, address: str, ca_cert: str | Path | None) -> Path:
    """A Flower home whose config.toml has one connection, `fedft`, to `address`."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]", f'address = "{address}"']
    if ca_cert is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{Path(ca_cert).resolve()}"')  # Flower wants an absolute path
    (home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return home


def flwr_run_command(app: str | Path, run_config_file: str | Path, stream: bool = True) -> list[str]:
    cmd = ["flwr", "run", str(app), CONNECTION, "--run-config", str(run_config_file)]
    return cmd + (["--stream"] if stream else [])


def register_command(public_key: str | Path) -> list[str]:
    """`flwr supernode register KEY.pub fedft --format json`: allow that node on an
    auth-enabled SuperLink; prints {"node-id": N}."""
    return ["flwr", "supernode", "register", str(public_key), CONNECTION, "--format", "json"]
