"""Privacy settings rejected before anything starts: one FedftError naming the field.

`check_privacy_config` needs only the config (called from `fedft.config`);
`check_privacy_data` also needs the clients' dataset sizes and the model (called
from `fedft.api.prepare`, after the data is loaded).
"""

from __future__ import annotations

import warnings

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.ml.models import build_model, model_options
from fedft.privacy.accounting import AccountingError, UnreachableBudget, central_epsilon, compose, dp_sgd_sample_rate, dp_sgd_steps_per_epoch, epsilon
from fedft.privacy.central import CENTRAL_DP_STRATEGIES, central_accounting_rate, central_noise_multiplier, clipped_count_stddev, update_noise_multiplier
from fedft.privacy.dp_sgd import DPIncompatibleModel, client_noise_multiplier, make_dp_compatible


class PrivacyWarning(UserWarning):
    """A privacy setting that is allowed but weak (e.g. δ ≥ 1/n)."""


def _warn_delta(delta: float, n: int, what: str) -> None:
    if n > 0 and delta >= 1.0 / n:
        warnings.warn(
            f"privacy.target_delta={delta:g} is at least 1/n for the {n} {what} it protects: "
            f"a mechanism that publishes one of them outright meets such a δ. Use δ < {1.0 / n:.2g}.",
            PrivacyWarning, stacklevel=3,
        )


def warn_seeded_noise(cfg: FedftConfig) -> None:
    """Once the input is known to be good (so that bad input still gets its one line alone)."""
    if cfg.privacy.mode != "none" and cfg.privacy.noise_source == "seeded":
        warnings.warn("privacy.noise_source = \"seeded\": the noise follows from the seed in config.toml and model.pt, so this run is reproducible "
                      "but not private (summary.json: private = false); drop the key for noise from OS entropy.", PrivacyWarning, stacklevel=3)


def check_privacy_config(cfg: FedftConfig) -> None:
    pc = cfg.privacy
    if pc.mode == "none":
        return
    if pc.noise_multiplier is None and pc.target_epsilon is None:
        raise FedftError("privacy.noise_multiplier", f"is required when privacy.mode is '{pc.mode}'.",
                         "give privacy.noise_multiplier, or privacy.target_epsilon for fedft to calibrate the noise.")
    if pc.mode == "central":
        _check_central(cfg)


def _check_central(cfg: FedftConfig) -> None:
    pc, sim = cfg.privacy, cfg.simulation
    if cfg.strategy.name not in CENTRAL_DP_STRATEGIES:
        raise FedftError("strategy.name", f"'{cfg.strategy.name}' cannot run under central DP: the noise bounds one user's effect on the mean "
                         "of the clipped updates, and this strategy does not aggregate by that mean.",
                         f"use one of {', '.join(CENTRAL_DP_STRATEGIES)}, or privacy.mode = \"local\".")
    try:
        sigma = central_noise_multiplier(cfg)
        eps = central_epsilon(sigma, central_accounting_rate(cfg), sim.rounds, pc.target_delta, pc.accountant)
    except UnreachableBudget as exc:
        raise FedftError("privacy.target_epsilon", f"is unreachable in {sim.rounds} rounds: {exc}.",
                         "raise target_epsilon, lower simulation.rounds, or sample fewer clients per round.") from None
    except AccountingError as exc:
        raise FedftError("privacy.accountant", f"{exc}.", "use accountant = \"rdp\" or \"prv\".") from None
    if pc.noise_multiplier is not None and pc.target_epsilon is not None:
        if eps > pc.target_epsilon:
            raise FedftError("privacy.target_epsilon", f"{sim.rounds} rounds at noise_multiplier={sigma:g} spend ε={eps:.3g}, more than {pc.target_epsilon:g}.",
                             "raise noise_multiplier, lower simulation.rounds, or leave noise_multiplier out so fedft calibrates it.")
    if pc.clipping.endswith("adaptive"):
        try:
            update_noise_multiplier(sigma, clipped_count_stddev(cfg))
        except ValueError as exc:
            raise FedftError("privacy.clipped_count_stddev", f"{exc}.", f"set clipped_count_stddev above {sigma / 2:g}, or use fixed clipping.") from None
    _warn_delta(pc.target_delta, cfg.partition.num_clients, "users (clients)")


def check_privacy_data(cfg: FedftConfig, data) -> None:
    """Local DP: the model must be Opacus-compatible, and every client must be able
    to train at least one round within its budget."""
    pc = cfg.privacy
    if pc.mode != "local":
        return
    try:
        make_dp_compatible(build_model(cfg.model.name, tuple(data.full.x.shape[1:]), data.full.num_classes, **model_options(cfg.model, cfg.lora)))
    except DPIncompatibleModel as exc:
        raise FedftError("model.name", f"'{cfg.model.name}' cannot be trained with DP-SGD: Opacus cannot fix it ({exc}).",
                         "use a model without such layers (e.g. seed_cnn), or privacy.mode = \"central\".") from None
    t, sim = cfg.train, cfg.simulation
    # the centralised arm is one holder of the union that trains in every round (fedft.jobs.centralised)
    sizes = [sum(len(train) for train, _ in data.clients)] if sim.centralised else sorted({len(train) for train, _ in data.clients if len(train) > 0})
    per_round, holders = (1, 1) if sim.centralised else (cfg.reports_per_round(), cfg.partition.num_clients)
    for n in sizes:
        try:
            sigma = client_noise_multiplier(pc.noise_multiplier, pc.target_epsilon, pc.target_delta, pc.accountant, n, t.batch_size,
                                            t.local_epochs, sim.rounds, per_round, holders)
            first = epsilon(compose([], sigma, dp_sgd_sample_rate(n, t.batch_size), t.local_epochs * dp_sgd_steps_per_epoch(n, t.batch_size)),
                            pc.target_delta, pc.accountant)
        except UnreachableBudget as exc:
            raise FedftError("privacy.target_epsilon", f"is unreachable in {sim.rounds} rounds for a client with {n} examples: {exc}.",
                             "raise target_epsilon, or train fewer local_epochs / rounds.") from None
        except AccountingError as exc:
            raise FedftError("privacy.accountant", f"{exc}.", "use accountant = \"rdp\" or \"prv\".") from None
        if pc.target_epsilon is not None:
            if first > pc.target_epsilon:
                raise FedftError("privacy.target_epsilon", f"a client with {n} examples spends ε={first:.3g} in one round at noise_multiplier={sigma:g}, more than {pc.target_epsilon:g}: it could never train.",
                                 "raise noise_multiplier or target_epsilon, or lower train.local_epochs.")
    if sizes:
        _warn_delta(pc.target_delta, sizes[0], "records of the union" if sim.centralised else "records of the smallest client")


def privacy_description(cfg: FedftConfig, data) -> str:
    """The privacy mode and its noise multiplier σ in a few words, for `fedft check` and the
    run's first line: so a run with the wrong (or no) noise is noticed before it starts."""
    pc = cfg.privacy
    if pc.mode == "none":
        return "no DP"
    budget = f"target ε {pc.target_epsilon:g}, " if pc.target_epsilon is not None else ""
    if pc.mode == "central":
        return f"central DP: σ {central_noise_multiplier(cfg):.3g}, {pc.clipping} clipping at {pc.clipping_norm:g}, {budget}δ {pc.target_delta:g}"
    t, sim = cfg.train, cfg.simulation
    if sim.centralised:
        n = sum(len(train) for train, _ in data.clients)
        union_sigma = client_noise_multiplier(pc.noise_multiplier, pc.target_epsilon, pc.target_delta, pc.accountant, n, t.batch_size, t.local_epochs, sim.rounds, 1, 1)
        return f"centralised DP-SGD on {n} records: σ {union_sigma:.3g}, per-sample clipping at {pc.max_grad_norm:g}, {budget}δ {pc.target_delta:g}"
    sigmas = sorted({client_noise_multiplier(pc.noise_multiplier, pc.target_epsilon, pc.target_delta, pc.accountant, len(train), t.batch_size,
                                             t.local_epochs, sim.rounds, cfg.reports_per_round(), cfg.partition.num_clients)
                     for train, _ in data.clients if len(train) > 0})
    sigma = "σ -" if not sigmas else f"σ {sigmas[0]:.3g}" if len(sigmas) == 1 else f"σ {sigmas[0]:.3g}-{sigmas[-1]:.3g} across clients"
    return f"local DP (DP-SGD): {sigma}, per-sample clipping at {pc.max_grad_norm:g}, {budget}δ {pc.target_delta:g}"
