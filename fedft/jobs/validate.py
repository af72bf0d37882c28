"""Everything a run config must satisfy before a job starts, beyond its schema.

`fedft.config` checks single fields and the rules that need nothing but the config;
the rules here need the layers below the jobs: dataset, model and strategy names
(their registries), privacy calibration, fine-tuning modes against the model,
pretraining and comparison settings, the trackers' packages (`output.loggers`), text data against its partition method, and
strategy parameters against the run. Every job loads its config through
`load_config`, so a bad config fails with one line before any folder or process exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig, check_sections, import_plugins, parse_override, raw_config, validate, workers_import
from fedft.errors import FedftError
from fedft.fl.server.policy import check_devices
from fedft.fl.server.secaggplus_config import check_secure_aggregation
from fedft.jobs.trackers import check_loggers
from fedft.ml.data import check_dataset_name, dataset_origin
from fedft.ml.data.text import Vocabulary, check_text_partition, is_text_dataset
from fedft.ml.finetune import check_finetune
from fedft.ml.models import build_model, check_model_name, lora_active, model_options, model_origin
from fedft.privacy.checks import check_privacy_config
from strategies import RunFacts, check_strategy, strategy_origin


def load_config(source: str | Path | dict[str, Any] | FedftConfig, overrides: list[str] | None = None) -> FedftConfig:
    """The one way in for jobs: a path, a dict or a config, plus `--set` overrides, fully checked."""
    cfg = validate(raw_config(source, overrides))
    check_run_config(cfg)
    return cfg


def check_run_config(cfg: FedftConfig) -> None:
    """Raise FedftError (one line: field, problem, fix) on the first rule `cfg` breaks.
    `[plugins] modules` are imported first: their registrations are names like any other."""
    import_plugins(cfg.plugins.modules)
    check_dataset_name(cfg.data.name)
    check_model_name(cfg.model.name)
    check_strategy(cfg.strategy.name, cfg.strategy.params())
    check_workers_know_names(cfg)
    check_sections(cfg)
    check_lora(cfg)
    check_privacy_config(cfg)
    check_devices(cfg)
    check_secure_aggregation(cfg)
    check_finetune(cfg)
    check_pretrain(cfg)
    check_compare(cfg)
    check_loggers(cfg.output.loggers, cfg.output.model_dump())  # a tracker's missing package fails now, not after round 1
    check_text_partition(cfg.data.name, cfg.partition.method)
    check_strategy(cfg.strategy.name, cfg.strategy.params(), RunFacts.from_config(cfg))  # Krum's n > 2f + 2 with n = clients_per_round, ...


def check_workers_know_names(cfg: FedftConfig) -> None:
    """A name registered by code that Ray workers and SuperNodes never import (the user's
    script, a module not in `[plugins] modules`) passes here but fails on every client."""
    for field, name, origin in (("data.name", cfg.data.name, dataset_origin(cfg.data.name)),
                                ("model.name", cfg.model.name, model_origin(cfg.model.name)),
                                ("strategy.name", cfg.strategy.name, strategy_origin(cfg.strategy.name))):
        if origin is None or workers_import(origin, cfg.plugins.modules):
            continue
        where = "your script (__main__)" if origin == "__main__" else f"module '{origin}', which is not in [plugins] modules"
        fix = (f"add \"{origin}\" to [plugins] modules" if origin != "__main__" else "move it into a module and list that module in [plugins] modules") + ", or name it as package.module:function."
        raise FedftError(field, f"'{name}' is registered by {where}: Ray workers and SuperNodes would not know it.", fix)


def check_pretrain(cfg: FedftConfig) -> None:
    """Config-time rules for `[pretrain]` (nothing is loaded here)."""
    pre = cfg.pretrain
    if not pre.dataset:
        return
    try:
        check_dataset_name(pre.dataset)
    except FedftError as exc:
        raise FedftError("pretrain.dataset", exc.problem, exc.fix) from None
    if pre.hf_config and cfg.model.name != "hf":
        raise FedftError("pretrain.hf_config", f"is set but model.name is '{cfg.model.name}'.", 'set model.name = "hf", or remove pretrain.hf_config.')
    if is_text_dataset(pre.dataset):
        if not is_text_dataset(cfg.data.name):
            raise FedftError("pretrain.dataset", f"'{pre.dataset}' is text; the clients' data '{cfg.data.name}' is not.", "pretrain on a dataset like the clients'.")
        return  # the clients' own play gives only the roles that are not clients (fedft.ml.data.text.public_text)
    if pre.dataset == cfg.data.name and pre.path == cfg.data.path:
        raise FedftError(
            "pretrain.dataset",
            f"is the clients' dataset '{cfg.data.name}': pretraining on it would train on the clients' private examples and the server's test set.",
            "use another public dataset, e.g. digits or fashion-mnist.",
        )
    if len(set(pre.classes)) != len(pre.classes) or any(c < 0 for c in pre.classes):
        raise FedftError("pretrain.classes", f"{pre.classes} has duplicates or negative labels.", "list distinct class labels, e.g. [0, 1, 2, 3, 4].")


def check_lora(cfg: FedftConfig, load: bool | None = None) -> None:
    """`model.name = "hf"` with `[lora]`: text data, one way to pick what trains, a model that
    loads (which needs the fedft[llm] extra), and only what is built so far. The model is not
    loaded (`load` None) while `model.path` is `{pretrained}`, or empty with `pretrain.hf_config`
    set: pretraining writes it; a run checks it again with `load = True`."""
    if cfg.model.name != "hf":
        return
    if not is_text_dataset(cfg.data.name):
        raise FedftError("model.name", f"'hf' is a causal language model for text data, not '{cfg.data.name}'.", 'use data.name = "text" with data.path (a play).')
    lora = cfg.lora
    if lora_active(cfg.model, lora) and cfg.finetune.mode != "full":
        raise FedftError("finetune.mode", f"'{cfg.finetune.mode}' and lora.rank = {lora.rank} both choose what trains.", "keep finetune.mode = \"full\" with LoRA, or set lora.rank = 0.")
    if lora.ranks and lora.mode == "ffa":
        raise FedftError("lora.ranks", "per-client ranks need FlexLoRA's SVD redistribution, which changes A; FFA-LoRA keeps A frozen.", "use lora.mode = \"lora\" with ranks, or leave lora.ranks = [].")
    if lora.ranks and cfg.strategy.name != "flexlora":
        raise FedftError("lora.ranks", f"clients of different ranks cannot be averaged by '{cfg.strategy.name}' (the shapes differ).", "set strategy.name = \"flexlora\" (FlexLoRA: average B A, split by SVD).")
    if load is None:  # a path that pretraining is still to write is checked once it exists (compare re-checks every arm)
        load = PRETRAINED not in cfg.model.path and bool(cfg.model.path or not cfg.pretrain.hf_config)
    if load:
        build_model("hf", (cfg.data.seq_len,), Vocabulary.default().size, **model_options(cfg.model, lora))  # loads: a bad path or target fails here


# ------------------------------------------------------------ the jobs' own sections

PRETRAINED = "{pretrained}"
FIXED = ("seed", "data", "partition", "simulation.clients_per_round")  # same for every arm
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_compare(cfg: FedftConfig, fixed: tuple[str, ...] = FIXED) -> None:
    """Config-time rules for `[compare]`: names, the reference, and what arms may change."""
    cmp = cfg.compare
    if not cmp.arms:
        if cmp.pretrain or cmp.reference:
            raise FedftError("compare.arms", "is empty but compare.pretrain or compare.reference is set.", "add arms under [compare.arms] or remove the [compare] settings.")
        return
    for name, overrides in cmp.arms.items():
        if not _ARM_NAME.match(name) or name == "pretrained":
            raise FedftError(f"compare.arms.{name}", "is not a usable arm name (it names a folder).", "use letters, digits, '_', '-' or '.', and not 'pretrained'.")
        for text in overrides:
            path, value = parse_override(text)
            key = ".".join(path)
            if path[0] == "compare":
                raise FedftError(f"compare.arms.{name}", f"'{text}' changes [compare] itself.", "arms may override any run setting but not [compare].")
            if any(key == f or key.startswith(f + ".") for f in fixed):
                raise FedftError(f"compare.arms.{name}", f"'{text}' changes {key}, which every arm must share (same seed, data, partitions and clients).", "set it in the base config instead.")
            if isinstance(value, str) and PRETRAINED in value and not cmp.pretrain:
                raise FedftError(f"compare.arms.{name}", f"'{text}' uses {PRETRAINED} but compare.pretrain is false.", "set compare.pretrain = true (and [pretrain] dataset), or give a checkpoint path.")
    if any(not 0.0 < t <= 1.0 for t in cmp.targets):
        raise FedftError("compare.targets", f"{cmp.targets} has values outside (0, 1].", "give accuracies such as [0.9].")
    if cmp.reference and cmp.reference not in cmp.arms:
        raise FedftError("compare.reference", f"'{cmp.reference}' is not an arm.", f"use one of: {', '.join(cmp.arms)}.")
    if PRETRAINED in cfg.model.path and not cmp.pretrain:
        raise FedftError("model.path", f"'{cfg.model.path}' uses {PRETRAINED} but compare.pretrain is false.", "set compare.pretrain = true (and [pretrain] dataset), or give a model folder.")
    if cmp.pretrain and not cfg.pretrain.dataset:
        raise FedftError("compare.pretrain", "is true but [pretrain] dataset is not set.", 'set pretrain.dataset, e.g. "fashion-mnist".')
