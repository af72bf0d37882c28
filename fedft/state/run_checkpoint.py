"""Round checkpoints: what a run needs to continue after a crash, a kill or Ctrl-C.

`checkpoint.pt` in the results folder, written atomically (`fedft.state.atomic`)
after every `checkpoint.every`-th round and after the last, and on interruption
for the last completed round. A plain dict, read with `torch.load(weights_only=True)`:

    format          "fedft-run-checkpoint/1"
    config_hash     sha256 of the config without [output] (see `config_hash`)
    round           last completed round
    arrays          {name: tensor}, the global model after that round
    rows            metrics rows 0..round (what metrics.csv holds)
    elapsed_seconds run time up to that round, over all resumed segments
    state           {section: plain data}, one per entry of `SECTIONS`

Nothing else is needed: client sampling is a function of (seed, round) and each
client's data order of (seed, round, client id), so there is no RNG state to save.

The sections of `state`, a fixed table (`SECTIONS`), each a (save, restore) pair
over `ServerState`: `strategy` (every encodable attribute of the Flower strategy,
wrappers included: FedOpt moments, FedAvgM momentum, clipping norms, SCAFFOLD server
control variates kept as attributes, see `fedft.state.snapshot`), `clients` (each
client's Context.state, see `fedft.state.client_records`), `privacy` (the
server's privacy tracker, when the run has one) and `devices` (the virtual clock of a run
with device profiles). State a new feature keeps across
rounds gets a field in `ServerState` and a row in the table. A checkpoint with a
section the table does not know is refused rather than half restored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import torch
from flwr.serverapp.strategy import Strategy

from fedft import __version__
from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.state import atomic, snapshot
from fedft.state.client_records import ClientStateStore

FORMAT = "fedft-run-checkpoint/1"
FILENAME = "checkpoint.pt"


class PlainState(Protocol):
    """An object that turns its state into plain data and back (e.g. the privacy tracker)."""

    def to_plain(self) -> Any: ...

    def load_plain(self, data: Any) -> None: ...


@dataclass
class ServerState:
    """What the server carries between rounds besides the global arrays."""

    strategy: Strategy
    clients: ClientStateStore = field(default_factory=ClientStateStore)
    privacy: PlainState | None = None  # the privacy tracker (fedft.privacy.tracker), if any
    devices: PlainState | None = None  # the round policy's virtual clock (fedft.fl.server.policy), with devices.profiles


SaveFn = Callable[[ServerState], Any]
RestoreFn = Callable[[ServerState, Any], None]


# The sections of a checkpoint's `state`, in the order they are saved (and so restored).
SECTIONS: Mapping[str, tuple[SaveFn, RestoreFn]] = MappingProxyType({
    "strategy": (lambda s: snapshot.snapshot_object(s.strategy), lambda s, d: snapshot.restore_object(s.strategy, d)),
    "clients": (lambda s: s.clients.to_plain(), lambda s, d: s.clients.load_plain(d)),
    "privacy": (lambda s: s.privacy.to_plain() if s.privacy is not None else {}, lambda s, d: s.privacy.load_plain(d) if d and s.privacy is not None else None),
    "devices": (lambda s: s.devices.to_plain() if s.devices is not None else {}, lambda s, d: s.devices.load_plain(d) if d and s.devices is not None else None),
})


def capture_state(server_state: ServerState) -> dict[str, Any]:
    return {name: save(server_state) for name, (save, _) in SECTIONS.items()}


def restore_state(server_state: ServerState, saved: dict[str, Any]) -> None:
    unknown = sorted(set(saved) - set(SECTIONS))
    if unknown:
        raise FedftError("--resume", f"the checkpoint holds state this fedft cannot restore ({', '.join(unknown)}).", "resume with the fedft version that wrote it.")
    for name, data in saved.items():
        try:
            SECTIONS[name][1](server_state, data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a damaged or crafted checkpoint
            raise FedftError("--resume", f"the checkpoint's '{name}' state does not fit this run ({exc}).", "resume from a checkpoint this run wrote, or start afresh.") from None


def config_hash(cfg: FedftConfig) -> str:
    """sha256 of the config without [output]: where results go does not change them."""
    data = cfg.model_dump(mode="json", exclude={"output"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def save_run_checkpoint(run_dir: Path, cfg: FedftConfig, server_round: int, arrays: dict[str, torch.Tensor], rows: list[dict[str, Any]], state: dict[str, Any], elapsed_seconds: float) -> Path:
    """Write checkpoint.pt atomically: a kill at any moment leaves the old or the new one."""
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
    return atomic.write_with(Path(run_dir) / FILENAME, lambda f: torch.save(record, f))


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
    unknown = sorted(set(record["state"]) - set(SECTIONS))
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
        self.run_dir, self.cfg, self.server_state, self.rows = Path(run_dir), cfg, server_state, rows
        self.elapsed_before = elapsed_before
        self._t0 = time.perf_counter()
        self._latest: tuple | None = None
        self.saved_round = 0

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._t0

    def after_round(self, server_round: int, arrays: dict[str, torch.Tensor]) -> Callable[[], None]:
        """Snapshot the round as it ends (the global arrays, the server's state); the returned
        callable, called once the round's row is recorded, adds the rows and writes the
        checkpoint every `every` rounds and after the last."""
        every = self.cfg.checkpoint.every
        if every == 0:
            return lambda: None
        ended = (server_round, {k: v.detach().cpu().clone() for k, v in arrays.items()}, capture_state(self.server_state), self.elapsed())

        def commit() -> None:
            server_round, arrays, state, elapsed = ended
            self._latest = (server_round, arrays, [dict(r) for r in self.rows], state, elapsed)
            if server_round % every == 0 or server_round == self.cfg.simulation.rounds:
                self.flush()

        return commit

    def flush(self) -> None:
        if self._latest is None or self._latest[0] == self.saved_round:
            return
        server_round, arrays, rows, state, elapsed = self._latest
        save_run_checkpoint(self.run_dir, self.cfg, server_round, arrays, rows, state, elapsed)
        self.saved_round = server_round
