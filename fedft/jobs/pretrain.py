"""`fedft pretrain`: central (non-federated) training on public data, for `model.init_from`.

The public data is a named dataset (`pretrain.dataset`) other than the clients'
one, optionally restricted to some classes and to a seeded sample, with a
held-out validation split. The result is a results folder with `model.pt` (the
same format as a federated run's), `pretrain.csv` (one row per epoch),
`summary.json` and `config.toml`.

Text (`pretrain.dataset = "text"`): the public text is the speeches of the play at
`pretrain.path` (empty: the clients' own play, `data.path`) that no client speaks
(`fedft.ml.data.text.public_text`), cut into sequences of `data.seq_len` characters.
With `model.name = "hf"` the model is a fresh causal LM built from `pretrain.hf_config`
(or, with that empty, the one at `model.path`, pretrained further), trained on fedft's
character ids and written by `save_pretrained` into `<run>/hf/`, the folder a run's
`model.path` (or `{pretrained}` in a `[compare]` arm) points at.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedft.config import FedftConfig, to_toml
from fedft.errors import FedftError
from fedft.jobs.validate import check_lora, load_config
from fedft.ml.data import federated_data_for, load_dataset
from fedft.ml.data.partition import split_pool_test
from fedft.ml.data.registry import ArrayDataset
from fedft.ml.data.text import Vocabulary, is_text_dataset, public_text, sequences
from fedft.ml.hf_export import VOCABULARY_FILE
from fedft.ml.models import build_model, model_options
from fedft.ml.models.hf import CausalLM, causal_lm_config, fresh_causal_lm, quiet_transformers
from fedft.ml.training import evaluate, make_optimizer, resolve_device, seed_generator, train
from fedft.state.atomic import write_text
from fedft.state.model_file import save_checkpoint
from fedft.state.run_folder import atomic_write, new_run_dir, versions


def public_data(cfg: FedftConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, validation) public sets: classes kept and relabelled, seeded sample, stratified split."""
    pre = cfg.pretrain
    if not pre.dataset:
        raise FedftError("pretrain.dataset", "is not set.", 'add [pretrain] dataset = "fashion-mnist" (or another public dataset) to the config.')
    if is_text_dataset(pre.dataset):
        return public_text_data(cfg)
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


def public_text_data(cfg: FedftConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, validation) sequences of `data.seq_len` characters from the public text, the
    validation set a seeded `pretrain.val_fraction` of them."""
    pre, d, p = cfg.pretrain, cfg.data, cfg.partition
    if not is_text_dataset(d.name):
        raise FedftError("pretrain.dataset", f"'{pre.dataset}' is text; the clients' data '{d.name}' is not.", "pretrain on a dataset like the clients'.")
    vocab = Vocabulary.default()
    x, y = sequences(vocab.encode(public_text(pre.dataset, pre.path, d.name, d.path, p.num_clients, d.min_chars, d.small_roles)), d.seq_len)
    order = np.random.default_rng([cfg.seed, 0x9B1]).permutation(len(x))
    if pre.max_examples:
        order = order[: pre.max_examples]
    n_val = int(round(len(order) * pre.val_fraction))
    if n_val == 0 or n_val == len(order):
        raise FedftError("pretrain.dataset", f"the public text has {len(x)} sequences of {d.seq_len} characters: too few for a train and a validation split.",
                         "pretrain on a longer play (pretrain.path), or use fewer clients.")
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    return (ArrayDataset(pre.dataset, x[train_idx], y[train_idx], vocab.size), ArrayDataset(pre.dataset, x[val_idx], y[val_idx], vocab.size))


@dataclass(frozen=True)
class PretrainResult:
    run_dir: Path
    model_path: Path  # model.pt; for model.name = "hf" the save_pretrained folder (what model.path takes)
    rows: list[dict[str, Any]]

    @property
    def val_accuracy(self) -> float:
        return float(self.rows[-1]["val_accuracy"])


def prepare_pretrain(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None) -> FedftConfig:
    """Everything that can reject the input, before any folder exists."""
    cfg = load_config(config, overrides)
    train_set, _ = public_data(cfg)
    if cfg.model.name == "hf" and cfg.pretrain.hf_config:
        causal_lm_config(cfg.pretrain.hf_config, train_set.num_classes, cfg.data.seq_len)
    elif cfg.model.name == "hf":
        check_lora(cfg, load=True)  # model.path: the model pretraining continues from
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
        model = initial_model(cfg, shape, train_set.num_classes)
    x, y = torch.from_numpy(train_set.x), torch.from_numpy(train_set.y)
    xv, yv = torch.from_numpy(val_set.x), torch.from_numpy(val_set.y)
    optimizer = make_optimizer(pre.optimizer, model.parameters(), pre.lr, pre.momentum, pre.weight_decay)
    console.print(f"fedft pretrain: {cfg.model.name} on {pre.dataset} ({len(y)} train, {len(yv)} validation, {train_set.num_classes} classes), {pre.epochs} epochs -> {run_dir}")
    rows: list[dict[str, Any]] = []
    text = is_text_dataset(pre.dataset)
    t_start = time.perf_counter()
    for epoch in range(1, pre.epochs + 1):
        t0 = time.perf_counter()
        result = train(model, x, y, epochs=1, batch_size=pre.batch_size, optimizer=optimizer, generator=seed_generator(cfg.seed, epoch, 0x9B1), device=device)
        val_loss, val_acc = evaluate(model, xv, yv, device)
        rows.append({"epoch": epoch, "train_loss": result.loss, "train_accuracy": result.accuracy, "val_loss": val_loss, "val_accuracy": val_acc, "wall_seconds": time.perf_counter() - t0})
        if text:
            rows[-1]["val_perplexity"] = math.exp(min(val_loss, 700.0))
        console.print(f"epoch {epoch:>3}/{pre.epochs}  train loss {result.loss:.4f} acc {result.accuracy:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}"
                      + (f" perplexity {rows[-1]['val_perplexity']:.3f}" if text else "") + f"  {rows[-1]['wall_seconds']:.1f} s")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    options = model_options(cfg.model)
    extra: dict[str, Any] = {"classes": list(pre.classes), "train_examples": len(y), "val_accuracy": float(rows[-1]["val_accuracy"])}
    if text:
        extra.update(vocabulary=Vocabulary.default().chars, seq_len=cfg.data.seq_len)  # `fedft generate --model` reads these
    hf_dir = None
    if cfg.model.name == "hf":
        hf_dir = save_hf(model, run_dir / "hf")
        options["path"] = str(hf_dir.resolve())  # model.pt rebuilds from the folder written here
    model_path = save_checkpoint(
        run_dir / "model.pt", state, architecture=cfg.model.name, num_classes=train_set.num_classes, input_shape=shape,
        dataset=pre.dataset, config_json=cfg.to_json(), extra={"model_options": options, **extra},
    )
    header = list(rows[0])
    atomic_write(run_dir / "pretrain.csv", "\n".join([",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]) + "\n")
    summary = {"status": "completed", "dataset": pre.dataset, "model": cfg.model.name, "epochs": pre.epochs, "train_examples": len(y),
               "val_examples": len(yv), "val_accuracy": rows[-1]["val_accuracy"], "wall_seconds": round(time.perf_counter() - t_start, 3),
               "seed": cfg.seed, "model_path": str(model_path), "versions": versions()}
    if text:
        summary["val_perplexity"] = rows[-1]["val_perplexity"]
    if hf_dir is not None:
        summary["hf_path"] = str(hf_dir)
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {model_path}" + (f" and {hf_dir} (save_pretrained)" if hf_dir else "") + f" (validation accuracy {rows[-1]['val_accuracy']:.4f})")
    return PretrainResult(run_dir, hf_dir or model_path, rows)


def initial_model(cfg: FedftConfig, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model pretraining starts from (drawn from torch's global generator, seeded by the caller):
    `model.name`'s fresh model; for "hf" a fresh one from `pretrain.hf_config`, or with that empty
    the pretrained one at `model.path`, without adapters (pretraining trains every weight)."""
    if cfg.model.name != "hf":
        return build_model(cfg.model.name, shape, num_classes, **model_options(cfg.model))
    if not cfg.pretrain.hf_config:
        return build_model("hf", shape, num_classes, path=cfg.model.path)
    lm = fresh_causal_lm(cfg.pretrain.hf_config, num_classes, shape[0])
    return CausalLM(lm, int(getattr(lm.config, "n_positions", None) or getattr(lm.config, "max_position_embeddings", 0) or 0))


def save_hf(model: nn.Module, folder: Path) -> Path:
    """`save_pretrained` of an hf model into `folder` (written beside it, then renamed), with
    the character vocabulary it was trained on (`fedft_vocabulary.json`, as `fedft export` writes)."""
    if not isinstance(model, CausalLM):
        raise FedftError("model.name", "\"hf\" is registered by another module here.", "pretrain in a process without plugins that replace 'hf'.")
    partial = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    try:
        with quiet_transformers():
            model.lm.save_pretrained(partial)
        write_text(partial / VOCABULARY_FILE, json.dumps({"unknown": 0, "chars": Vocabulary.default().chars}))
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
