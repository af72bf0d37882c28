"""`fedft run --resume RUN_DIR`: check a results folder, then continue it.

Everything that can reject the folder runs here, before any file is written or
any process started: the folder's config.toml must load, a CONFIG given beside
`--resume` (with its `--set` overrides) must equal it, checkpoint.pt must load
with `weights_only=True` and match that config, and the data must load. A
rejected resume exits 2 and leaves every file as it was.

A folder with config.toml but no checkpoint (stopped before its first round
ended, or `checkpoint.every = 0`) starts again from round 0 in the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.fl.context import RunContext
from fedft.jobs.validate import load_config
from fedft.ml.data import federated_data_for
from fedft.state.run_checkpoint import FILENAME, RunCheckpoint, config_hash, load_run_checkpoint
from fedft.state.run_folder import read_summary


@dataclass(frozen=True)
class ResumePoint:
    run_dir: Path
    checkpoint: RunCheckpoint | None  # None: start again from round 0

    @property
    def round(self) -> int:
        return self.checkpoint.round if self.checkpoint else 0

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.checkpoint.rows) if self.checkpoint else []

    @property
    def elapsed_seconds(self) -> float:
        return self.checkpoint.elapsed_seconds if self.checkpoint else 0.0


def resume_command(run_dir: Path) -> str:
    return f"fedft run --resume {run_dir}"


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def first_difference(a: FedftConfig, b: FedftConfig) -> str:
    """The first config key whose value differs (ignoring [output]), as `key: x != y`."""
    fa, fb = _flat(a.model_dump(mode="json", exclude={"output"})), _flat(b.model_dump(mode="json", exclude={"output"}))
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"{key}: {fb.get(key)!r} here, {fa.get(key)!r} in the folder"
    return "none"


def prepare_resume(run_dir: str | Path, config: str | Path | dict | FedftConfig | None = None, overrides: list[str] | None = None) -> tuple[FedftConfig, ResumePoint]:
    """Validate a results folder for resuming; raises FedftError, writes nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FedftError("--resume", f"'{run_dir}' is not a folder.", "give the results folder of an earlier `fedft run`, e.g. runs/quickstart-<stamp>/.")
    if not (run_dir / "config.toml").is_file():
        raise FedftError("--resume", f"'{run_dir}' has no config.toml, so it is not a fedft results folder.", "give the results folder of an earlier `fedft run`.")
    try:
        cfg = load_config(run_dir / "config.toml")
    except FedftError as exc:
        raise FedftError("--resume", f"the folder's config.toml is not valid ({exc.one_line()}).", "restore the config.toml the run wrote, or start a new run.") from None
    if config is not None or overrides:
        asked = load_config(config if config is not None else cfg, overrides)
        if config_hash(asked) != config_hash(cfg):
            raise FedftError(
                "--resume", f"the config differs from the one '{run_dir}' was run with ({first_difference(cfg, asked)}).",
                "resume without a config or --set (the folder's config.toml is used), or start a new run with --out.",
            )
    checkpoint = None
    if (run_dir / FILENAME).exists():
        checkpoint = load_run_checkpoint(run_dir / FILENAME, cfg)
    if checkpoint is not None and checkpoint.round > 0:
        check_budgets_resume(cfg)
    federated_data_for(cfg)  # unreadable data fails here, before anything is touched
    if checkpoint is not None:
        _check_arrays(run_dir / FILENAME, checkpoint.arrays, cfg)
    return cfg, ResumePoint(run_dir, checkpoint)


def check_budgets_resume(cfg: FedftConfig) -> None:
    """Local DP keeps each client's accountant history in its Flower Context.state, which
    only `checkpoint.client_state` (or `privacy.state_dir`'s files) carries across a resume.
    Without either, every client would restart from ε = 0 and overrun its budget."""
    pc = cfg.privacy
    if pc.mode == "local" and not cfg.checkpoint.client_state and not pc.state_dir:
        raise FedftError("checkpoint.client_state", "is false in this local-DP run, so its checkpoint holds no client's accountant history: resumed clients would start again from ε = 0 and overrun their budgets.",
                         "start the run again in a new folder, with checkpoint.client_state = true (the default) or privacy.state_dir set if it must resume.")


def _check_arrays(path: Path, arrays: dict[str, Any], cfg: FedftConfig) -> None:
    """The checkpoint's arrays must fit the configured model: same names, shapes, dtypes."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in RunContext(cfg).initial_state.items()}
    got = {k: (tuple(v.shape), v.dtype) for k, v in arrays.items()}
    if got != expected:
        wrong = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        raise FedftError("--resume", f"'{path}' has arrays that do not fit model '{cfg.model.name}' ({', '.join(wrong[:3])}).", "resume from a folder written by `fedft run`, or start a new run.")


def is_complete(run_dir: Path, cfg: FedftConfig, point: ResumePoint) -> dict[str, Any] | None:
    """The folder's summary if the run already finished all its rounds, else None."""
    summary = read_summary(run_dir)
    done = summary is not None and summary.get("status") == "completed" and (run_dir / "model.pt").is_file() and (point.checkpoint is None or point.round == cfg.simulation.rounds)
    return summary if done else None
