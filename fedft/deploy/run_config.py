"""What `flwr run` hands the ServerApp: Flower's run config -> a validated fedft config.

The keys live in `[tool.flwr.app.config]` of pyproject.toml (Flower only accepts
overrides of keys declared there):

- `config-json`: the whole resolved fedft config as JSON (what `fedft server` and
  `fedft launch` send, so the server needs no config file of its own);
- `config`: else, a fedft TOML path; a relative path is looked up in the
  ServerApp's working directory, then in the app folder Flower installed the FAB
  into (the FAB carries every `*.toml` of the project, `simulations/` included);
- `overrides`: `key=value;key=value`, applied on top of either;
- `out`: the results folder ("" = `<output.dir>/<name>-<timestamp>`, relative to the
  working directory of the process that runs the ServerApp, i.e. the SuperLink's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.state.run_folder import new_run_dir

CONFIG = "config"
CONFIG_JSON = "config-json"
OVERRIDES = "overrides"
OUT = "out"
CLIENTS_JSON = "clients-json"  # fedft server --clients: {node id: partition id} (fedft.deploy.clients_file)
DEFAULT_CONFIG = "simulations/quickstart.toml"

# fedft/deploy/run_config.py -> the project (or installed FAB) folder
APP_DIR = Path(__file__).resolve().parents[2]


def _resolve_config_path(text: str, app_dir: Path) -> Path:
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return app_dir / path if (app_dir / path).exists() else path


def config_from_run_config(run_config: Mapping[str, Any], app_dir: Path = APP_DIR) -> tuple[FedftConfig, str | None]:
    """(validated config, results folder or None) from a Flower run config."""
    overrides = [o for o in str(run_config.get(OVERRIDES, "")).split(";") if o.strip()]
    config_json = str(run_config.get(CONFIG_JSON, "")).strip()
    if config_json:
        try:
            raw = json.loads(config_json)
        except json.JSONDecodeError as exc:
            raise FedftError("run config 'config-json'", f"is not valid JSON ({exc}).", "pass the output of FedftConfig.to_json().") from None
        cfg = load_config(raw, overrides)
    else:
        cfg = load_config(_resolve_config_path(str(run_config.get(CONFIG, DEFAULT_CONFIG)), app_dir), overrides)
    out = str(run_config.get(OUT, "")).strip()
    return cfg, (out or None)


DEPLOY_NORM_MEDIAN = 2.0  # strategy.max_update_norm_median in deployment unless a norm bound is set


def deployment_defaults(cfg: FedftConfig) -> FedftConfig:
    """What `fedft server` and `fedft launch` change unless the config sets it: clients
    on other machines are not trusted, so each update's norm is bounded (2 x the round's
    lower-median norm, clipped; not under SecAgg+, where the server sees no single update), and clients keep their own state on their own disk
    (`checkpoint.client_state = false`: the server stores nothing a client sends for it)."""
    given = cfg.strategy.model_fields_set
    if "max_update_norm" not in given and "max_update_norm_median" not in given and not cfg.deploy.secure_aggregation:  # SecAgg+ hides each update
        cfg.strategy.max_update_norm_median = DEPLOY_NORM_MEDIAN
    if "client_state" not in cfg.checkpoint.model_fields_set:
        cfg.checkpoint.client_state = False
    return cfg


def write_run_config(path: str | Path, cfg: FedftConfig, out: str | Path, clients_json: str = "") -> Path:
    """A TOML file for `flwr run --run-config FILE`: a file, not `k=v` text, because
    Flower's `k=v` parser cannot carry a JSON string (quotes, spaces) safely."""
    import tomli_w

    path = Path(path)
    path.write_text(tomli_w.dumps({CONFIG_JSON: cfg.to_json(), OUT: str(Path(out).resolve()), OVERRIDES: "", CLIENTS_JSON: clients_json}), encoding="utf-8")
    return path


def results_dir(cfg: FedftConfig, out: str | None) -> Path:
    """The ServerApp's results folder: `out` may already exist (the launcher puts
    Flower's logs in `out/logs/` first) but must not hold results yet."""
    if not out:
        return new_run_dir(cfg).resolve()
    path = Path(out).expanduser().resolve()
    for name in ("config.toml", "metrics.jsonl", "summary.json"):
        if (path / name).exists():
            raise FedftError("run config 'out'", f"'{path}' already holds results ({name}).", "choose a new folder.")
    path.mkdir(parents=True, exist_ok=True)
    return path
