"""The centralised reference arm (`simulation.centralised = true`): no federation.

One model trains on the union of the clients' training records (the same records, the
same model, start state, optimiser settings and test set as the federated run), for
`simulation.rounds` "rounds" of `train.local_epochs` epochs each, evaluated on the server's
test set after each, so its metrics.jsonl, summary.json and plots line up with a federated
run's and a sweep or comparison shows what federation costs.

With `privacy.mode = "local"` it is record-level DP-SGD over the union through the same
Opacus code as a local-DP client (`fedft.privacy.dp_sgd.dp_train`): Poisson sampling at
q = 1 / ceil(N / batch_size) of the N union records, per-sample clipping to
`privacy.max_grad_norm`, noise `noise_multiplier` (or calibrated so the planned
rounds · local_epochs · int(1/q) steps spend `target_epsilon`), one accountant history
composed across rounds. The ε reported is that history's, i.e. of the steps taken.

It runs in this process (no Ray, no messages): bytes are 0 and a run that stops is
run again from the start (a sweep redoes it).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedft.config import FedftConfig
from fedft.fl.context import RunContext
from fedft.fl.server.exchange import RunInterrupted
from fedft.ml.data import FederatedData
from fedft.ml.finetune import freeze, param_groups
from fedft.ml.models import model_options
from fedft.ml.training import evaluate, make_optimizer, resolve_device, seed_generator, seeded_global_rng, train
from fedft.privacy.accounting import REPORTED_ACCOUNTANTS, History, epsilon, total_steps
from fedft.privacy.audit import run_mia
from fedft.privacy.disclosure import disclosure
from fedft.privacy.dp_sgd import client_noise_multiplier, dp_train, make_dp_compatible, plain_state
from fedft.privacy.one_run_audit import audit_canaries, record_audit
from fedft.privacy.tracker_plain import approximate_gdp, finite
from fedft.state.model_file import save_checkpoint
from fedft.state.run_folder import RunWriter

STREAM = 0xCE17  # seeds of the centralised arm's batches and noise, apart from any client's (seed, round, client id)
MEANING = {"privacy_unit": "record", "neighbouring": "add/remove"}


def union_indices(data: FederatedData) -> np.ndarray:
    """Every client's training records (canaries included where the audit planted them), in client order."""
    parts = [train for train, _ in data.clients]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def union_noise_multiplier(cfg: FedftConfig, num_examples: int) -> float:
    """σ of the centralised DP-SGD arm: the configured one, or the one for which
    rounds · local_epochs epochs of int(1/q) Poisson steps at q = 1/ceil(N/batch_size) spend
    `target_epsilon` (one data holder that takes part in every round)."""
    pc, t = cfg.privacy, cfg.train
    return client_noise_multiplier(pc.noise_multiplier, pc.target_epsilon, pc.target_delta, pc.accountant, num_examples,
                                   t.batch_size, t.local_epochs, cfg.simulation.rounds, 1, 1)


@dataclass
class _DPState:
    sigma: float
    history: History
    sample_rate: float = 0.0


def run_centralised(cfg: FedftConfig, writer: RunWriter, on_round: Any, stop: Any = None) -> dict[str, torch.Tensor]:
    """Train, record a row per round (round 0 = the start model) into `writer`, save model.pt
    and run the configured audits; the final state, or None when `stop` was set."""
    ctx = RunContext(cfg)
    data, t, pc = ctx.data, cfg.train, cfg.privacy
    device = resolve_device(cfg.simulation.device)
    idx = union_indices(data)
    x, y = torch.from_numpy(data.full.x[idx]), torch.from_numpy(data.full.y[idx])
    test = data.test_set
    xt, yt = torch.from_numpy(test.x), torch.from_numpy(test.y)
    dp = pc.mode == "local"
    model = ctx.build_model()
    if dp:
        model = make_dp_compatible(model)
    model.load_state_dict(ctx.start_state)
    freeze(model, ctx.plan)
    scale = cfg.finetune.body_lr_scale
    params = [q for q in model.parameters() if q.requires_grad] if scale == 1.0 else param_groups(model, ctx.plan, t.lr, scale)
    optimizer = make_optimizer(t.optimizer, params, t.lr, t.momentum, t.weight_decay)
    keys = list(ctx.start_state)
    state = _DPState(union_noise_multiplier(cfg, len(y)), []) if dp else None
    os_noise = pc.noise_source == "os"
    writer.extra.update(_privacy_summary(cfg, state, len(y)))

    t0 = time.perf_counter()
    loss, acc = evaluate(model, xt, yt, device)
    row0 = {"round": 0, "test_loss": loss, "test_accuracy": acc, "wall_seconds": time.perf_counter() - t0, "train_examples": len(y)}
    writer.record_round(row0)
    on_round(row0)
    for rnd in range(1, cfg.simulation.rounds + 1):
        if stop is not None and stop.is_set():
            raise RunInterrupted(f"stopped before round {rnd}")
        t0 = time.perf_counter()
        privacy_columns: dict[str, Any] = {}
        if state is not None:
            rng = nullcontext() if os_noise else seeded_global_rng(device, cfg.seed, rnd, STREAM)
            model.train()  # evaluation left it in eval mode, which Opacus refuses
            with rng:
                out = dp_train(model, x, y, epochs=t.local_epochs, batch_size=t.batch_size, optimizer=optimizer, noise_multiplier=state.sigma,
                               max_grad_norm=pc.max_grad_norm, history=state.history, accountant=pc.accountant,
                               seed_parts=None if os_noise else (cfg.seed, rnd, STREAM), device=device)
            state.history, state.sample_rate, result = out.history, out.sample_rate, out.train
            eps = epsilon(state.history, pc.target_delta, pc.accountant)
            privacy_columns = {"epsilon": eps, "delta": pc.target_delta,
                               "noise_multiplier": state.sigma, "clipping_norm": pc.max_grad_norm, "dp_steps": total_steps(state.history), **MEANING}
            writer.extra.update(_privacy_summary(cfg, state, len(y), eps, both=rnd == cfg.simulation.rounds))  # prv's ε costs ~1 s: the last round only
        else:
            result = train(model, x, y, epochs=t.local_epochs, batch_size=t.batch_size, optimizer=optimizer,
                           generator=seed_generator(cfg.seed, rnd, STREAM), device=device)
        evaluated = rnd % cfg.simulation.evaluate_every == 0 or rnd == cfg.simulation.rounds
        test_cols = dict(zip(("test_loss", "test_accuracy"), evaluate(model, xt, yt, device))) if evaluated else {}
        row = {"round": rnd, **test_cols, "train_loss": result.loss, "train_accuracy": result.accuracy, "train_steps": result.steps,
               "clients_sampled": 1, "clients_replied": 1, "clients_failed": 0, "clients_timed_out": 0, "bytes_down": 0, "bytes_up": 0,
               "wall_seconds": time.perf_counter() - t0, **privacy_columns}
        writer.record_round(row)
        on_round(row)
    final = plain_state(model, keys) if dp else {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_checkpoint(writer.run_dir / "model.pt", final, architecture=cfg.model.name, num_classes=data.full.num_classes,
                    input_shape=tuple(data.full.x.shape[1:]), dataset=cfg.data.name, config_json=cfg.to_json(),
                    extra={"model_options": model_options(cfg.model, cfg.lora), "centralised": True, "train_examples": len(y)})
    _audits(cfg, ctx, final, writer)
    return final


def _privacy_summary(cfg: FedftConfig, state: _DPState | None, num_examples: int, eps: float | None = None, both: bool = False) -> dict[str, Any]:
    """summary.json keys: what ran (centralised, on how many records) and, under DP, the
    (σ, q, steps) of the whole run with its ε under the configured accountant (`eps` when the
    round already computed it; `both`: also rdp and prv)."""
    base = {"training": "centralised", "train_examples": num_examples}
    if state is None:
        return {**base, "privacy_mode": "none", "epsilon": None}
    pc = cfg.privacy
    others: dict[str, Any] = {f"epsilon_{name}": finite(epsilon(state.history, pc.target_delta, name)) for name in REPORTED_ACCOUNTANTS} if both else {}
    if both:
        others["epsilon_gdp"] = approximate_gdp(state.history, pc.target_delta)
    stamp = disclosure("local", pc.noise_source, "none")  # private, or why not
    return {
        **base, "privacy_mode": "local", **MEANING, "delta": pc.target_delta, "accountant": pc.accountant,
        "epsilon": finite(eps if eps is not None else epsilon(state.history, pc.target_delta, pc.accountant)), **others,
        "noise_multiplier": state.sigma, "max_grad_norm": pc.max_grad_norm, "sample_rate": state.sample_rate or None,
        "steps_max": total_steps(state.history), "noise_source": pc.noise_source,
        "private": stamp["private"], "not_private_because": stamp["not_private_because"],
        "outside_epsilon": ["train_examples (summary.json): the union's record count, in the clear"],
    }


def _audits(cfg: FedftConfig, ctx: RunContext, final: dict[str, torch.Tensor], writer: RunWriter) -> None:
    """The same audits as a federated run's final model (`fedft.fl.server.app.serve`)."""
    data = ctx.data
    if cfg.audit.mia:
        writer.extra.update(run_mia(ctx.build_model(), final, data, cfg.audit.mia_samples, cfg.seed))
    if cfg.audit.canaries and data.canaries is not None:
        c, a = data.canaries, cfg.audit
        record_audit(writer.extra, audit_canaries(ctx.build_model(), final, data.full.x[c.index], data.full.y[c.index], c.included,
                                                  a.guess_count(), a.delta or cfg.privacy.target_delta, a.confidence))
