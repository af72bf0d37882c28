"""Privacy accounting: (ε, δ) of the subsampled Gaussian mechanism, as pure functions.

Every ε fedft reports comes from here, and every function delegates the analysis
to a published accountant: `pld`, privacy loss distributions (Koskela et al. 2020;
Doroshenko et al. 2022), Google's `dp-accounting` with its pessimistic (upper-bound)
discretisation; Opacus' `rdp` (Rényi DP, Mironov 2017 / Mironov et al. 2019), `prv`
(privacy random variables, Gopi et al. 2021) and `gdp` (Gaussian DP, Dong et al. 2019,
approximate and can underestimate). A mechanism's history is a list of
`(noise_multiplier, sample_rate, steps)` entries, exactly Opacus'
`IAccountant.history`, so a history saved after one round and restored into a
fresh accountant the next composes as if one accountant had run throughout.

Local DP (record level): one entry per DP-SGD configuration a client trained
with; k = int(1 / (1 / ceil(n / batch_size))) Poisson-sampled steps per local
epoch and sample_rate 1 / k, which is what Opacus' `make_private` runs and records.

Central DP (user level, DP-FedAvg, McMahan et al. 2018, see `fedft.privacy.central`):
each round is one Gaussian release of the clipped update sum over the fixed expected
cohort m with noise std noise_multiplier * clipping_norm / m, so after R released
rounds the history is [(noise_multiplier, q, R)], q = m / N under Poisson client
sampling and 1 (no amplification) under fixed-size sampling. Its RDP ε is taken over
the integer orders CENTRAL_RDP_ORDERS when q < 1, where Opacus' closed-form RDP of
the subsampled Gaussian agrees with Google's dp-accounting to ~1e-15 (at Opacus'
default fractional orders the two libraries use different bounds and differ by up to
~1% per order), so the value can be checked independently (tests/test_central_dp.py);
at q = 1 the RDP is closed form at every order and Opacus' fractional orders are added.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

History = list[tuple[float, float, int]]  # (noise_multiplier, sample_rate, steps)
ACCOUNTANTS = ("pld", "rdp", "prv", "gdp")
REPORTED_ACCOUNTANTS = ("pld", "rdp", "prv")  # the upper bounds summary.json reports side by side (epsilon_pld, epsilon_rdp, epsilon_prv)
PLD_DISCRETIZATION = 1e-3  # dp-accounting's value_discretization_interval; its pessimistic estimate stays an upper bound (1e-4 moves ε by ~1e-4 here, at 10x the time)
CENTRAL_RDP_ORDERS: tuple[float, ...] = tuple(float(a) for a in range(2, 257))  # central DP's RDP orders at q < 1
# At q = 1 the RDP is α·T/(2σ²) at every order, so fractional orders (Opacus' 1.1..10.9) are exact too.
GAUSSIAN_RDP_ORDERS: tuple[float, ...] = tuple(sorted({1 + x / 10.0 for x in range(1, 100)} | set(CENTRAL_RDP_ORDERS)))


def central_rdp_orders(sample_rate: float) -> tuple[float, ...]:
    """The RDP orders of central DP's ε: integers 2..256 when subsampled (where Opacus and
    dp-accounting agree), plus Opacus' fractional orders when q = 1 (closed form)."""
    return GAUSSIAN_RDP_ORDERS if sample_rate >= 1 else CENTRAL_RDP_ORDERS


class UnreachableBudget(ValueError):
    """No noise multiplier reaches the target ε for the planned number of steps."""


class AccountingError(ValueError):
    """The accountant cannot compute ε here (gdp's CLT analysis fails for few steps)."""


def compose(history: Iterable[tuple[float, float, int]], noise_multiplier: float, sample_rate: float, steps: int) -> History:
    """`history` followed by `steps` more steps at (noise_multiplier, sample_rate),
    merged into the last entry when the configuration is unchanged (as Opacus'
    `accountant.step` does, so the result equals stepping one accountant)."""
    out: History = [(float(s), float(q), int(n)) for s, q, n in history]
    if steps <= 0:
        return out
    if out and out[-1][0] == noise_multiplier and out[-1][1] == sample_rate:
        out[-1] = (out[-1][0], out[-1][1], out[-1][2] + int(steps))
    else:
        out.append((float(noise_multiplier), float(sample_rate), int(steps)))
    return out


def total_steps(history: Iterable[tuple[float, float, int]]) -> int:
    return int(sum(n for _, _, n in history))


def epsilon(history: Sequence[tuple[float, float, int]], delta: float, accountant: str = "rdp",
            rdp_orders: tuple[float, ...] | None = None) -> float:
    """ε spent by `history` at `delta`, from a fresh Opacus accountant holding it.

    pld: the privacy loss distribution of the composition (dp-accounting's PLDAccountant,
    pessimistic estimate), each entry a Poisson-subsampled Gaussian self-composed
    `steps` times (the plain Gaussian at q = 1); the rdp value above PRV_MAX_EPSILON.
    rdp: ε = min_α [Σ_i RDP_i(α) + log((α-1)/α) - (log δ + log α)/(α-1)]
    (Balle et al. 2020 conversion), with RDP_i(α) = steps_i · RDP of the
    Poisson-subsampled Gaussian (q_i, σ_i) at order α. prv: the upper bound of the
    numerically composed privacy loss distribution (eps_error 0.01), or the rdp value
    when that exceeds PRV_MAX_EPSILON. gdp: μ-GDP by the central limit theorem,
    needs one (σ, q) for the whole history. (Opacus' "optimal order is the
    largest/smallest alpha" warnings are silenced: they mean the bound could be
    tighter, never that it is too small.) `rdp_orders` replaces Opacus' default RDP
    orders (rdp, and prv's rdp fallback).
    0 for an empty history; ∞ when any step had no noise.
    """
    history = [h for h in history if h[2] > 0]
    if not history:
        return 0.0
    if any(s <= 0 for s, _, _ in history):
        return math.inf
    if accountant == "gdp":
        if len({(s, q) for s, q, _ in history}) > 1:
            raise ValueError("the gdp accountant needs one (noise_multiplier, sample_rate) for the whole history; use rdp or prv")
        history = [(history[0][0], history[0][1], total_steps(history))]
    return _epsilon(tuple(history), float(delta), accountant, rdp_orders)


# Above this ε Opacus' PRV discretisation needs gigabytes (its domain grows with the
# privacy loss) and then returns inf; the RDP bound, also a valid ε, is used instead.
PRV_MAX_EPSILON = 50.0


@lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str, rdp_orders: tuple[float, ...] | None = None) -> float:
    from opacus.accountants import create_accountant

    if accountant in ("prv", "pld"):
        rdp_bound = _epsilon(history, delta, "rdp", rdp_orders)
        if rdp_bound > PRV_MAX_EPSILON:
            return rdp_bound
        if accountant == "pld":
            return min(_pld_epsilon(history, delta), rdp_bound)

    # Entering catch_warnings resets Python's "print once per location" memory, so a warning
    # raised in here would print again on every call (every round): "once" keeps one per process.
    # At q = 1 Opacus' PRV takes log(1 - q) = log 0 on the branch its np.where discards: the
    # "divide by zero encountered in log" it prints says nothing about ε, so it is not raised.
    full_batch = any(q >= 1 for _, q, _ in history)
    with warnings.catch_warnings(), np.errstate(divide="ignore") if full_batch else contextlib.nullcontext():
        warnings.filterwarnings("once")
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        warnings.filterwarnings("ignore", message="GDP accounting is experimental")
        acc = create_accountant(mechanism=accountant)
        acc.history = list(history)
        try:
            if accountant == "rdp" and rdp_orders is not None:
                return float(acc.get_epsilon(delta=delta, alphas=list(rdp_orders)))
            return float(acc.get_epsilon(delta=delta))
        except ValueError as exc:
            if accountant == "gdp":  # the root of δ(ε) = delta lies outside [0, 500]
                return _gdp_outside_bracket(history[0], delta)
            raise AccountingError(f"the {accountant} accountant cannot compute ε for {list(history)}: {exc}") from None


def _pld_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    import dp_accounting as dpa
    from dp_accounting.pld import PLDAccountant

    events = []
    for sigma, q, steps in history:
        step: dpa.DpEvent = dpa.GaussianDpEvent(sigma) if q >= 1 else dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma))
        events.append(dpa.SelfComposedDpEvent(step, steps))
    acc = PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    acc.compose(dpa.ComposedDpEvent(events))
    return float(acc.get_epsilon(delta))


def _gdp_outside_bracket(entry: tuple[float, float, int], delta: float) -> float:
    """Opacus' gdp solves δ(ε; μ) = delta for ε in [0, 500]. If already δ(0; μ) ≤ delta
    the mechanism is (0, delta)-DP: ε = 0; otherwise ε > 500: reported as ∞."""
    from opacus.accountants.analysis.gdp import compute_mu_poisson, delta_eps_mu

    sigma, q, steps = entry
    mu = compute_mu_poisson(steps=steps, noise_multiplier=sigma, sample_rate=q)
    return 0.0 if delta_eps_mu(eps=0.0, mu=mu) <= delta else math.inf


def gaussian_epsilon(noise_multiplier: float, delta: float, accountant: str = "pld") -> float:
    """ε of ONE Gaussian mechanism whose noise std is `noise_multiplier` times its L2
    sensitivity (a matrix mechanism's whole run: σ / sens, fedft.privacy.matrix_mechanism)."""
    return epsilon([(noise_multiplier, 1.0, 1)], delta, accountant, GAUSSIAN_RDP_ORDERS)


def rdp(noise_multiplier: float, sample_rate: float, steps: int, orders: Sequence[float]) -> np.ndarray:
    """RDP of `steps` compositions of the Poisson-subsampled Gaussian at each order α.

    At sample_rate 1 this is the plain Gaussian mechanism: steps · α / (2σ²).
    """
    from opacus.accountants.analysis.rdp import compute_rdp

    return np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=list(orders)), dtype=float)


MAX_SIGMA = 1e6  # as Opacus' get_noise_multiplier


@lru_cache(maxsize=256)
def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp",
                    epsilon_tolerance: float = 0.01, rdp_orders: tuple[float, ...] | None = None) -> float:
    """The noise multiplier σ for which `steps` steps at `sample_rate` spend at most
    `target_epsilon`: Opacus' `get_noise_multiplier` search (double σ from 20 until
    ε(σ) ≤ target, then bisect until target - ε(σ) ≤ epsilon_tolerance, returning
    the side at or under the target), run on `epsilon` above so that gdp's ε = 0
    region does not break it. Raises UnreachableBudget past σ = 1e6. pld starts from rdp's
    σ (ε_pld ≤ ε_rdp, so that σ already meets the target) and bisects below it, which
    spares most of the PLD evaluations."""
    if steps <= 0:
        return 0.0

    def eps(sigma: float) -> float:
        return epsilon([(sigma, sample_rate, steps)], delta, accountant, rdp_orders)

    sigma_low, sigma_high, eps_high = 0.0, 10.0, math.inf
    if accountant == "pld":
        sigma_high = calibrate_noise(target_epsilon, delta, sample_rate, steps, "rdp", epsilon_tolerance, rdp_orders)
        eps_high, sigma_low = eps(sigma_high), sigma_high / 2
        while (eps_low := eps(sigma_low)) <= target_epsilon:  # rarely: PLD under half of RDP's σ
            sigma_high, eps_high, sigma_low = sigma_low, eps_low, sigma_low / 2
    while eps_high > target_epsilon:
        sigma_high *= 2
        eps_high = eps(sigma_high)
        if sigma_high > MAX_SIGMA:
            raise UnreachableBudget(f"no noise multiplier up to 1e6 reaches ε={target_epsilon} in {steps} steps at sample rate {sample_rate:.4g}")
    while target_epsilon - eps_high > epsilon_tolerance:
        sigma = (sigma_low + sigma_high) / 2
        e = eps(sigma)
        if e < target_epsilon:
            sigma_high, eps_high = sigma, e
        else:
            sigma_low = sigma
    return sigma_high


def dp_sgd_steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Poisson batches per epoch when Opacus' `make_private` wraps a loader of
    `batch_size`: its sampler draws with q = 1 / ceil(n / batch_size) and runs
    int(1 / q) steps, which floating point makes ceil(n / batch_size) - 1 for some
    sizes (93, 99, 105, ...)."""
    return int(1 / (1 / math.ceil(num_examples / batch_size)))


def dp_sgd_sample_rate(num_examples: int, batch_size: int) -> float:
    """The sampling rate Opacus' accountant records for that loader: 1 / steps per
    epoch (at or above the rate the sampler actually uses, so ε is never understated)."""
    return 1.0 / dp_sgd_steps_per_epoch(num_examples, batch_size)


def central_epsilon(noise_multiplier: float, sample_rate: float, rounds: int, delta: float, accountant: str = "rdp") -> float:
    """User-level ε of central DP after `rounds` released rounds: the Gaussian at
    `noise_multiplier`, subsampled at `sample_rate` (1: no amplification), composed
    `rounds` times; RDP over `central_rdp_orders(sample_rate)`."""
    return epsilon([(noise_multiplier, sample_rate, rounds)], delta, accountant, central_rdp_orders(sample_rate))


def expected_participations(rounds: int, clients_per_round: int, num_clients: int) -> int:
    """Rounds a client trains in, in expectation, rounded up: ceil(R · m / N)."""
    return math.ceil(rounds * clients_per_round / num_clients - 1e-9)
