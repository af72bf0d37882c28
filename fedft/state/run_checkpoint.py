"""Round checkpoints: what a run needs to continue after a crash, a kill or Ctrl-C.

`checkpoint.pt` in the results folder, written atomically (temp file + rename)
after every `checkpoint.every`-th round and after the last, and on interruption
for the last completed round. A plain dict, read with `torch.load(weights_only=True)`:

    format          "fedft-run-checkpoint/1"
    config_hash     sha256 of the config without [output] (see `config_hash`)
    round           last completed round
    arrays          {name: tensor}, the global model after that round
    rows            metrics rows 0..round (what metrics.csv holds)
    elapsed_seconds run time up to that round, over all resumed segments
    state           {section: plain data}, one section per registered state hook

Nothing else is needed: client sampling is a function of (seed, round) and each
client's data order of (seed, round, client id), so there is no RNG state to save.

State hooks: a feature that keeps state across rounds registers a (save, restore)
pair under a name with `register_state`. `save(ServerState)` returns plain data
(`fedft.state.snapshot.encode` helps); `restore(ServerState, data)` puts it back into
the freshly built objects. Built in: `strategy` (every encodable attribute of the
Flower strategy, wrappers included: FedOpt moments, FedAvgM momentum, clipping
norms, SCAFFOLD server control variates kept as attributes) and `clients` (each
client's Context.state, see `fedft.state.client_records`). A checkpoint with a section no
hook knows is refused rather than half restored.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from flwr.serverapp.strategy import Strategy

from fedft.state import snapshot
from fedft.state.client_records import ClientStateStore
from fedft.config import FedftConfig
from fedft.errors import FedftError

FORMAT = "fedft-run-checkpoint/1"
FILENAME = "checkpoint.pt"


@dataclass
class ServerState:
    """What the server carries between rounds besides the global arrays."""

    strategy: Strategy
    clients: ClientStateStore = field(default_factory=ClientStateStore)
    extra: dict[str, Any] = field(default_factory=dict)  # objects other features keep for their hooks


SaveFn = Callable[[ServerState], Any]
RestoreFn = Callable[[ServerState, Any], None]
_HOOKS: dict[str, tuple[SaveFn, RestoreFn]] = {}


def register_state(name: str, save: SaveFn, restore: RestoreFn) -> None:
    """Register a section of `state` in every checkpoint (see module doc)."""
    _HOOKS[name] = (save, restore)


register_state("strategy", lambda s: snapshot.snapshot_object(s.strategy), lambda s, d: snapshot.restore_object(s.strategy, d))
register_state("clients", lambda s: s.clients.to_plain(), lambda s, d: s.clients.load_plain(d))
register_state("privacy", lambda s: s.extra["privacy"].to_plain() if "privacy" in s.extra else {}, lambda s, d: s.extra["privacy"].load_plain(d) if d and "privacy" in s.extra else None)


def capture_state(server_state: ServerState) -> dict[str, Any]:
    return {name: save(server_state) for name, (save, _) in _HOOKS.items()}


def restore_state(server_state: ServerState, saved: dict[str, Any]) -> None:
    unknown = sorted(set(saved) - set(_HOOKS))
    if unknown:
        raise FedftError("--resume", f"the checkpoint holds state this fedft cannot restore ({', '.join(unknown)}).", "resume with the fedft version that wrote it.")
    for name, data in saved.items():
        _HOOKS[name][1](server_state, data)


def config_hash(cfg: FedftConfig) -> str:
    """sha256 of the config without [output]: where results go does not change them."""
    data = cfg.model_dump(mode="json", exclude={"output"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def save_run_checkpoint(run_dir: Path, cfg: FedftConfig, server_round: int, arrays: dict[str, torch.Tensor], rows: list[dict[str, Any]], state: dict[str, Any], elapsed_seconds: float) -> Path:
    """Write checkpoint.pt atomically: a kill at any moment leaves the old or the new one."""
    from fedft import __version__

    record = {
        "format": FORMAT,
        "fedft_version": __version__,
        "config_hash": config_hash(cfg),
        "round": int(server_round),
        "arrays": {k: v.detach().cpu().clone() for k, v in arrays.items()},
        "rows": [snapshot.encode(dict(r)) for r in rows],
        "elapsed_seconds": float(elapsed_seconds),
        "state": state,
    }
    path = Path(run_dir) / FILENAME
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class RunCheckpoint:
    round: int
    arrays: dict[str, torch.Tensor]
    rows: list[dict[str, Any]]
    state: dict[str, Any]
    elapsed_seconds: float


def load_run_checkpoint(path: Path, cfg: FedftConfig) -> RunCheckpoint:
    """Read and check checkpoint.pt; any problem is a FedftError (nothing is modified)."""
    fix = "resume from a folder written by `fedft run`, or start a new run."
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a torch file, unsafe pickle
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise FedftError("--resume", f"'{path}' is corrupt or truncated ({reason}).", fix) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise FedftError("--resume", f"'{path}' is not a fedft run checkpoint (format {got!r}).", fix)
    if record.get("config_hash") != config_hash(cfg):
        raise FedftError("--resume", f"'{path}' was written for a different config than the folder's config.toml.", "restore the folder's original config.toml, or start a new run.")
    ok = (
        isinstance(record.get("round"), int) and 1 <= record["round"] <= cfg.simulation.rounds
        and isinstance(record.get("arrays"), dict) and all(isinstance(v, torch.Tensor) for v in record["arrays"].values())
        and isinstance(record.get("rows"), list) and isinstance(record.get("state"), dict)
        and isinstance(record.get("elapsed_seconds"), float)
    )
    if not ok:
        raise FedftError("--resume", f"'{path}' is incomplete or inconsistent (round {record.get('round')!r} of {cfg.simulation.rounds}).", fix)
    unknown = sorted(set(record["state"]) - set(_HOOKS))
    if unknown:
        raise FedftError("--resume", f"'{path}' holds state this fedft cannot restore ({', '.join(map(str, unknown))}).", "resume with the fedft version that wrote it.")
    try:
        rows = [snapshot.decode(r) for r in record["rows"]]
    except Exception as exc:
        raise FedftError("--resume", f"'{path}' has unreadable metrics rows ({exc}).", fix) from None
    if [r.get("round") for r in rows] != list(range(record["round"] + 1)):
        raise FedftError("--resume", f"'{path}' holds metrics for rounds {[r.get('round') for r in rows]}, not 0..{record['round']}.", fix)
    return RunCheckpoint(record["round"], record["arrays"], rows, record["state"], record["elapsed_seconds"])


class CheckpointKeeper:
    """Called by the round loop after each round: snapshots the state in memory and
    writes it every `every` rounds and after the last; `flush` writes the latest
    snapshot if it is not on disk yet (on interruption)."""

    def __init__(self, run_dir: Path, cfg: FedftConfig, server_state: ServerState, rows: list[dict[str, Any]], elapsed_before: float = 0.0) -> None:
        import time

        self.run_dir, self.cfg, self.server_state, self.rows = Path(run_dir), cfg, server_state, rows
        self.elapsed_before = elapsed_before
        self._t0 = time.perf_counter()
        self._latest: tuple | None = None
        self.saved_round = 0

    def elapsed(self) -> float:
        import time

        return self.elapsed_before + time.perf_counter() - self._t0

    def after_round(self, server_round: int, arrays: dict[str, torch.Tensor]) -> None:
        every = self.cfg.checkpoint.every
        if every == 0:
            return
        self._latest = (server_round, {k: v.detach().cpu().clone() for k, v in arrays.items()}, [dict(r) for r in self.rows], capture_state(self.server_state), self.elapsed())
        if server_round % every == 0 or server_round == self.cfg.simulation.rounds:
            self.flush()

    def flush(self) -> None:
        if self._latest is None or self._latest[0] == self.saved_round:
            return
        server_round, arrays, rows, state, elapsed = self._latest
        save_run_checkpoint(self.run_dir, self.cfg, server_round, arrays, rows, state, elapsed)
        self.saved_round = server_round
