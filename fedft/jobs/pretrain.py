"""`fedft pretrain`: central (non-federated) training on public data, for `model.init_from`.

The public data is a named dataset (`pretrain.dataset`) other than the clients'
one, optionally restricted to some classes and to a seeded sample, with a
held-out validation split. The result is a results folder with `model.pt` (the
same format as a federated run's), `pretrain.csv` (one row per epoch),
`summary.json` and `config.toml`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedft.config import FedftConfig, to_toml
from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.ml.data import federated_data_for, load_dataset
from fedft.ml.data.partition import split_pool_test
from fedft.ml.data.registry import ArrayDataset
from fedft.ml.models import build_model, model_options
from fedft.ml.training import evaluate, make_optimizer, resolve_device, seed_generator, train
from fedft.state.model_file import save_checkpoint
from fedft.state.run_folder import atomic_write, new_run_dir, versions


def public_data(cfg: FedftConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, validation) public sets: classes kept and relabelled, seeded sample, stratified split."""
    pre = cfg.pretrain
    if not pre.dataset:
        raise FedftError("pretrain.dataset", "is not set.", 'add [pretrain] dataset = "fashion-mnist" (or another public dataset) to the config.')
    full = load_dataset(pre.dataset, pre.path)
    num_classes = full.num_classes
    if pre.classes:
        unknown = [c for c in pre.classes if c >= full.num_classes]
        if unknown:
            raise FedftError("pretrain.classes", f"{unknown} are not labels of '{pre.dataset}' (0..{full.num_classes - 1}).", "list labels that exist.")
        keep = np.flatnonzero(np.isin(full.y, pre.classes))
        relabel = np.full(full.num_classes, -1, dtype=np.int64)
        relabel[np.asarray(pre.classes)] = np.arange(len(pre.classes))
        full = ArrayDataset(full.name, full.x[keep], relabel[full.y[keep]], len(pre.classes))
        num_classes = len(pre.classes)
    if pre.max_examples and pre.max_examples < len(full):
        full = full.subset(np.sort(np.random.default_rng([cfg.seed, 0x9B1]).permutation(len(full))[: pre.max_examples]))
    private_shape = tuple(federated_data_for(cfg).full.x.shape[1:])
    if tuple(full.x.shape[1:]) != private_shape:
        raise FedftError("pretrain.dataset", f"'{pre.dataset}' has inputs of shape {tuple(full.x.shape[1:])}, the clients' data has {private_shape}.", "pick a public dataset with the same input shape.")
    split = split_pool_test(full.y, pre.val_fraction, cfg.seed)
    if len(split.pool) == 0 or len(split.test) == 0:
        raise FedftError("pretrain.max_examples", f"{len(full)} public examples are too few for a train and a validation split.", "use more examples.")
    train_set, val_set = full.subset(split.pool), full.subset(split.test)
    return ArrayDataset(train_set.name, train_set.x, train_set.y, num_classes), ArrayDataset(val_set.name, val_set.x, val_set.y, num_classes)


@dataclass(frozen=True)
class PretrainResult:
    run_dir: Path
    model_path: Path
    rows: list[dict[str, Any]]

    @property
    def val_accuracy(self) -> float:
        return float(self.rows[-1]["val_accuracy"])


def prepare_pretrain(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None) -> FedftConfig:
    """Everything that can reject the input, before any folder exists."""
    cfg = load_config(config, overrides)
    public_data(cfg)
    return cfg


def pretrain(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None, out: str | Path | None = None, quiet: bool = False) -> PretrainResult:
    """Train `model.name` centrally on the public data; write model.pt and per-epoch metrics."""
    from rich.console import Console

    cfg = prepare_pretrain(config, overrides)
    pre = cfg.pretrain
    train_set, val_set = public_data(cfg)
    device = resolve_device(cfg.simulation.device)
    run_dir = new_run_dir(cfg, out)
    atomic_write(run_dir / "config.toml", to_toml(cfg))
    console = Console(highlight=False, quiet=quiet)
    shape = tuple(train_set.x.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model.name, shape, train_set.num_classes, **model_options(cfg.model))
    x, y = torch.from_numpy(train_set.x), torch.from_numpy(train_set.y)
    xv, yv = torch.from_numpy(val_set.x), torch.from_numpy(val_set.y)
    optimizer = make_optimizer(pre.optimizer, model.parameters(), pre.lr, pre.momentum, pre.weight_decay)
    console.print(f"fedft pretrain: {cfg.model.name} on {pre.dataset} ({len(y)} train, {len(yv)} validation, {train_set.num_classes} classes), {pre.epochs} epochs -> {run_dir}")
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for epoch in range(1, pre.epochs + 1):
        t0 = time.perf_counter()
        result = train(model, x, y, epochs=1, batch_size=pre.batch_size, optimizer=optimizer, generator=seed_generator(cfg.seed, epoch, 0x9B1), device=device)
        val_loss, val_acc = evaluate(model, xv, yv, device)
        rows.append({"epoch": epoch, "train_loss": result.loss, "train_accuracy": result.accuracy, "val_loss": val_loss, "val_accuracy": val_acc, "wall_seconds": time.perf_counter() - t0})
        console.print(f"epoch {epoch:>3}/{pre.epochs}  train loss {result.loss:.4f} acc {result.accuracy:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  {rows[-1]['wall_seconds']:.1f} s")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    model_path = save_checkpoint(
        run_dir / "model.pt", state, architecture=cfg.model.name, num_classes=train_set.num_classes, input_shape=shape,
        dataset=pre.dataset, config_json=cfg.to_json(),
        extra={"model_options": model_options(cfg.model), "classes": list(pre.classes), "train_examples": len(y), "val_accuracy": float(rows[-1]["val_accuracy"])},
    )
    header = list(rows[0])
    atomic_write(run_dir / "pretrain.csv", "\n".join([",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]) + "\n")
    summary = {"status": "completed", "dataset": pre.dataset, "model": cfg.model.name, "epochs": pre.epochs, "train_examples": len(y),
               "val_examples": len(yv), "val_accuracy": rows[-1]["val_accuracy"], "wall_seconds": round(time.perf_counter() - t_start, 3),
               "seed": cfg.seed, "model_path": str(model_path), "versions": versions()}
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {model_path} (validation accuracy {rows[-1]['val_accuracy']:.4f})")
    return PretrainResult(run_dir, model_path, rows)
