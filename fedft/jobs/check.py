"""`fedft check CONFIG`: everything a job would refuse, found without running it.

The checks are the ones `fedft run`, `compare`, `sweep` and `pretrain` make before
they start (fields, data, partitions, model and checkpoint, privacy calibration; every
arm, every point), so a config can be fixed before a long job is queued: one line and
exit 2 on the first problem, as the job itself would give, and no folder.
"""

from __future__ import annotations

from pathlib import Path

from fedft.config import FedftConfig, apply_overrides, read_toml
from fedft.jobs.compare import prepare_arms
from fedft.jobs.pretrain import prepare_pretrain
from fedft.jobs.run import prepare
from fedft.jobs.sweep import is_sweep_config, prepare_points
from fedft.jobs.validate import load_config
from fedft.ml.data import federated_data_for
from fedft.privacy.checks import privacy_description


def check(config: str | Path, overrides: list[str] | None = None) -> str:
    """What `config` would run, in a few words; raises FedftError on the first problem."""
    if is_sweep_config(config):
        return f"a sweep of {len(prepare_points(apply_overrides(read_toml(config), overrides)))} runs"
    base = load_config(config, overrides)
    if base.compare.arms:
        prepare_arms(base)
        return f"{len(base.compare.arms)} compared runs ({', '.join(base.compare.arms)})" + (", after pretraining" if base.compare.pretrain else "")
    cfg = prepare(base)
    if cfg.pretrain.dataset:
        prepare_pretrain(cfg)  # `fedft pretrain` on the same file
    return _one_run(cfg)


def _one_run(cfg: FedftConfig) -> str:
    sim = cfg.simulation
    privacy = f", {privacy_description(cfg, federated_data_for(cfg))}"
    pretraining = f"; `fedft pretrain` trains on {cfg.pretrain.dataset}" if cfg.pretrain.dataset else ""
    return (f"one run: {cfg.model.name} on {cfg.data.name}, {cfg.partition.num_clients} clients "
            f"({sim.clients_per_round} per round), {sim.rounds} rounds, {cfg.strategy.name}{privacy}{pretraining}")
