"""Local-only training: the baseline a federation has to beat. Each client trains alone, for
the same rounds, epochs and optimizer as in the federated run, starting from the same global
model, and never sees another client's update; each final model is scored on that client's own
held-out data (text: the held-out tail of its role; otherwise the server's test set), and the
scores are averaged weighted by test targets, so the mean loss is comparable with a federated
run's `test_loss` on the union of those tails.

A client's round is exactly a federated client's round (`fedft.fl.client.pipeline.local_update`,
seeded by (seed, round, client)), with its own previous model in place of the aggregate. It runs
in this process, client after client, without Ray. Results: `local_only.csv` (one row per
client) and `summary.json` in the results folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedft.config import FedftConfig, to_toml
from fedft.errors import FedftError
from fedft.fl.client.pipeline import local_update
from fedft.fl.context import RunContext
from fedft.jobs.run import prepare
from fedft.ml.data.text import TextFederatedData
from fedft.ml.training import evaluate, resolve_device
from fedft.state.run_folder import atomic_write, new_run_dir, versions


@dataclass(frozen=True)
class LocalOnlyResult:
    run_dir: Path
    rows: list[dict[str, Any]]  # one per client: client, role, train_examples, test_examples, test_loss, test_accuracy, test_perplexity
    test_loss: float  # mean over every client's test targets
    test_accuracy: float
    wall_seconds: float

    @property
    def test_perplexity(self) -> float:
        return math.exp(min(self.test_loss, 700.0))


def check_local_only(cfg: FedftConfig) -> None:
    if cfg.privacy.mode != "none":
        raise FedftError("privacy.mode", f"'{cfg.privacy.mode}': the local-only baseline keeps no accountant between rounds.", 'run it with privacy.mode = "none".')
    if cfg.lora.ranks:
        raise FedftError("lora.ranks", "per-client ranks need the server's FlexLoRA redistribution.", "run the local-only baseline at one rank (lora.ranks = []).")


def own_test_indices(ctx: RunContext, client_id: int) -> np.ndarray:
    """This client's own held-out data (text: its role's tail), else the server's test set."""
    data = ctx.data
    if isinstance(data, TextFederatedData) and data.client_tests:
        return data.client_tests[client_id]
    return data.test


def local_only(config: Any, overrides: list[str] | None = None, out: str | Path | None = None, quiet: bool = False) -> LocalOnlyResult:
    """Train every client alone for `simulation.rounds` rounds; write and return each one's test scores."""
    from rich.console import Console

    cfg = prepare(config, overrides)
    check_local_only(cfg)
    ctx = RunContext(cfg)
    run_dir = new_run_dir(cfg, out)
    atomic_write(run_dir / "config.toml", to_toml(cfg))
    console = Console(highlight=False, quiet=quiet)
    rounds, clients = cfg.simulation.rounds, len(ctx.data.clients)
    console.print(f"fedft local-only: {clients} clients, each alone for {rounds} rounds -> {run_dir}")
    device, config_json, start = resolve_device(cfg.simulation.device), cfg.to_json(), time.perf_counter()
    sent = {k: ctx.start_state[k] for k in ctx.plan.sent}
    rows: list[dict[str, Any]] = []
    for cid in range(clients):
        state: dict[str, torch.Tensor] | None = dict(sent)
        for server_round in range(1, rounds + 1):
            state, _ = local_update(config_json, cid, server_round, state or sent, frozen_digest=ctx.frozen_digest)
        model = ctx.build_model()
        model.load_state_dict(ctx.merge_received(state or sent, ctx.frozen_digest))
        idx = own_test_indices(ctx, cid)
        x, y = torch.from_numpy(ctx.data.full.x[idx]), torch.from_numpy(ctx.data.full.y[idx])
        loss, acc = evaluate(model, x, y, device)
        roles = getattr(ctx.data, "roles", ())
        rows.append({"client": cid, "role": roles[cid] if cid < len(roles) else "", "train_examples": len(ctx.data.clients[cid][0]),
                     "test_targets": int(y.numel()), "test_loss": loss, "test_accuracy": acc, "test_perplexity": math.exp(min(loss, 700.0))})
        console.print(f"client {cid:>3} {rows[-1]['role']}: test loss {loss:.4f}, perplexity {rows[-1]['test_perplexity']:.3f}")
    weights = np.array([r["test_targets"] for r in rows], dtype=float)
    mean_loss = float(np.average([r["test_loss"] for r in rows], weights=weights))
    mean_acc = float(np.average([r["test_accuracy"] for r in rows], weights=weights))
    wall = time.perf_counter() - start
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / "local_only.csv", buf.getvalue())
    summary = {"status": "completed", "clients": clients, "rounds": rounds, "test_loss": mean_loss, "test_accuracy": mean_acc,
               "test_perplexity": math.exp(min(mean_loss, 700.0)), "wall_seconds": round(wall, 3), "seed": cfg.seed, "versions": versions()}
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    console.print(f"local-only mean test perplexity {summary['test_perplexity']:.3f} ({wall:.1f} s)")
    return LocalOnlyResult(run_dir, rows, mean_loss, mean_acc, wall)
