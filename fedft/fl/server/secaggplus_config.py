"""`deploy.secure_aggregation`: which runs Flower's SecAgg+ can aggregate, and its parameters.

SecAgg+ hands the server one thing per round: the weighted mean of the cohort's updates
(fedft.fl.server.secaggplus). Whatever needs a single client's update, or anything but that
mean, cannot run with it, and is refused here with the field at fault. The parameters
are resolved once, here, for both the checks and the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedft.config import FedftConfig
from fedft.errors import FedftError

MODULUS_RANGE = 2**32  # Flower's SecAgg+ default `modulus_range`: masks and sums live mod this
# strategies whose server step needs only the weighted mean of the updates (FedProx: FedAvg's
# aggregation with a client-side proximal term; FedAvgM / FedOpt: a server optimiser on the mean)
MEAN_STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
STRATEGY_FIX = f"use one of {', '.join(MEAN_STRATEGIES)}, or set deploy.secure_aggregation = false."


@dataclass(frozen=True)
class SecAggPlusParams:
    """SecAggPlusWorkflow's arguments for a cohort of `clients_per_round`."""

    num_shares: int  # shares per secret (0 in the config: every sampled client)
    reconstruction_threshold: int
    clipping_range: float
    quantization_range: int
    timeout: float  # seconds per stage

    @property
    def flower_num_shares(self) -> int | float:
        """1.0 (a float) is Flower's "every sampled client", however many were sampled."""
        return self.num_shares or 1.0


def secaggplus_params(cfg: FedftConfig) -> SecAggPlusParams:
    d, per_round = cfg.deploy, cfg.simulation.clients_per_round
    shares = d.secagg_num_shares or per_round
    threshold = d.secagg_reconstruction_threshold or max(2, shares // 2 + 1)
    return SecAggPlusParams(d.secagg_num_shares, threshold, d.secagg_clipping_range, d.secagg_quantization_range,
                            d.secagg_timeout or cfg.simulation.round_timeout)


def check_secure_aggregation(cfg: FedftConfig) -> None:
    """Raise FedftError (one line) if `deploy.secure_aggregation` cannot run with `cfg`."""
    d = cfg.deploy
    if not d.secure_aggregation:
        return
    _check_parameters(cfg)
    _check_combinations(cfg)


def _check_parameters(cfg: FedftConfig) -> None:
    d, per_round = cfg.deploy, cfg.simulation.clients_per_round
    if per_round < 3:
        raise FedftError("simulation.clients_per_round", f"is {per_round}; SecAgg+ needs at least 3 clients per round (2 would let each learn the other's update from the mean).",
                         "sample 3 or more clients per round, or set deploy.secure_aggregation = false.")
    if d.secagg_num_shares and not 3 <= d.secagg_num_shares <= per_round:
        raise FedftError("deploy.secagg_num_shares", f"is {d.secagg_num_shares}; it must be 0 (every sampled client) or between 3 and simulation.clients_per_round = {per_round}.",
                         f"set it to 0 or to 3..{per_round} (odd is best: Flower rounds an even number up).")
    shares = d.secagg_num_shares or per_round
    t = d.secagg_reconstruction_threshold
    if t and not 2 <= t < shares:
        raise FedftError("deploy.secagg_reconstruction_threshold", f"is {t}; it must be at least 2 and below the {shares} shares per secret"
                         f" ({'deploy.secagg_num_shares' if d.secagg_num_shares else 'simulation.clients_per_round'}), or no dropout could ever be recovered.",
                         f"set it to 0 (a majority, {max(2, shares // 2 + 1)}) or to 2..{shares - 1}.")
    if per_round * d.secagg_quantization_range >= MODULUS_RANGE:  # each client's quantised coordinate is in [0, range]: their sum must stay below the modulus
        raise FedftError("deploy.secagg_quantization_range", f"{d.secagg_quantization_range} x simulation.clients_per_round = {per_round} exceeds Flower's modulus 2**32, so the masked sum would overflow.",
                         f"lower it below {MODULUS_RANGE // per_round} (e.g. {1 << ((MODULUS_RANGE - 1) // per_round).bit_length() - 1}).")


def _check_combinations(cfg: FedftConfig) -> None:
    name = cfg.strategy.name
    if name not in MEAN_STRATEGIES:
        raise FedftError("strategy.name", f"'{name}' needs each client's update (or more than their mean), but under SecAgg+ the server sees only their weighted mean.", STRATEGY_FIX)
    if cfg.privacy.mode != "none":
        raise FedftError("privacy.mode", f"is \"{cfg.privacy.mode}\"; fedft's DP accounting reads each client's reply, and central DP clips each update at the server, "
                         "which SecAgg+ hides (fedft has no DP-on-the-sum path for Flower's SecAgg+ yet).", "set privacy.mode = \"none\", or deploy.secure_aggregation = false.")
    if cfg.strategy.max_update_norm or cfg.strategy.max_update_norm_median:  # (the deployment's default median bound is left off: fedft.deploy.run_config)
        raise FedftError("strategy.max_update_norm", "bounds each client's update at the server, which never sees one under SecAgg+ (each coordinate is clipped to "
                         "deploy.secagg_clipping_range on the client instead).", "set strategy.max_update_norm = 0 and max_update_norm_median = 0.")
    refused = (
        ("compression.kind", cfg.compression.kind != "none", f"is \"{cfg.compression.kind}\"; SecAgg+ masks dense quantised vectors and cannot sum compressed ones.", "set compression.kind = \"none\"."),
        ("devices.profiles", bool(cfg.devices.profiles), "simulates devices on a virtual clock; SecAgg+ runs on real nodes.", "drop [devices] and round_policy."),
        ("round_policy.name", cfg.round_policy.name != "sync", f"is \"{cfg.round_policy.name}\"; SecAgg+ rounds are synchronous.", "set round_policy.name = \"sync\"."),
        ("lora.ranks", bool(cfg.lora.ranks), "gives clients different adapter shapes; SecAgg+ sums vectors of one shape.", "set lora.ranks = []."),
        ("simulation.centralised", cfg.simulation.centralised, "has no federation to aggregate.", "set deploy.secure_aggregation = false."),
        ("audit.canary_users", bool(cfg.audit.canary_users), "audits central DP, which SecAgg+ runs refuse.", "set audit.canary_users = 0."),
    )
    for field, bad, problem, fix in refused:
        if bad:
            raise FedftError(field, f"{problem.rstrip('.')} (deploy.secure_aggregation = true).", fix)
