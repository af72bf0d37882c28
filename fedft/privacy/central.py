"""Central (user-level) DP: DP-FedAvg with Flower's strategy wrappers.

The server wraps the configured strategy in one of Flower's
`DifferentialPrivacy{Server,Client}Side{Fixed,Adaptive}Clipping` wrappers: each
client's update is clipped to L2 norm `clipping_norm` (by the server, or by the
client through Flower's `fixedclipping_mod` / `adaptiveclipping_mod`, see
`fedft.fl.client.central_dp`), and the
mean gets Gaussian noise of std noise_multiplier * clipping_norm / clients_per_round.
Flower reports no ε; fedft accounts it (`fedft.privacy.accounting`) with
sampling rate clients_per_round / num_clients per released round.

The sensitivity argument needs the unweighted mean of the clipped updates (one
user can move it by at most clipping_norm / clients_per_round), so in central
mode the inner strategy averages by a constant weight every client reports
(`dp-uniform-weight` = 1) instead of by example counts, as Flower's own accounted
wrappers require.
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import Strategy

from fedft.config import FedftConfig
from fedft.privacy.accounting import calibrate_noise

UNIFORM_WEIGHT = "dp-uniform-weight"


def central_sample_rate(cfg: FedftConfig) -> float:
    """q = clients_per_round / num_clients: the chance a given user is in a round."""
    return cfg.simulation.clients_per_round / cfg.partition.num_clients


def central_noise_multiplier(cfg: FedftConfig) -> float:
    """The configured σ, or the σ for which all `rounds` rounds spend `target_epsilon`."""
    pc = cfg.privacy
    if pc.noise_multiplier is not None:
        return float(pc.noise_multiplier)
    assert pc.target_epsilon is not None
    return calibrate_noise(float(pc.target_epsilon), float(pc.target_delta), central_sample_rate(cfg), cfg.simulation.rounds, pc.accountant)


def wrap_strategy(strategy: Strategy, cfg: FedftConfig) -> Strategy:
    """`strategy` unchanged unless privacy.mode is "central"; then wrapped in the
    Flower DP wrapper that `privacy.clipping` names (ValueError if Flower rejects
    the parameters)."""
    from flwr.serverapp import strategy as fs

    pc = cfg.privacy
    if pc.mode != "central":
        return strategy
    if hasattr(strategy, "weighted_by_key"):
        strategy.weighted_by_key = UNIFORM_WEIGHT
    sigma = central_noise_multiplier(cfg)
    m = cfg.simulation.clients_per_round
    if pc.clipping == "server_fixed":
        return fs.DifferentialPrivacyServerSideFixedClipping(strategy, sigma, pc.clipping_norm, m)
    if pc.clipping == "client_fixed":
        return fs.DifferentialPrivacyClientSideFixedClipping(strategy, sigma, pc.clipping_norm, m)
    adaptive: dict[str, Any] = dict(initial_clipping_norm=pc.clipping_norm, target_clipped_quantile=pc.target_clipped_quantile,
                    clip_norm_lr=pc.clip_norm_lr, clipped_count_stddev=pc.clipped_count_stddev)
    if pc.clipping == "server_adaptive":
        return fs.DifferentialPrivacyServerSideAdaptiveClipping(strategy, sigma, m, **adaptive)
    return fs.DifferentialPrivacyClientSideAdaptiveClipping(strategy, sigma, m, **adaptive)


def current_clipping_norm(strategy: Strategy, configured: float) -> float:
    """The clipping norm in force (adaptive wrappers move it every round; `configured` otherwise)."""
    return float(getattr(strategy, "clipping_norm", configured))

