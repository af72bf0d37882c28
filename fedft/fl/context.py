"""The run context: what a process derives from a run's config, derived once.

Data, model, fine-tuning plan and start state are pure functions of the config.
Every layer used to re-derive them from the whole config object; now the server
builds one `RunContext` per run and a client process one per config
(`run_context`, cached), and both pass it, or pieces of it, down. Everything is
computed on first use, so a client whose plan sends every array never reads a
`model.init_from` file, and a node with its own data never partitions the dataset
for its tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import torch
from torch import nn

from fedft.config import FedftConfig, import_plugins
from fedft.ml.data import FederatedData, federated_data_for
from fedft.ml.finetune import FinetunePlan, frozen_digest, head_names, make_plan
from fedft.ml.models import ADAPTER_PATTERNS, build_model, lora_active, model_key
from fedft.state.model_file import check_compatible, load_checkpoint

ClientTensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]  # x_train, y_train, x_val, y_val, num_classes


@dataclass(frozen=True, eq=False)
class RunContext:
    """One run's derived objects for this process (identity-hashed: caches key on it)."""

    cfg: FedftConfig

    @cached_property
    def data(self) -> FederatedData:
        return federated_data_for(self.cfg)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.full.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return self.data.full.num_classes

    def build_model(self, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> nn.Module:
        """A fresh model for this run (by default shaped for the run's dataset)."""
        name, options = model_key(self.cfg.model, self.cfg.lora)
        shape = self.input_shape if input_shape is None else input_shape
        return build_model(name, shape, self.num_classes if num_classes is None else num_classes, **dict(options))

    def client_rank(self, client_id: int) -> int | None:
        """This client's LoRA rank under `lora.ranks` (cycled over client ids); None: the run's model as it is."""
        ranks = self.cfg.lora.ranks
        return ranks[client_id % len(ranks)] if ranks and lora_active(self.cfg.model, self.cfg.lora) else None

    def worker_model(self, input_shape: tuple[int, ...], num_classes: int, rank: int | None = None) -> nn.Module:
        """This worker's model object, built once and reused: every use loads a full
        state into it (all parameters and buffers) and makes a fresh optimizer, so reuse
        changes no result; building seed_cnn costs about a third of a small client's round."""
        name, options = model_key(self.cfg.model, self.cfg.lora, rank)
        return _worker_model(name, tuple(input_shape), num_classes, options)

    @cached_property
    def plan(self) -> FinetunePlan:
        """What trains and what travels (`finetune.mode`; with LoRA adapters, the adapters' trainable tensors)."""
        cfg = self.cfg
        return make_plan(self.build_model(), ADAPTER_PATTERNS[cfg.lora.mode] if lora_active(cfg.model, cfg.lora) else cfg.finetune.mode)

    @cached_property
    def initial_state(self) -> dict[str, torch.Tensor]:
        """The seeded init of the run's model, without touching global RNG state."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            model = self.build_model()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    @cached_property
    def start_state(self) -> dict[str, torch.Tensor]:
        """The round-0 global model: the seeded init, or `model.init_from` (with a fresh
        seeded head when `model.reset_head`). Deterministic, so clients rebuild the frozen part."""
        state, m = self.initial_state, self.cfg.model
        if not m.init_from:
            return state
        record = load_checkpoint(m.init_from)
        head = set(head_names(self.build_model())) if m.reset_head else set()
        check_compatible(record, m.init_from, architecture=m.name, input_shape=self.input_shape, num_classes=self.num_classes,
                         expected={k: tuple(v.shape) for k, v in state.items() if k not in head}, reset_head=m.reset_head)
        loaded = record["state_dict"]
        return {k: (v if k in head else loaded[k].to(v.dtype).clone()) for k, v in state.items()}

    @cached_property
    def frozen_digest(self) -> str:
        """Digest of the start state's frozen part ("" when every array travels)."""
        return "" if self.plan.sends_everything else frozen_digest(self.start_state, self.plan)

    def client_tensors(self, client_id: int) -> ClientTensors:
        """(x_train, y_train, x_val, y_val, num_classes) for one client, cached per worker."""
        return _client_tensors(self, client_id)

    def merge_received(self, received: dict[str, torch.Tensor], digest: str = "") -> dict[str, torch.Tensor]:
        """A full state for the client's model: the start state with the received arrays on top.
        Refuses arrays that are not the plan's `sent` keys, and a frozen part that differs."""
        plan = self.plan
        if set(received) != set(plan.sent):
            extra, missing = sorted(set(received) - set(plan.sent)), sorted(set(plan.sent) - set(received))
            raise ValueError(f"received arrays do not match finetune.mode: unexpected {extra[:5]}, missing {missing[:5]}")
        if plan.sends_everything:
            return received
        if digest and digest != self.frozen_digest:
            raise ValueError("this client's frozen parameters differ from the server's (another model.init_from file?)")
        return {**self.start_state, **received}


@lru_cache(maxsize=8)
def run_context(config_json: str) -> RunContext:
    """The context of the run a message's config belongs to, built once per worker process.
    A worker imports the config's `[plugins] modules` itself first: registries are per process."""
    cfg = FedftConfig.from_json(config_json)
    import_plugins(cfg.plugins.modules)
    return RunContext(cfg)


def client_tensors(config_json: str, client_id: int) -> ClientTensors:
    """`RunContext.client_tensors` for a config in its JSON form."""
    return run_context(config_json).client_tensors(client_id)


@lru_cache(maxsize=256)
def _client_tensors(ctx: RunContext, client_id: int) -> ClientTensors:
    data = ctx.data
    if not 0 <= client_id < len(data.clients):
        raise ValueError(f"partition-id {client_id} is outside 0..{len(data.clients) - 1}")
    train_set, val_set = data.client_sets(client_id)
    as_t = torch.from_numpy
    return as_t(train_set.x), as_t(train_set.y), as_t(val_set.x), as_t(val_set.y), data.full.num_classes


@lru_cache(maxsize=4)
def _worker_model(name: str, input_shape: tuple, num_classes: int, options: tuple) -> nn.Module:
    return build_model(name, input_shape, num_classes, **dict(options))


def resolve_init_from(cfg: FedftConfig) -> FedftConfig:
    """The same config with `model.init_from` (and a local `model.path`) absolute, so every process
    (Ray workers start elsewhere) reads the same file."""
    if cfg.model.init_from:
        cfg.model.init_from = str(Path(cfg.model.init_from).expanduser().resolve())
    if cfg.model.name == "hf" and cfg.model.path and Path(cfg.model.path).expanduser().is_dir():  # a local folder, not a hub id
        cfg.model.path = str(Path(cfg.model.path).expanduser().resolve())
    return cfg


def check_start(cfg: FedftConfig) -> None:
    """Before anything starts: make `model.init_from` absolute, then load and check it."""
    resolve_init_from(cfg)
    if cfg.model.init_from:
        _ = RunContext(cfg).start_state  # loads and checks the checkpoint
