"""Central (user-level) DP: DP-FedAvg with a fixed denominator (McMahan et al. 2018).

Each round the server releases one noised mean of the clipped client updates

    u = (Σ_{i ∈ cohort, reply arrived} clip_C(Δ_i) + σ_Δ · C · ξ) / m,   ξ ~ N(0, I),

with clip_C(Δ) = Δ · min(1, C / ‖Δ‖₂) (one L2 norm over all arrays of the update)
and m = clients_per_round = q · N the EXPECTED cohort size, fixed for the run. A
sampled client whose reply is missing, failed or rejected contributes the zero
update, so one user moves the sum by at most C and the mean by at most C / m
whatever arrives: every round is one Gaussian release of sensitivity C / m and
noise σ_Δ · C / m. The configured strategy (one of CENTRAL_DP_STRATEGIES) then
only post-processes u: it aggregates a single synthetic reply current + u, so
FedAvg returns current + u and FedAdam/FedYogi/FedAdagrad/FedAvgM take u as their
pseudo-gradient.

Client sampling (`privacy.client_sampling`):
- "poisson": each client joins a round independently with probability
  q = clients_per_round / num_clients (cohorts vary in size, may be empty).
  Accounted as the Poisson-subsampled Gaussian at (σ, q), T rounds; neighbouring
  datasets differ by adding or removing one user.
- "fixed": exactly clients_per_round distinct clients. No amplification is
  claimed: each round is the plain Gaussian mechanism (q = 1 in the accountant).
  The neighbouring relation this covers is zero-out: one user's update replaced by
  the zero update in the fixed-denominator sum (sensitivity C), as Flower's
  no-amplification accountant assumes. It is not replace-one (one user's data
  swapped for another's moves the sum by up to 2C), nor add/remove of a user
  (that changes which fixed-size cohorts can be drawn).

Clipping (`privacy.clipping`): "server_*" clips at the server; "client_*" has the
client clip (Flower's fixedclipping_mod / adaptiveclipping_mod, see
`fedft.fl.client.central_dp`) and the server clips again, a no-op for an honest
client, so the bound holds for every reply. Adaptive clipping (Andrew et al. 2021)
also releases the noised fraction of clipped updates with the same fixed
denominator, b̃ = (Σ (b_i − ½) + σ_b · ξ') / m + ½ (sensitivity ½), and moves
C ← C · exp(−η (b̃ − γ)). The two releases together are one Gaussian of
multiplier σ when σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2), so the accounting is the same.

Correlated noise (`privacy.noise_mechanism`, fedft.privacy.matrix_mechanism): "tree"
(DP-FTRL) and "banded" (banded matrix factorization) replace the round's fresh ξ_t by
(D z)_t, z_j ~ N(0, I) drawn from (noise key, j), so that the prefix sums of the
released updates carry B z instead of independent noise; the whole run is then one
Gaussian mechanism of multiplier σ / sens with sens the largest ‖C π_u‖ over the users'
participations (`privacy.client_sampling` "fixed" or "cyclic": no amplification).

Noise cohort (`privacy.noise_cohort_size` = M, pfl-research's noise-cohort simulation):
the noise std of u becomes σC/M while m clients train, i.e. the noise a cohort of M would
see in a population M/m times larger at the same sampling rate; ε then describes that
planned deployment, not the simulated run (summary.json: noise_cohort_size).

Noise (`privacy.noise_source`): "os", the default, draws it and the Poisson cohorts
from OS entropy (numpy's `default_rng()`), so no published file can reproduce it; the
server operator still sees the sum before noise, as with any central DP. "seeded"
draws it from (seed, round): runs and resumed runs repeat bit for bit, but anyone
with config.toml or model.pt can regenerate and subtract it (summary.json: private =
false).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT  # what Flower's client mods read and write

from fedft.config import FedftConfig
from fedft.privacy import matrix_mechanism as mm
from fedft.privacy.accounting import GAUSSIAN_RDP_ORDERS, calibrate_noise, central_epsilon, central_rdp_orders, gaussian_epsilon
from fedft.privacy.canary_users import canaries_in_round, canary_direction, cyclic_canaries_in_round, included_canaries

# Strategies whose update is a post-processing of the mean of the (clipped) updates.
CENTRAL_DP_STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
_NOISE_STREAM = 0xCD9  # keeps the central noise stream apart from sampling and training streams


# ------------------------------------------------------------------ pure functions


def update_norm(update: Sequence[np.ndarray]) -> float:
    """‖Δ‖₂ over all arrays of the update taken as one vector."""
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in update))


def clip_update(update: Sequence[np.ndarray], clipping_norm: float) -> tuple[list[np.ndarray], bool]:
    """(Δ · min(1, C / ‖Δ‖₂) in float64, whether Δ was scaled down)."""
    norm = update_norm(update)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    return [np.asarray(a, dtype=np.float64) * scale for a in update], scale < 1.0


def noised_mean_update(clipped: Sequence[Sequence[np.ndarray]], standard_noise: Sequence[np.ndarray], noise_multiplier: float,
                       clipping_norm: float, expected_cohort: float) -> list[np.ndarray]:
    """u = (Σ_i clipped_i + σ · C · ξ) / m for the updates that arrived (already clipped to C),
    ξ = `standard_noise` (N(0, 1) draws shaped like the update) and m the fixed expected
    cohort size. The noise std of u is σC/m and its sensitivity C/m, however many arrived
    (none: u = σCξ/m)."""
    if expected_cohort <= 0:
        raise ValueError("the expected cohort size must be positive")
    total = [np.asarray(x, dtype=np.float64) * (noise_multiplier * clipping_norm) for x in standard_noise]
    for update in clipped:
        for k, a in enumerate(update):
            total[k] = total[k] + np.asarray(a, dtype=np.float64)
    return [t / expected_cohort for t in total]


def update_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
    """σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2): the update's noise multiplier that, with the clipped
    count released at std σ_b (sensitivity ½), makes the pair one Gaussian of multiplier σ
    (Andrew et al. 2021, Thm. 1). Raises ValueError unless σ < 2σ_b."""
    if noise_multiplier == 0:
        return 0.0
    if noise_multiplier >= 2 * clipped_count_stddev:
        raise ValueError(f"clipped_count_stddev={clipped_count_stddev:g} is too small for noise_multiplier={noise_multiplier:g}: "
                         f"adaptive clipping needs noise_multiplier < 2 * clipped_count_stddev")
    return float((noise_multiplier ** -2 - (2 * clipped_count_stddev) ** -2) ** -0.5)


def noised_clipped_fraction(norm_bits: Sequence[bool], standard_noise: float, clipped_count_stddev: float, expected_cohort: float) -> float:
    """b̃ = (Σ_i (b_i − ½) + σ_b · ξ) / m + ½: the noised fraction of clipped updates with the
    fixed denominator m (a missing reply counts as b = ½, sensitivity of the sum ½)."""
    return (sum(float(b) - 0.5 for b in norm_bits) + clipped_count_stddev * standard_noise) / expected_cohort + 0.5


def next_clipping_norm(clipping_norm: float, clipped_fraction: float, target_quantile: float, lr: float) -> float:
    """C · exp(−η (b̃ − γ)): geometric update towards clipping the γ quantile."""
    return float(clipping_norm * math.exp(-lr * (clipped_fraction - target_quantile)))


def noise_generator(noise_seed: int | None, server_round: int) -> np.random.Generator:
    """The round's noise generator: from (seed, round) when `noise_seed` is given, else OS entropy."""
    return np.random.default_rng([noise_seed, server_round, _NOISE_STREAM] if noise_seed is not None else None)


# ------------------------------------------------------------------ the config's view


def central_sampling_rate(cfg: FedftConfig) -> float:
    """q = clients_per_round / num_clients: the chance a given user is in a round."""
    return cfg.simulation.clients_per_round / cfg.partition.num_clients


def central_accounting_rate(cfg: FedftConfig) -> float:
    """The sampling rate the accountant uses: q under Poisson sampling, 1 (no amplification) under fixed-size."""
    return central_sampling_rate(cfg) if cfg.privacy.client_sampling == "poisson" else 1.0


def central_noise_seed(cfg: FedftConfig) -> int | None:
    """The seed of the server's noise: the run's seed under noise_source = "seeded" (not
    private: the seed is in config.toml and model.pt), else None (OS entropy)."""
    return cfg.seed if cfg.privacy.noise_source == "seeded" else None


def cyclic_period(cfg: FedftConfig) -> int:
    """Rounds between a user's turns under cyclic sampling: num_clients // clients_per_round."""
    return max(1, cfg.partition.num_clients // cfg.simulation.clients_per_round)


def central_accounted_rounds(cfg: FedftConfig) -> int:
    """The most rounds one user's update can be in: every round, or ceil(R / period) under cyclic sampling."""
    if cfg.privacy.client_sampling == "cyclic":
        return math.ceil(cfg.simulation.rounds / cyclic_period(cfg))
    return cfg.simulation.rounds


def central_factorization(cfg: FedftConfig) -> mm.Factorization | None:
    """The correlated-noise factorization of `privacy.noise_mechanism` (None: independent noise)."""
    pc = cfg.privacy
    if pc.noise_mechanism == "independent":
        return None
    bands = pc.bands or (cyclic_period(cfg) if pc.client_sampling == "cyclic" else cfg.simulation.rounds)
    return mm.factorization(pc.noise_mechanism, cfg.simulation.rounds, bands)


def planned_sensitivity(cfg: FedftConfig, fact: mm.Factorization) -> float:
    """The sensitivity the correlated noise is calibrated for (in units of the clipping norm)."""
    return mm.planned_sensitivity(fact.encoder, cfg.privacy.client_sampling, cyclic_period(cfg))


def central_planned_epsilon(cfg: FedftConfig, noise_multiplier: float) -> float:
    """The ε a whole run at `noise_multiplier` spends, under the configured accountant."""
    pc = cfg.privacy
    fact = central_factorization(cfg)
    if fact is not None:
        return gaussian_epsilon(noise_multiplier / planned_sensitivity(cfg, fact), pc.target_delta, pc.accountant) if noise_multiplier > 0 else math.inf
    return central_epsilon(noise_multiplier, central_accounting_rate(cfg), central_accounted_rounds(cfg), pc.target_delta, pc.accountant)


def central_noise_multiplier(cfg: FedftConfig) -> float:
    """The configured σ, or the σ for which the whole run spends `target_epsilon`: the
    accounted rounds' composition, or (correlated noise) one Gaussian of multiplier σ / sens."""
    pc = cfg.privacy
    if pc.noise_multiplier is not None:
        return float(pc.noise_multiplier)
    assert pc.target_epsilon is not None
    fact = central_factorization(cfg)
    if fact is not None:
        effective = calibrate_noise(float(pc.target_epsilon), float(pc.target_delta), 1.0, 1, pc.accountant, rdp_orders=GAUSSIAN_RDP_ORDERS)
        return effective * planned_sensitivity(cfg, fact)
    q = central_accounting_rate(cfg)
    return calibrate_noise(float(pc.target_epsilon), float(pc.target_delta), q, central_accounted_rounds(cfg), pc.accountant, rdp_orders=central_rdp_orders(q))


def clipped_count_stddev(cfg: FedftConfig) -> float:
    """σ_b of adaptive clipping: the configured value, or the reports per round / 20 (Andrew et al.)."""
    pc = cfg.privacy
    return float(pc.clipped_count_stddev) if pc.clipped_count_stddev is not None else cfg.reports_per_round() / 20


def wrap_strategy(strategy: Strategy, cfg: FedftConfig, noise_seed: int | None) -> Strategy:
    """`strategy` unchanged unless privacy.mode is "central"; then wrapped in CentralDP
    (ValueError for impossible adaptive settings). `noise_seed` None draws the noise from OS entropy."""
    pc = cfg.privacy
    if pc.mode != "central":
        return strategy
    period = cyclic_period(cfg) if pc.client_sampling == "cyclic" else None
    canaries = CanaryUsers(cfg.seed, cfg.audit.canary_users, central_sampling_rate(cfg), period) if cfg.audit.canary_users else None
    fact = central_factorization(cfg)
    expected_cohort = float(cfg.reports_per_round())
    return CentralDP(strategy, noise_multiplier=central_noise_multiplier(cfg), clipping_norm=pc.clipping_norm,
                     expected_cohort=expected_cohort, clipping=pc.clipping, noise_seed=noise_seed,
                     target_clipped_quantile=pc.target_clipped_quantile, clip_norm_lr=pc.clip_norm_lr,
                     clipped_count_stddev=clipped_count_stddev(cfg), canaries=canaries,
                     round_noise=fact.round_noise() if fact is not None else None,
                     noise_scale=expected_cohort / pc.noise_cohort_size if pc.noise_cohort_size else 1.0)


@dataclass(frozen=True)
class CanaryUsers:
    """`audit.canary_users` canary users (fedft.privacy.canary_users) joining at the users' rate,
    or (cyclic sampling) in the turns of a random group, as the users do."""

    seed: int
    count: int
    rate: float
    period: int | None = None  # cyclic sampling: the number of groups

    def updates(self, server_round: int, shapes: list[tuple[int, ...]], clipping_norm: float) -> list[list[np.ndarray]]:
        """The updates C·uᵢ of the included canaries that join `server_round`."""
        included = included_canaries(self.seed, self.count)
        joining = (cyclic_canaries_in_round(self.seed, server_round, included, self.period) if self.period
                   else canaries_in_round(self.seed, server_round, included, self.rate))
        return [[clipping_norm * u for u in canary_direction(self.seed, i, shapes)] for i in joining]


def current_clipping_norm(strategy: Strategy, configured: float) -> float:
    """The clipping norm in force (adaptive clipping moves it every round; `configured` otherwise)."""
    return float(getattr(strategy, "clipping_norm", configured))


# ------------------------------------------------------------------ Flower glue


class ReleaseWrapper(Strategy):
    """A user-level DP release around a FedAvg-family `strategy`: the subclass turns the replies
    into one released mean; evaluation and the summary are the inner strategy's."""

    strategy: Strategy

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()


class CentralDP(ReleaseWrapper):
    """Wraps a FedAvg-family strategy: clip, sum, noise, divide by the fixed m, then let the
    inner strategy post-process the noised mean (see the module docstring)."""

    def __init__(self, strategy: Strategy, *, noise_multiplier: float, clipping_norm: float, expected_cohort: float, clipping: str,
                 noise_seed: int | None, target_clipped_quantile: float = 0.5, clip_norm_lr: float = 0.2, clipped_count_stddev: float = 1.0,
                 canaries: CanaryUsers | None = None, round_noise: np.ndarray | None = None, noise_scale: float = 1.0) -> None:
        self.strategy = strategy
        self.round_noise = round_noise  # correlated noise: D (rounds × noise draws), round t adds Σ_j D[t, j] z_j; None = fresh ξ every round
        # z_j's key: from the seed when seeded, else secret (OS entropy); a run checkpoint keeps it, so a resumed run adds the same noise
        self.noise_key = f"{noise_seed:x}" if noise_seed is not None else f"{secrets.randbits(128):x}"
        self.noise_scale = float(noise_scale)  # m / noise_cohort_size (1: the noise of this cohort)
        self.canaries = canaries  # audit.canary_users: extra users whose updates join the same release
        self.noise_multiplier = float(noise_multiplier)  # σ, what the accountant sees
        self.adaptive = clipping.endswith("adaptive")
        self.client_side = clipping.startswith("client")
        self.clipped_count_stddev = float(clipped_count_stddev)
        self.update_noise_multiplier = update_noise_multiplier(self.noise_multiplier, self.clipped_count_stddev) if self.adaptive else self.noise_multiplier
        self.clipping_norm = float(clipping_norm)
        self.expected_cohort = float(expected_cohort)
        self.noise_seed = noise_seed
        self.target_clipped_quantile = float(target_clipped_quantile)
        self.clip_norm_lr = float(clip_norm_lr)
        self.current_arrays = ArrayRecord()
        self.weight_key = str(getattr(strategy, "weighted_by_key", "num-examples"))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self.current_arrays = arrays
        if self.client_side:
            config[KEY_CLIPPING_NORM] = self.clipping_norm
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """One release: the noised mean update over whatever arrived, post-processed by the inner strategy."""
        keys = list(self.current_arrays.keys())
        current = self.current_arrays.to_numpy_ndarrays()
        clipped, bits = [], []
        for reply in replies:
            if reply.has_error() or not reply.content.array_records:
                continue  # counts as the zero update
            record = next(iter(reply.content.array_records.values()))
            update = [np.asarray(record[k].numpy(), dtype=np.float64) - np.asarray(c, dtype=np.float64) for k, c in zip(keys, current)]
            clipped_update, was_clipped = clip_update(update, self.clipping_norm)
            clipped.append(clipped_update)
            if self.client_side:
                metrics = next(iter(reply.content.metric_records.values()), None)
                was_clipped = bool(metrics.get(KEY_NORM_BIT, was_clipped)) if metrics is not None else was_clipped
            bits.append(was_clipped)
        if self.canaries is not None:  # norm C exactly: clipping would leave them unchanged
            canary_updates = self.canaries.updates(server_round, [np.shape(c) for c in current], self.clipping_norm)
            clipped.extend(canary_updates)
            bits.extend(False for _ in canary_updates)
        rng = noise_generator(self.noise_seed, server_round)
        if self.round_noise is not None:
            standard = mm.round_noise(self.round_noise[server_round - 1], int(self.noise_key, 16), [np.shape(c) for c in current])
        else:
            standard = [rng.standard_normal(np.shape(c)) for c in current]
        mean = noised_mean_update(clipped, standard, self.update_noise_multiplier * self.noise_scale, self.clipping_norm, self.expected_cohort)
        if self.adaptive:
            fraction = noised_clipped_fraction(bits, float(rng.standard_normal()), self.clipped_count_stddev, self.expected_cohort)
            self.clipping_norm = next_clipping_norm(self.clipping_norm, fraction, self.target_clipped_quantile, self.clip_norm_lr)
        released = ArrayRecord({k: Array(np.asarray(np.asarray(c, dtype=np.float64) + u).astype(np.asarray(c).dtype))
                                for k, c, u in zip(keys, current, mean)})
        return self.strategy.aggregate_train(server_round, [synthetic_reply(released, self.weight_key)])


def synthetic_reply(arrays: ArrayRecord, weight_key: str) -> Message:
    """The noised model as the one reply the inner strategy aggregates (weight 1)."""
    metadata = Metadata(run_id=0, message_id="central-dp", src_node_id=0, dst_node_id=0, reply_to_message_id="", group_id="",
                        created_at=0.0, ttl=1e9, message_type="train")
    content: dict[str, Any] = {"arrays": arrays, "metrics": MetricRecord({weight_key: 1.0})}
    # Flower's typed overloads omit the (content, metadata) form its own deserialisation uses
    return Message(RecordDict(content), metadata=metadata)  # type: ignore[call-overload]
