"""Distributed DP under simulated secure aggregation: the encoding by hand, the modular sum and
its wrap-around, the Skellam accounting against independent references (the exact Rényi
divergence from scipy's Skellam pmf; dp-accounting's Gaussian mechanism), the server wrapper,
the tracker's dropouts, the config's refusals and one real run."""

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from scipy.special import logsumexp
from scipy.stats import skellam

from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.privacy.distributed import DistributedDP, SecAggRound, flatten_update
from fedft.privacy.distributed_dp import (
    DistributedPlan,
    bits_for_wrap,
    calibrate_variance,
    make_plan,
    skellam_epsilon,
    skellam_noise,
    skellam_rdp,
    wrap_probability_bound,
)
from fedft.privacy.distributed_tracker import DistributedDPTracker
from fedft.privacy.secagg import (
    SECAGG,
    SHARE,
    centered,
    conditional_round,
    decode_sum,
    encode_share,
    hadamard,
    modular_sum,
    rotate,
    rotation_signs,
    rounded_l2_bound,
    stochastic_round,
    to_modular,
    unrotate,
    wrapped_coordinates,
)
from fedft.privacy.tracker_plain import checkpoint_section
from flower_messages import FakeGrid, _metadata, array_record, server_identity

DELTA = 1e-5


# ------------------------------------------------------------------ the encoding by hand


def test_hadamard_by_hand_is_orthogonal_and_its_own_inverse():
    # H₂ = [[1, 1], [1, -1]] / √2; H₄ = H₂ ⊗ H₂: H₄ [1, 0, 0, 0] = [1, 1, 1, 1] / 2, H₄ [0, 1, 0, 0] = [1, -1, 1, -1] / 2
    assert np.allclose(hadamard(np.array([3.0, 1.0])), np.array([4.0, 2.0]) / math.sqrt(2), rtol=0, atol=1e-15)
    assert np.allclose(hadamard(np.array([1.0, 0, 0, 0])), [0.5, 0.5, 0.5, 0.5], rtol=0, atol=1e-15)
    assert np.allclose(hadamard(np.array([0, 1.0, 0, 0])), [0.5, -0.5, 0.5, -0.5], rtol=0, atol=1e-15)
    x = np.random.default_rng(0).standard_normal(1000)
    signs = rotation_signs(3, 2, 1024)
    y = rotate(x, signs)
    assert y.shape == (1024,) and np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    assert np.allclose(unrotate(y, signs, 1000), x, rtol=0, atol=1e-12)
    assert np.array_equal(signs, rotation_signs(3, 2, 1024)) and not np.array_equal(signs, rotation_signs(3, 3, 1024))  # public, per round


def test_rotation_flattens_a_spike():
    """All of ‖x‖ = 1 in one coordinate: after HD every coordinate is ±1/√d' (the L∞ norm drops √d')."""
    x = np.zeros(1000)
    x[17] = 1.0
    y = rotate(x, rotation_signs(0, 1, 1024))
    assert np.allclose(np.abs(y), 1 / 32, rtol=0, atol=1e-15)


def test_integers_survive_mod_and_centring_exactly():
    v = np.array([-8, -1, 0, 7, 3], dtype=np.int64)  # bits = 4: the centred range is [-8, 8)
    assert np.array_equal(to_modular(v, 4), [8, 15, 0, 7, 3])
    assert np.array_equal(centered(to_modular(v, 4), 4), v)
    big = np.array([-(2**61), 2**61 - 1], dtype=np.int64)
    assert np.array_equal(centered(to_modular(big, 62), 62), big)


def test_an_update_on_the_grid_round_trips_exactly_without_rotation():
    """Δ = γ·[3, −2, 0, 5] with γ = 0.25 is on the grid and inside the clip: rounding keeps it,
    and the decoded sum of one share is Δ exactly."""
    update = 0.25 * np.array([3.0, -2.0, 0.0, 5.0])
    share = encode_share(update, clipping_norm=10.0, granularity=0.25, bits=8, l2_bound=rounded_l2_bound(40.0, 4), signs=None,
                         rng=np.random.default_rng(0))
    assert np.array_equal(share, [3, 254, 0, 5])
    assert np.array_equal(decode_sum(share, bits=8, granularity=0.25, signs=None, dim=4), update)


def test_modular_sum_is_the_true_sum_until_it_wraps_and_the_wraps_are_counted():
    # bits = 4 (range [-8, 8)): true sums [7, -7, 2] fit; [12, -6, 2] has one coordinate out of range
    fit = [np.array([3, -2, 1]), np.array([4, -5, 1])]
    total = modular_sum([to_modular(s, 4) for s in fit], 4)
    assert np.array_equal(centered(total, 4), [7, -7, 2]) and wrapped_coordinates(total, sum(fit), 4) == 0
    over = [np.array([7, -8, 3]), np.array([5, 2, -1])]
    total = modular_sum([to_modular(s, 4) for s in over], 4)
    assert np.array_equal(centered(total, 4), [-4, -6, 2])  # 12 decodes as 12 - 16
    assert wrapped_coordinates(total, sum(over), 4) == 1


def test_stochastic_rounding_is_unbiased_and_within_one():
    x = np.tile([0.25, -1.75, 2.5, 3.0], 40000).reshape(40000, 4)
    rounded = stochastic_round(x, np.random.default_rng(1))
    assert np.all(np.abs(rounded - x) < 1)
    assert set(np.unique(rounded[:, 3])) == {3}  # an integer is never moved
    p = np.array([0.25, 0.25, 0.5, 0.0])  # the fractional parts: Bernoulli(p) per coordinate
    stderr = np.sqrt(p * (1 - p) / len(x))
    assert np.all(np.abs(rounded.mean(axis=0) - x[0]) <= 4 * stderr + 1e-12)


def test_conditional_rounding_never_exceeds_the_bound():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 4096) * 3
    bound = rounded_l2_bound(float(np.linalg.norm(x)), 4096)
    for _ in range(20):
        assert np.linalg.norm(conditional_round(x, bound, rng)) <= bound
    tight = float(np.linalg.norm(x))  # no draw can meet it: rounding toward zero, ‖trunc(x)‖ ≤ ‖x‖
    assert np.array_equal(conditional_round(x, tight, rng, tries=3), np.trunc(x).astype(np.int64))


def test_rounded_l2_bound_by_hand():
    # c = 10, d = 16, β = e^{-1/2}: min(10 + 4, √(100 + 4 + 1 · (10 + 2))) = √116
    assert rounded_l2_bound(10.0, 16) == pytest.approx(math.sqrt(116), rel=1e-12)
    # β = e^{-8} (√(2 ln 1/β) = 4), c = 0.5, d = 1: min(1.5, √(0.25 + 0.25 + 4 · 1)) = 1.5, the always-true bound
    assert rounded_l2_bound(0.5, 1, beta=math.exp(-8)) == pytest.approx(1.5, rel=1e-12)


def test_skellam_shares_sum_to_the_planned_variance():
    """n = 4 shares Sk(μ/4) sum to Sk(μ): mean 0, variance μ = 40 (and each share has variance 10)."""
    rng = np.random.default_rng(3)
    shares = [skellam_noise(rng, 10.0, 200_000) for _ in range(4)]
    total = np.sum(shares, axis=0)
    assert shares[0].dtype == np.int64 and abs(np.var(shares[0]) - 10) < 0.2
    assert abs(total.mean()) < 0.05 and abs(np.var(total) - 40) < 0.8
    assert np.array_equal(skellam_noise(rng, 0.0, 5), np.zeros(5, dtype=np.int64))


# ------------------------------------------------------------------ accounting against references


def _exact_renyi(alpha, variance, shift):
    """D_α(Sk(μ) + Δ ‖ Sk(μ)) = log Σ_k P(k−Δ)^α P(k)^{1−α} / (α − 1) from scipy.stats.skellam's pmf
    (each Poisson of mean μ/2) over the integers where it is representable."""
    half = int(shift + 60 * math.sqrt(variance) + 200)
    k = np.arange(-half, half + 1)
    lp, lq = skellam.logpmf(k, variance / 2, variance / 2), skellam.logpmf(k - shift, variance / 2, variance / 2)
    ok = np.isfinite(lp) & np.isfinite(lq)
    assert math.exp(logsumexp(lp[ok])) == pytest.approx(1.0, abs=1e-12)
    return float(logsumexp(alpha * lq[ok] + (1 - alpha) * lp[ok]) / (alpha - 1))


# (μ, the factor the closed form may exceed the exact divergence by): loose for little noise, tight for much
RENYI_CASES = [(4.0, 6.0), (25.0, 2.0), (100.0, 1.2), (1000.0, 1.01)]


@pytest.mark.parametrize("variance,factor", RENYI_CASES)
def test_skellam_rdp_bounds_the_exact_renyi_divergence_in_one_dimension(variance, factor):
    """One coordinate, Δ₁ = Δ₂ = Δ: the closed form is ≥ the numerical divergence and within
    `factor` of it. E.g. μ = 4, Δ = 3, α = 32: 37.1 vs 6.53; μ = 100, Δ = 3, α = 32: 1.455 vs 1.249;
    μ = 1000, Δ = 1, α = 8: 0.0040053 vs 0.0039999."""
    for shift in (1, 3):
        for alpha in (2, 8, 32):
            exact = _exact_renyi(alpha, variance, shift)
            bound = float(skellam_rdp([alpha], shift, shift, variance)[0])
            assert exact <= bound <= factor * exact, (shift, alpha, exact, bound)


def _gaussian_epsilon(sigma, rounds):
    acc = rdp_privacy_accountant.RdpAccountant(orders=list(range(2, 257)))
    acc.compose(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(sigma), rounds))
    return acc.get_epsilon(DELTA)


@pytest.mark.parametrize("sigma,rounds", [(1.0, 10), (0.8, 3), (2.0, 50)])
def test_skellam_epsilon_tends_to_the_gaussian_mechanisms_from_above(sigma, rounds):
    """Same variance μ = (σΔ₂)², Δ₁ = Δ₂ min(√d, Δ₂), d = 1000: as Δ₂ (the grid's fineness) grows the
    Skellam ε falls to dp-accounting's Gaussian ε at noise multiplier σ, never below it. At σ = 1,
    10 rounds: 22.63 (Δ₂ = 3), 20.08 (10), 19.8034 (100), 19.80170 (1000); Gaussian 19.80169."""
    reference = _gaussian_epsilon(sigma, rounds)
    gaps = []
    for l2 in (3, 10, 100, 1000):
        eps = skellam_epsilon([(sigma * l2) ** 2] * rounds, l2, l2 * min(math.sqrt(1000), l2), DELTA)
        gaps.append(eps - reference)
    assert all(g >= -1e-9 for g in gaps) and gaps == sorted(gaps, reverse=True)
    assert gaps[-1] <= 1e-5 * reference


def test_calibrated_variance_meets_the_target_and_no_less_does():
    l2 = 50.0
    mu = calibrate_variance(2.0, DELTA, 5, l2, l2 * l2)
    assert skellam_epsilon([mu] * 5, l2, l2 * l2, DELTA) <= 2.0 < skellam_epsilon([mu * 0.999] * 5, l2, l2 * l2, DELTA)


def test_wrap_around_is_post_processing_epsilon_does_not_depend_on_the_bits():
    """The same γ and noise at 8 or 30 bits: the same ε; only the wrap bound changes."""
    common = dict(dim=1000, clipping_norm=1.0, noise_multiplier=1.0, target_epsilon=None, delta=DELTA, rounds=3, cohort=5, min_reports=3,
                  rotation=True, granularity=1 / 64)
    few, many = make_plan(bits=8, **common), make_plan(bits=30, **common)
    assert few.variance == many.variance and few.l2_bound == many.l2_bound
    assert few.epsilon([few.variance] * 3, DELTA) == many.epsilon([many.variance] * 3, DELTA)
    assert few.wrap_bound() == 1.0 and many.wrap_bound() < 1e-9


def test_bits_for_wrap_keeps_simulated_sums_from_wrapping():
    """n = 4 aligned updates of norm c = 100 (integer units), d' = 1024, Sk(400) noise: at the bits the
    tail bound asks for (β = 1e-3) 200 simulated sums never wrap; three bits fewer, they do."""
    n, dim, c, mu = 4, 1024, 100.0, 400.0
    bits = bits_for_wrap(1e-3, c, n, dim, mu, rotation=True)
    assert bits is not None and wrap_probability_bound(bits, c, n, dim, mu, True) <= 1e-3 < wrap_probability_bound(bits - 1, c, n, dim, mu, True)
    rng = np.random.default_rng(4)
    direction = rng.standard_normal(1000)
    direction *= c / np.linalg.norm(direction)
    wrapped = {b: 0 for b in (bits, bits - 3)}
    for r in range(200):
        signs = rotation_signs(0, r, dim)
        shares = [conditional_round(rotate(direction, signs), rounded_l2_bound(c, dim), rng) + skellam_noise(rng, mu / n, dim) for _ in range(n)]
        for b in wrapped:
            wrapped[b] += wrapped_coordinates(modular_sum([to_modular(s, b) for s in shares], b), np.sum(shares, axis=0), b)
    assert wrapped[bits] == 0 and wrapped[bits - 3] > 0


def test_the_plan_calibrates_to_the_target_and_keeps_the_central_meaning_of_sigma():
    cfg = dict(dim=93322, clipping_norm=1.0, delta=DELTA, rounds=2, cohort=3, bits=20, min_reports=2, rotation=True, granularity=None)
    plan = make_plan(noise_multiplier=None, target_epsilon=3.0, **cfg)
    assert plan.padded_dim == 2**17 and plan.epsilon([plan.variance] * 2, DELTA) <= 3.0
    assert plan.l2_bound < 1.001 * plan.clipping_norm / plan.granularity  # 20 bits: the rounding hardly inflates the norm
    assert plan.noise_multiplier == pytest.approx(_gaussian_sigma(3.0, 2), rel=0.01)  # near the Gaussian's σ for the same ε
    fixed = make_plan(noise_multiplier=1.5, target_epsilon=None, **cfg)
    assert fixed.noise_multiplier == pytest.approx(1.5, rel=1e-12) and fixed.share_variance == fixed.variance / 3


def _gaussian_sigma(eps, rounds):
    low, high = 0.1, 50.0
    while high - low > 1e-6:
        mid = (low + high) / 2
        low, high = (low, mid) if _gaussian_epsilon(mid, rounds) <= eps else (mid, high)
    return high


# ------------------------------------------------------------------ the server never sees an update


def _plan(**kw):
    args = dict(dim=3, padded_dim=3, rotation=False, bits=8, cohort=2, min_reports=2, clipping_norm=10.0, granularity=0.5,
                l2_bound=30.0, l1_bound=90.0, variance=0.0)
    args.update(kw)
    return DistributedPlan(**args)


def _share_reply(share, node_id):
    content = RecordDict({SECAGG: ArrayRecord({SHARE: Array(np.asarray(share, dtype=np.int64))}), "metrics": MetricRecord({"num-examples": 5.0})})
    return Message(content, metadata=_metadata(node_id, 0))


def _wrapped_strategy(plan, current):
    strategy = DistributedDP(FedAvg(fraction_train=1.0, min_available_nodes=0, min_train_nodes=0), plan, seed=0)
    with server_identity():
        list(strategy.configure_train(1, array_record(current), ConfigRecord({}), FakeGrid([1])))
    return strategy


def test_the_server_decodes_only_the_modular_sum_over_the_planned_cohort():
    """Keys in sorted order (b, w). Shares [2, 4, 250] and [1, 255, 3] mod 256 sum to [3, 3, 253],
    centred [3, 3, −3], × γ = 0.5 → [1.5, 1.5, −1.5], over n = 2 → b = 0.5 + 0.75, w = [1 + 0.75, 2 − 0.75]."""
    current = {"w": np.array([1.0, 2.0]), "b": np.array([0.5])}
    strategy = _wrapped_strategy(_plan(), current)
    arrays, _ = strategy.aggregate_train(1, [_share_reply([2, 4, 250], 1), _share_reply([1, 255, 3], 2)])
    assert np.allclose(arrays["b"].numpy(), [1.25], rtol=0, atol=1e-15) and np.allclose(arrays["w"].numpy(), [1.75, 1.25], rtol=0, atol=1e-15)
    assert strategy.last_round == SecAggRound(survivors=2, wrapped=0, released=True)
    assert strategy.reply_array_records == (SECAGG,) and strategy.reply_arrays == {SHARE: ((3,), "int64")}


def test_fewer_shares_than_min_reports_abort_the_round():
    strategy = _wrapped_strategy(_plan(cohort=3, min_reports=2), {"w": np.array([1.0, 2.0]), "b": np.array([0.5])})
    assert strategy.aggregate_train(1, [_share_reply([2, 4, 250], 1)]) == (None, None)
    assert strategy.last_round == SecAggRound(survivors=1, wrapped=0, released=False)


def test_a_wrapped_coordinate_is_counted():
    strategy = _wrapped_strategy(_plan(bits=4), {"w": np.array([0.0, 0.0]), "b": np.array([0.0])})
    strategy.aggregate_train(1, [_share_reply(to_modular(np.array([7, 1, 0]), 4), 1), _share_reply(to_modular(np.array([3, 1, 0]), 4), 2)])
    assert strategy.last_round == SecAggRound(survivors=2, wrapped=1, released=True)  # 7 + 3 = 10 ≥ 8


def test_clients_shares_decode_to_the_mean_of_the_clipped_updates_within_the_grid():
    """Two clients, rotation on, no noise: the decoded mean is the mean of the clipped updates up to
    the rounding (each coordinate of each share within one step: ‖error‖₂ < √d' γ / n · n)."""
    plan = make_plan(dim=300, clipping_norm=1.0, noise_multiplier=0.0, target_epsilon=None, delta=DELTA, rounds=1, cohort=2, bits=16,
                     min_reports=2, rotation=True, granularity=None)
    rng = np.random.default_rng(5)
    updates = [rng.standard_normal(300) * 0.01, rng.standard_normal(300)]  # the second is clipped to norm 1
    signs = rotation_signs(9, 4, plan.padded_dim)
    shares = [encode_share(u, clipping_norm=1.0, granularity=plan.granularity, bits=16, l2_bound=plan.l2_bound, signs=signs, rng=rng) for u in updates]
    mean = decode_sum(modular_sum(shares, 16), bits=16, granularity=plan.granularity, signs=signs, dim=300) / 2
    clipped = (updates[0] + updates[1] / np.linalg.norm(updates[1])) / 2
    assert np.linalg.norm(mean - clipped) < math.sqrt(plan.padded_dim) * plan.granularity


def test_flatten_update_takes_keys_in_sorted_order():
    trained = {"w": np.array([[2.0, 3.0]]), "b": np.array([1.0])}
    received = {"w": np.array([[1.0, 1.0]]), "b": np.array([0.5])}
    assert np.array_equal(flatten_update(trained, received), [0.5, 1.0, 2.0])


# ------------------------------------------------------------------ the tracker: ε with the noise present


class _Outcome:
    def __init__(self, survivors, released=True, wrapped=0):
        self.last_round = SecAggRound(survivors, wrapped, released)


def test_a_dropout_lowers_the_noise_present_and_raises_that_rounds_epsilon():
    plan = _plan(cohort=3, min_reports=2, variance=900.0, l2_bound=30.0, l1_bound=900.0)
    tracker = DistributedDPTracker(plan, DELTA)
    rows = []
    for survivors, released in ((3, True), (2, True), (1, False)):
        tracker.begin_round(_Outcome(survivors, released))
        rows.append(tracker.end_round([], {}, [], released))
    assert [r["noise_fraction"] for r in rows] == [1.0, 2 / 3, 0.0]
    assert rows[0]["noise_variance"] == 900.0 * 0.25 and rows[1]["noise_variance"] == 600.0 * 0.25  # γ² μ_r, γ = 0.5
    assert rows[1]["epsilon_round"] > rows[0]["epsilon_round"] and rows[2]["epsilon_round"] == 0.0
    assert rows[1]["epsilon"] == pytest.approx(skellam_epsilon([900.0, 600.0], 30.0, 900.0, DELTA), rel=1e-12)
    assert rows[2]["epsilon"] == rows[1]["epsilon"]  # an aborted round releases nothing
    summary = tracker.summary()
    assert summary["privacy_mode"] == "distributed" and summary["accountant"] == "skellam-rdp" and summary["dropouts"] == 1 + 2
    assert summary["secagg_aborted"] == 1 and summary["releases"] == 2 and summary["epsilon_planned"] < summary["epsilon"]
    resumed = DistributedDPTracker(plan, DELTA)
    resumed.load_plain(tracker.to_plain())
    assert resumed.summary() == summary and list(tracker.to_plain()) == list(checkpoint_section())  # every tracker's section shape


# ------------------------------------------------------------------ the config's refusals


def _distributed(**privacy):
    return {"partition": {"num_clients": 6}, "simulation": {"clients_per_round": 3, "rounds": 2},
            "privacy": {"mode": "distributed", "noise_multiplier": 1.0, "client_sampling": "fixed", **privacy}}


@pytest.mark.parametrize("privacy,field", [({"client_sampling": "poisson"}, "privacy.client_sampling"),
                                           ({"secagg_min_reports": 4}, "privacy.secagg_min_reports"),
                                           ({"clipping": "client_adaptive"}, "privacy.clipping")])
def test_bad_distributed_settings_get_one_line_naming_the_field(privacy, field):
    with pytest.raises(FedftError) as err:
        load_config(_distributed(**privacy))
    assert err.value.field == field and "\n" not in err.value.one_line() and "Fix:" in err.value.one_line()


def test_distributed_refuses_strategies_and_compression_that_need_single_updates():
    cfg = _distributed()
    cfg["strategy"] = {"name": "krum"}
    with pytest.raises(FedftError, match="^strategy.name"):
        load_config(cfg)
    cfg = _distributed()
    cfg["compression"] = {"kind": "int8"}
    with pytest.raises(FedftError, match="^compression.kind"):
        load_config(cfg)
    assert load_config(_distributed()).privacy.secagg_bits == 20


def test_too_few_bits_for_the_model_are_refused_with_the_fix():
    from fedft.privacy.checks import check_distributed_plan

    with pytest.raises(FedftError, match="^privacy.secagg_bits"):
        check_distributed_plan(load_config(_distributed(secagg_bits=2)), 93322)


# ------------------------------------------------------------------ one real run


@pytest.mark.slow
def test_distributed_dp_run_reports_epsilon_and_a_dropout_raises_its_rounds_epsilon(tiny_config, tmp_path, shared_ray, process_guard):
    """3 clients, all 3 per round, 2 rounds, target ε = 4; seed 1 drops client 2 in round 2 (and no one
    in round 1): round 2 carries 2/3 of the noise, its ε alone is higher, the run's ε is above the
    planned one and equals the Skellam accounting of the variances present."""
    import csv

    import fedft
    from fedft.config import FaultsConfig
    from fedft.fl.client.faults import fault_for

    faults = FaultsConfig(dropout_probability=0.3)
    assert [fault_for(faults, 1, r, c) for r in (1, 2) for c in range(3)].count("dropout") == 1
    assert all(fault_for(faults, 1, 1, c) == "none" for c in range(3))
    cfg = dict(tiny_config, seed=1, faults={"dropout_probability": 0.3}, simulation={"rounds": 2, "clients_per_round": 3, "device": "cpu"},
               privacy={"mode": "distributed", "target_epsilon": 4.0, "client_sampling": "fixed", "clipping_norm": 0.5, "secagg_min_reports": 2})
    result = fedft.run(cfg, out=tmp_path / "distributed", quiet=True)
    summary = result.summary
    assert summary["status"] == "completed" and summary["privacy_mode"] == "distributed" and summary["accountant"] == "skellam-rdp"
    with open(result.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))[1:]
    assert [int(r["secagg_survivors"]) for r in rows] == [3, 2] and [int(r["clients_dropped"]) for r in rows] == [0, 1]
    assert float(rows[1]["noise_fraction"]) == pytest.approx(2 / 3) and float(rows[1]["epsilon_round"]) > float(rows[0]["epsilon_round"])
    assert float(rows[1]["noise_variance"]) < float(rows[0]["noise_variance"])
    present = summary["noise_variance_present"]
    assert present[1] == pytest.approx(present[0] * 2 / 3, rel=1e-12)
    assert summary["epsilon"] == pytest.approx(skellam_epsilon(present, summary["l2_sensitivity"], summary["l1_sensitivity"], 1e-5), rel=1e-12)
    assert summary["epsilon_planned"] <= 4.0 < summary["epsilon"] and summary["dropouts"] == 1
    assert summary["secagg_wrapped"] == 0 and summary["secagg_bits"] == 20 and summary["private"] is True
    assert 0.0 <= float(rows[1]["test_accuracy"]) <= 1.0 and math.isfinite(float(rows[1]["test_loss"]))  # the decoded mean is a model that evaluates (its accuracy, under OS noise, varies)
    print(f"distributed: ε = {summary['epsilon']:.4g} (planned {summary['epsilon_planned']:.4g}), rounds' ε {[r['epsilon_round'] for r in rows]}, "
          f"σ {summary['noise_multiplier']:.4g}, γ {summary['granularity']:.3g}, wrap bound {summary['secagg_wrap_bound']:.3g}")
