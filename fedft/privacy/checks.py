"""Privacy settings rejected before anything starts: one FedftError naming the field.

`check_privacy_config` needs only the config (called from `fedft.config`);
`check_privacy_data` also needs the clients' dataset sizes and the model (called
from `fedft.api.prepare`, after the data is loaded).
"""

from __future__ import annotations

import warnings

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.ml.finetune import make_plan
from fedft.ml.models import ADAPTER_PATTERNS, build_model, lora_active, model_options
from fedft.privacy.accounting import AccountingError, UnreachableBudget, compose, dp_sgd_sample_rate, dp_sgd_steps_per_epoch, epsilon
from fedft.privacy.central import CENTRAL_DP_STRATEGIES, central_noise_multiplier, central_planned_epsilon, clipped_count_stddev, update_noise_multiplier
from fedft.privacy.distributed import distributed_plan, secagg_min_reports
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
    if pc.mode == "distributed":
        _check_distributed(cfg)


def _check_distributed(cfg: FedftConfig) -> None:
    """What distributed DP under simulated SecAgg cannot run with (fedft.privacy.distributed)."""
    pc, sim = cfg.privacy, cfg.simulation
    if pc.client_sampling != "fixed":
        raise FedftError("privacy.client_sampling", f"is \"{pc.client_sampling}\", but under distributed DP the noise comes from the sampled clients' shares, "
                         "calibrated to a fixed cohort of clients_per_round, and is accounted without amplification.",
                         "set privacy.client_sampling = \"fixed\".")
    if cfg.strategy.name not in CENTRAL_DP_STRATEGIES:
        raise FedftError("strategy.name", f"'{cfg.strategy.name}' cannot run under distributed DP: the server sees only the sum of the clients' "
                         "shares, and this strategy does not aggregate by the mean.",
                         f"use one of {', '.join(CENTRAL_DP_STRATEGIES)}, or privacy.mode = \"local\".")
    if pc.clipping.endswith("adaptive"):
        raise FedftError("privacy.clipping", f"'{pc.clipping}' needs the server to see which updates were clipped; under distributed DP "
                         "every client clips to the fixed clipping_norm itself.", "set privacy.clipping = \"client_fixed\" (or drop the key).")
    if pc.secagg_min_reports > sim.clients_per_round:
        raise FedftError("privacy.secagg_min_reports", f"= {pc.secagg_min_reports} is more than simulation.clients_per_round = {sim.clients_per_round}, "
                         "so secure aggregation would abort every round.", "require at most clients_per_round shares (0 = a majority).")
    incompatible = [("compression.kind", cfg.compression.kind != "none", "the shares are themselves the encoding of the update", "set compression.kind = \"none\""),
                    ("lora.ranks", bool(cfg.lora.ranks), "every share must have the same length to be summed", "drop lora.ranks"),
                    ("round_policy.name", cfg.round_policy.name == "fedbuff", "FedBuff rebases each update on its own, which the sum hides", "use round_policy.name = \"sync\" or \"deadline\""),
                    ("simulation.centralised", sim.centralised, "user-level DP needs users, and a centralised run has one data holder", "use privacy.mode = \"local\" or \"none\""),
                    ("deploy.secure_aggregation", cfg.deploy.secure_aggregation, "privacy.mode = \"distributed\" simulates its own secure aggregation", "drop deploy.secure_aggregation")]
    for field, bad, why, fix in incompatible:
        if bad:
            raise FedftError(field, f"cannot run with privacy.mode = \"distributed\": {why}.", f"{fix}, or use privacy.mode = \"central\".")
    _warn_delta(pc.target_delta, cfg.partition.num_clients, "users (clients)")


def check_distributed_plan(cfg: FedftConfig, dimension: int) -> None:
    """Distributed DP for an update of `dimension` coordinates: the bits hold the sum, the budget is
    reachable, and a given noise_multiplier keeps within a given target_epsilon."""
    pc, rounds = cfg.privacy, cfg.simulation.rounds
    try:
        plan = distributed_plan(cfg, dimension)
    except UnreachableBudget as exc:
        raise FedftError("privacy.target_epsilon", f"is unreachable in {rounds} rounds: {exc}.", "raise target_epsilon or lower simulation.rounds.") from None
    except ValueError as exc:
        raise FedftError("privacy.secagg_bits", f"= {pc.secagg_bits}: {exc}.", "raise secagg_bits (20 is plenty for most models), or set a coarser privacy.granularity.") from None
    if pc.noise_multiplier is not None and pc.target_epsilon is not None and (eps := plan.epsilon([plan.variance] * rounds, pc.target_delta)) > pc.target_epsilon:
        raise FedftError("privacy.target_epsilon", f"{rounds} rounds at noise_multiplier={pc.noise_multiplier:g} spend ε={eps:.3g} (Skellam, after rounding), "
                         f"more than {pc.target_epsilon:g}.", "raise noise_multiplier, lower simulation.rounds, or leave noise_multiplier out so fedft calibrates it.")


def sent_dimension(cfg: FedftConfig, data) -> int:
    """The coordinates of the arrays a training message carries (the update a client encodes)."""
    model = build_model(cfg.model.name, tuple(data.full.x.shape[1:]), data.full.num_classes, **model_options(cfg.model, cfg.lora))
    plan = make_plan(model, ADAPTER_PATTERNS[cfg.lora.mode] if lora_active(cfg.model, cfg.lora) else cfg.finetune.mode)
    state = model.state_dict()
    return int(sum(state[k].numel() for k in plan.sent))


def _check_participation(cfg: FedftConfig) -> None:
    """Correlated noise and cyclic sampling: the participation their accounting assumes."""
    pc, sim = cfg.privacy, cfg.simulation
    if pc.noise_mechanism != "independent" and pc.client_sampling == "poisson":
        raise FedftError("privacy.noise_mechanism", f"'{pc.noise_mechanism}' is accounted for participation that is fixed or cyclic, not Poisson "
                         "(amplification by sampling does not carry over to correlated noise here).",
                         "set privacy.client_sampling = \"cyclic\" (or \"fixed\"), or noise_mechanism = \"independent\".")
    if pc.noise_mechanism != "independent" and pc.clipping.endswith("adaptive"):
        raise FedftError("privacy.clipping", f"'{pc.clipping}' releases a fresh noised count every round, outside the correlated noise's accounting.",
                         "use privacy.clipping = \"server_fixed\" or \"client_fixed\" with correlated noise.")
    if pc.client_sampling == "cyclic" and cfg.devices.profiles:
        raise FedftError("privacy.client_sampling", "is \"cyclic\", but with devices.profiles the devices decide who takes part.",
                         "set privacy.client_sampling = \"fixed\", or drop devices.profiles.")
    if pc.client_sampling == "cyclic" and sim.clients_per_round > cfg.partition.num_clients:
        raise FedftError("privacy.client_sampling", f"is \"cyclic\" with clients_per_round = {sim.clients_per_round} above num_clients = {cfg.partition.num_clients}.",
                         "lower simulation.clients_per_round to at most partition.num_clients.")


def _check_central(cfg: FedftConfig) -> None:
    pc, sim = cfg.privacy, cfg.simulation
    if cfg.strategy.name not in CENTRAL_DP_STRATEGIES:
        raise FedftError("strategy.name", f"'{cfg.strategy.name}' cannot run under central DP: the noise bounds one user's effect on the mean "
                         "of the clipped updates, and this strategy does not aggregate by that mean.",
                         f"use one of {', '.join(CENTRAL_DP_STRATEGIES)}, or privacy.mode = \"local\".")
    _check_participation(cfg)
    try:
        sigma = central_noise_multiplier(cfg)
        eps = central_planned_epsilon(cfg, sigma)
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
    if pc.mode == "distributed":
        check_distributed_plan(cfg, sent_dimension(cfg, data))
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
    if pc.mode == "distributed":
        plan = distributed_plan(cfg, sent_dimension(cfg, data))
        return (f"distributed DP (Skellam, simulated SecAgg): σ {plan.noise_multiplier:.3g}, client clipping at {pc.clipping_norm:g}, "
                f"{pc.secagg_bits} bits, granularity {plan.granularity:.3g}, at least {secagg_min_reports(cfg)} shares a round, {budget}δ {pc.target_delta:g}")
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
