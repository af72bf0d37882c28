"""Central DP: the fixed-denominator noised mean against hand-computed arrays, Poisson
client sampling, the strategies it accepts, and its ε against Google's dp-accounting
(an independent implementation) and closed forms."""

import math
import warnings

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.serverapp.strategy import FedAdam, FedAvg
from scipy.optimize import brentq
from scipy.stats import norm

from fedft.errors import FedftError
from fedft.fl.server.loop import RoundSettings
from fedft.fl.server.sampling import poisson_sample_clients
from fedft.jobs.validate import load_config
from fedft.privacy.accounting import CENTRAL_RDP_ORDERS, GAUSSIAN_RDP_ORDERS, central_epsilon, central_rdp_orders
from fedft.privacy.central import (
    CENTRAL_DP_STRATEGIES,
    CentralDP,
    central_noise_seed,
    clip_update,
    next_clipping_norm,
    noise_generator,
    noised_clipped_fraction,
    noised_mean_update,
    update_noise_multiplier,
    wrap_strategy,
)
from fedft.privacy.tracker import privacy_tracker
from flower_messages import FakeGrid, array_record, server_identity, train_reply

DELTA = 1e-5


# ------------------------------------------------------------------ the mechanism by hand


def test_clip_takes_one_norm_over_all_arrays():
    clipped, was = clip_update([np.array([3.0]), np.array([[4.0]])], 1.0)  # ‖Δ‖ = 5
    assert was and np.allclose(clipped[0], [0.6]) and np.allclose(clipped[1], [[0.8]])
    kept, was = clip_update([np.array([0.3, 0.4])], 1.0)
    assert not was and np.array_equal(kept[0], [0.3, 0.4])
    zero, was = clip_update([np.zeros(3)], 1.0)
    assert not was and np.array_equal(zero[0], np.zeros(3))


def test_noised_mean_divides_by_the_expected_cohort_not_by_what_arrived():
    # clip_1([3, 4]) = [0.6, 0.8]; [0.3, 0] is inside the ball; ξ = [1, -2], σ = 0.5, C = 1, m = 4:
    # u = ([0.9, 0.8] + 0.5 · [1, -2]) / 4 = [0.35, -0.05]
    clipped = [clip_update([np.array([3.0, 4.0])], 1.0)[0], clip_update([np.array([0.3, 0.0])], 1.0)[0]]
    u = noised_mean_update(clipped, [np.array([1.0, -2.0])], 0.5, 1.0, 4.0)
    assert np.allclose(u[0], [0.35, -0.05], rtol=0, atol=1e-15)
    # nobody arrived: noise only, still over m
    assert np.allclose(noised_mean_update([], [np.array([1.0, -2.0])], 0.5, 1.0, 4.0)[0], [0.125, -0.25], rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        noised_mean_update([], [np.zeros(1)], 1.0, 1.0, 0.0)


def test_adaptive_clipping_pieces_by_hand():
    # 3 of 4 arrivals clipped, m = 5 (one sampled reply missing), σ_b = 0.5, ξ = 0.4:
    # b̃ = ((½ + ½ + ½ − ½) + 0.5 · 0.4) / 5 + ½ = 1.2 / 5 + ½ = 0.74
    assert noised_clipped_fraction([True, True, True, False], 0.4, 0.5, 5.0) == pytest.approx(0.74, abs=1e-15)
    assert next_clipping_norm(2.0, 0.74, 0.5, 0.2) == pytest.approx(2.0 * math.exp(-0.2 * 0.24), rel=1e-15)
    # σ⁻² = σ_Δ⁻² + (2σ_b)⁻²: σ = 1, σ_b = 1 → σ_Δ = (1 − 1/4)^(−1/2)
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx(1 / math.sqrt(0.75), rel=1e-15)
    with pytest.raises(ValueError):
        update_noise_multiplier(1.0, 0.5)


def _wrapper(inner=None, **kw):
    args = dict(noise_multiplier=0.7, clipping_norm=1.0, expected_cohort=5.0, clipping="server_fixed", noise_seed=11)
    args.update(kw)
    return CentralDP(inner if inner is not None else FedAvg(fraction_train=1.0, min_available_nodes=0, min_train_nodes=0), **args)


def _configured(strategy, server_round, current):
    from flwr.app import ConfigRecord

    with server_identity():
        list(strategy.configure_train(server_round, array_record(current), ConfigRecord({}), FakeGrid([1])))


def test_a_round_with_dropped_replies_has_the_same_noise_and_denominator_as_a_full_one():
    """5 sampled, only 3 replies arrive: the released model is current + (Σ arrived clip + σCξ)/m
    with the same ξ (same seed and round) and the same m = 5 as the full round."""
    current = {"w": np.array([1.0, 2.0, 3.0]), "b": np.array([0.5])}
    deltas = [np.array([0.1, 0.0, 0.0, 0.2]), np.array([3.0, 0.0, 4.0, 0.0]), np.array([0.0, 0.3, 0.0, 0.0]),
              np.array([0.0, 0.0, 0.0, -2.0]), np.array([0.2, 0.2, 0.2, 0.2])]

    def reply(i):
        d = deltas[i]
        return train_reply({"w": current["w"] + d[:3], "b": current["b"] + d[3:]}, node_id=i + 1)

    def released(indices):
        strategy = _wrapper()
        _configured(strategy, 4, current)
        arrays, _ = strategy.aggregate_train(4, [reply(i) for i in indices])
        return np.concatenate([arrays["w"].numpy(), arrays["b"].numpy()])

    rng = noise_generator(11, 4)
    xi = np.concatenate([rng.standard_normal(3), rng.standard_normal(1)])  # the keys' order: w, b
    start = np.array([1.0, 2.0, 3.0, 0.5])
    clip = [clip_update([d], 1.0)[0][0] for d in deltas]
    full, dropped = released(range(5)), released([0, 1, 2])
    assert np.allclose(full, start + (sum(clip) + 0.7 * xi) / 5, rtol=0, atol=1e-12)
    assert np.allclose(dropped, start + (clip[0] + clip[1] + clip[2] + 0.7 * xi) / 5, rtol=0, atol=1e-12)
    assert np.allclose(full - dropped, (clip[3] + clip[4]) / 5, rtol=0, atol=1e-12)
    assert np.allclose(released([]), start + 0.7 * xi / 5, rtol=0, atol=1e-12)  # an empty cohort still releases noise


def test_an_empty_poisson_cohort_sends_nothing_and_still_releases_noise():
    from flwr.app import ConfigRecord

    strategy = _wrapper(noise_seed=1)
    with server_identity():
        assert list(strategy.configure_train(1, array_record({"w": np.zeros(2)}), ConfigRecord({}), FakeGrid([]))) == []
    arrays, _ = strategy.aggregate_train(1, [])
    assert np.allclose(arrays["w"].numpy(), 0.7 * 1.0 * noise_generator(1, 1).standard_normal(2) / 5, rtol=0, atol=1e-12)


def test_released_noise_std_is_sigma_c_over_m_whatever_arrives():
    current = {"w": np.zeros(200_000, dtype=np.float32)}
    for arrived in (0, 2, 5):
        strategy = _wrapper(clipping_norm=2.0, noise_seed=3)
        _configured(strategy, 1, current)
        arrays, _ = strategy.aggregate_train(1, [train_reply({"w": np.zeros(200_000, dtype=np.float32)}, node_id=i + 1) for i in range(arrived)])
        noise = arrays["w"].numpy()
        assert noise.dtype == np.float32
        assert float(np.std(noise)) == pytest.approx(0.7 * 2.0 / 5, rel=0.01)


def test_client_adaptive_clipping_sends_the_norm_reads_the_bits_and_moves_it_with_the_fixed_denominator():
    from flwr.app import ConfigRecord

    current = {"w": np.zeros(2)}
    strategy = _wrapper(clipping="client_adaptive", clipping_norm=1.0, noise_multiplier=0.5, clipped_count_stddev=1.0, noise_seed=4)
    config = ConfigRecord({})
    with server_identity():
        messages = list(strategy.configure_train(2, array_record(current), config, FakeGrid([1])))
    assert messages[0].content.config_records["config"]["clipping_norm"] == 1.0
    replies = [train_reply({"w": np.array([0.6, 0.8])}, node_id=1, metrics={"norm_bit": 1}),
               train_reply({"w": np.array([0.1, 0.0])}, node_id=2, metrics={"norm_bit": 0}),
               train_reply({"w": np.array([0.2, 0.0])}, node_id=3, metrics={"norm_bit": 1})]
    arrays, _ = strategy.aggregate_train(2, replies)
    rng = noise_generator(4, 2)
    xi, xi_count = rng.standard_normal(2), rng.standard_normal()
    sigma_update = (0.5**-2 - 2.0**-2) ** -0.5
    assert np.allclose(arrays["w"].numpy(), (np.array([0.9, 0.8]) + sigma_update * 1.0 * xi) / 5, rtol=0, atol=1e-12)
    fraction = (0.5 - 0.5 + 0.5 + 1.0 * xi_count) / 5 + 0.5
    assert strategy.clipping_norm == pytest.approx(math.exp(-0.2 * (fraction - 0.5)), rel=1e-12)


def test_fedadam_post_processes_the_noised_mean():
    """FedAdam's first step from the noised mean u (noise 0 here): m₁ = (1 − β₁)u, v₁ = (1 − β₂)u²,
    x + η_t m₁ / (√v₁ + τ) with Flower's bias-corrected η_t = η √(1 − β₂^(r+1)) / (1 − β₁^(r+1)), r = 1."""
    current = {"w": np.array([0.0, 1.0])}
    inner = FedAdam(fraction_train=1.0, min_available_nodes=0, min_train_nodes=0, eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)
    strategy = _wrapper(inner, noise_multiplier=0.0)
    _configured(strategy, 1, current)
    arrays, _ = strategy.aggregate_train(1, [train_reply({"w": np.array([0.5, 1.0])}, node_id=1)])
    u = np.array([0.5, 0.0]) / 5
    eta_t = 0.1 * math.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    expected = current["w"] + eta_t * (0.1 * u) / (np.sqrt(0.01 * u**2) + 1e-3)
    assert np.allclose(arrays["w"].numpy(), expected, rtol=1e-6)


def test_central_noise_is_a_function_of_seed_and_round_unless_drawn_from_the_os():
    a, b = noise_generator(5, 2).standard_normal(4), noise_generator(5, 2).standard_normal(4)
    assert np.array_equal(a, b) and not np.array_equal(a, noise_generator(5, 3).standard_normal(4))
    assert not np.array_equal(noise_generator(None, 2).standard_normal(4), noise_generator(None, 2).standard_normal(4))


def _released_by_a_default_server(cfg, server_round, current, update):
    """What a server built from `cfg` as `fedft run` builds it releases for one reply."""
    strategy = wrap_strategy(FedAvg(fraction_train=1.0, min_available_nodes=0, min_train_nodes=0), cfg, central_noise_seed(cfg))
    _configured(strategy, server_round, current)
    arrays, _ = strategy.aggregate_train(server_round, [train_reply({"w": current["w"] + update}, node_id=1)])
    return arrays["w"].numpy()


@pytest.mark.parametrize("noise_source", [None, "seeded"])
def test_whoever_has_the_config_can_subtract_the_noise_only_when_seeded(noise_source):
    """The attack an audit ran on the old default: regenerate the round's noise from the seed in
    config.toml, subtract it, and read the clipped update exactly. By default (OS entropy) the
    subtraction only adds noise; opting in to "seeded" hands the update over."""
    privacy = {} if noise_source is None else {"noise_source": noise_source}
    cfg = load_config(_central(noise_multiplier=2.0, clipping_norm=1.0, **privacy))
    current, update = {"w": np.zeros(4000)}, np.full(4000, 0.01)  # norm 0.63 < C: unclipped
    released = _released_by_a_default_server(cfg, 3, current, update)
    regenerated = noise_generator(cfg.seed, 3).standard_normal(4000) * 2.0 * 1.0 / cfg.simulation.clients_per_round
    recovered = (released - regenerated) * cfg.simulation.clients_per_round
    residual = float(np.std(recovered - update))
    if noise_source == "seeded":
        assert residual < 1e-6  # the update, exactly
    else:
        assert cfg.privacy.noise_source == "os" and central_noise_seed(cfg) is None
        assert residual == pytest.approx(2.0 * math.sqrt(2), rel=0.1)  # the real noise minus an independent guess: σC√2 on every coordinate of the sum


def test_default_poisson_cohorts_cannot_be_replayed_from_the_seed():
    """Amplification by sampling needs the cohort to be secret: by default the coins come from
    OS entropy, so the seed does not tell who joined a round; "seeded" replays them."""
    def settings(**privacy):
        raw = _central(**privacy)
        raw["partition"], raw["simulation"]["clients_per_round"] = {"num_clients": 200}, 100
        return RoundSettings.from_config(load_config(raw))

    default, seeded = settings(), settings(noise_source="seeded")
    assert seeded.sample(4, frozenset()) == seeded.sample(4, frozenset()) == poisson_sample_clients(0, 4, 200, 0.5)
    assert len({tuple(default.sample(4, frozenset())) for _ in range(3)}) == 3  # 3 fresh cohorts of 2^200 possible


# ------------------------------------------------------------------ sampling and config


def test_poisson_sampling_is_per_round_deterministic_and_includes_each_client_at_rate_q():
    assert poisson_sample_clients(7, 1, 10, 0.5) == poisson_sample_clients(7, 1, 10, 0.5)
    sizes = [len(poisson_sample_clients(7, r, 10, 0.5)) for r in range(1, 2001)]
    assert min(sizes) < 5 < max(sizes)  # cohorts vary in size
    counts = np.zeros(10)
    for r in range(1, 2001):
        counts[poisson_sample_clients(7, r, 10, 0.5)] += 1
    assert np.all(np.abs(counts / 2000 - 0.5) < 4 * math.sqrt(0.25 / 2000))  # 4 standard errors
    assert 3 not in poisson_sample_clients(7, 1, 10, 1.0, exclude=frozenset({3}))
    others = [c for c in poisson_sample_clients(7, 9, 10, 0.5) if c != 3]
    assert poisson_sample_clients(7, 9, 10, 0.5, exclude=frozenset({3})) == others  # excluding one never reshuffles the rest


def _central(**privacy):
    return {"partition": {"num_clients": 10}, "simulation": {"clients_per_round": 5, "rounds": 3},
            "privacy": {"mode": "central", "noise_multiplier": 1.0, **privacy}}


@pytest.mark.parametrize("name", ["krum", "multikrum", "fedmedian", "fedtrimmedavg", "bulyan", "qfedavg", "scaffold"])
def test_central_dp_refuses_strategies_that_do_not_post_process_the_mean(name):
    cfg = _central()
    cfg["strategy"] = {"name": name}
    with pytest.raises(FedftError) as err:
        load_config(cfg)
    assert err.value.field == "strategy.name" and "\n" not in err.value.one_line()


@pytest.mark.parametrize("name", CENTRAL_DP_STRATEGIES)
def test_central_dp_accepts_the_fedavg_family(name):
    cfg = _central()
    cfg["strategy"] = {"name": name}
    assert load_config(cfg).strategy.name == name


def test_adaptive_clipping_needs_enough_count_noise():
    with pytest.raises(FedftError) as err:
        load_config(_central(clipping="server_adaptive"))  # σ_b = 5 / 20: needs σ < 0.5
    assert err.value.field == "privacy.clipped_count_stddev"
    assert load_config(_central(clipping="client_adaptive", clipped_count_stddev=1.0)).privacy.clipping == "client_adaptive"


# ------------------------------------------------------------------ ε against independent references


def _dp_accounting_rdp(sigma, q, rounds, delta=DELTA):
    event = dpa.GaussianDpEvent(sigma) if q == 1 else dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma))
    acc = rdp_privacy_accountant.RdpAccountant(orders=list(central_rdp_orders(q)))  # fedft's choice of orders, dp-accounting's RDP
    acc.compose(dpa.SelfComposedDpEvent(event, rounds))
    return acc.get_epsilon(delta)


def _dp_accounting_pld(sigma, q, rounds, delta=DELTA):
    event = dpa.GaussianDpEvent(sigma) if q == 1 else dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma))
    acc = pld_privacy_accountant.PLDAccountant()
    acc.compose(dpa.SelfComposedDpEvent(event, rounds))
    return acc.get_epsilon(delta)


CASES = [(1.0, 0.5, 3), (0.8, 0.1, 50), (1.0, 0.01, 100), (2.0, 0.3, 20), (1.2, 0.05, 200)]


@pytest.mark.parametrize("sigma,q,rounds", CASES)
def test_central_rdp_epsilon_equals_dp_accounting(sigma, q, rounds):
    assert central_epsilon(sigma, q, rounds, DELTA, "rdp") == pytest.approx(_dp_accounting_rdp(sigma, q, rounds), rel=1e-6)


@pytest.mark.parametrize("sigma,q,rounds", CASES)
def test_central_prv_epsilon_brackets_dp_accounting_pld(sigma, q, rounds):
    """Opacus' PRV reports an upper bound with eps_error 0.01, dp-accounting's PLD a
    pessimistic discretisation: both numerical, so the check is pld ≤ prv ≤ pld + 0.02."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        prv = central_epsilon(sigma, q, rounds, DELTA, "prv")
    pld = _dp_accounting_pld(sigma, q, rounds)
    assert pld - 1e-9 <= prv <= pld + 0.02


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_the_headline_is_an_upper_bound_and_gdp_only_an_approximation_beside_it(accountant):
    """σ = 0.6, q = 0.01, 100 rounds: GDP says 1.50 where dp-accounting's PLD says 3.82. The
    headline ε (rdp or prv; "gdp" is refused as a config value) is at or above PLD, and the
    GDP value appears only as epsilon_gdp."""
    tracker = privacy_tracker(load_config({"partition": {"num_clients": 1000}, "simulation": {"clients_per_round": 10, "rounds": 100},
                                           "privacy": {"mode": "central", "noise_multiplier": 0.6, "accountant": accountant}}))
    tracker.releases = 100  # as after 100 released rounds
    summary, pld = tracker.summary(), _dp_accounting_pld(0.6, 0.01, 100)
    assert summary["epsilon"] >= pld - 1e-9 and summary["epsilon"] == summary[f"epsilon_{accountant}"]
    assert summary["epsilon_gdp"] < pld / 2  # the approximation understates by 2.5x here
    with pytest.raises(FedftError) as err:
        load_config(_central(accountant="gdp"))
    assert err.value.field == "privacy.accountant" and "prv" in err.value.problem


def _gaussian_exact_epsilon(mu, delta):
    """Balle & Wang 2018: the Gaussian of GDP parameter μ is (ε, δ)-DP iff
    Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) ≤ δ."""
    return brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 500)


@pytest.mark.parametrize("sigma,rounds", [(1.0, 3), (2.0, 100), (5.0, 10)])
def test_fixed_size_sampling_is_accounted_without_amplification(sigma, rounds):
    """q = 1: the headline PLD ε within 1e-5 of the exact ε of the T-fold Gaussian (μ = √T/σ,
    Balle & Wang's closed form); RDP(α) = Tα/(2σ²) exactly (orders 1.1..10.9 and 2..256),
    converted with Balle et al. 2020; PRV within 0.02 of the exact ε."""
    orders = np.array(GAUSSIAN_RDP_ORDERS)
    assert orders[0] == 1.1 and orders[-1] == 256 and set(CENTRAL_RDP_ORDERS) <= set(GAUSSIAN_RDP_ORDERS)
    closed = np.min(rounds * orders / (2 * sigma**2) + np.log((orders - 1) / orders) - (np.log(DELTA) + np.log(orders)) / (orders - 1))
    cfg = load_config(_central(client_sampling="fixed", noise_multiplier=sigma) | {"simulation": {"clients_per_round": 5, "rounds": rounds}})
    tracker = privacy_tracker(cfg)
    for _ in range(rounds):
        tracker.end_round([], {}, [], released=True)
    summary = tracker.summary()
    assert summary["client_sampling"] == "fixed" and summary["sample_rate"] == 1.0 and summary["neighbouring"] == "zero-out"
    assert summary["epsilon_rdp"] == pytest.approx(closed, rel=1e-12) == pytest.approx(_dp_accounting_rdp(sigma, 1.0, rounds), rel=1e-12)
    exact = _gaussian_exact_epsilon(math.sqrt(rounds) / sigma, DELTA)
    assert summary["accountant"] == "pld" and summary["epsilon"] == summary["epsilon_pld"]
    assert exact - 1e-9 <= summary["epsilon_pld"] <= exact + 1e-5
    assert exact - 1e-6 <= summary["epsilon_prv"] <= exact + 0.02


def test_poisson_tracker_reports_unit_neighbouring_and_both_accountants():
    cfg = load_config(_central())
    tracker = privacy_tracker(cfg)
    for _ in range(3):
        columns = tracker.end_round([], {}, [], released=True)
    assert columns["privacy_unit"] == "user" and columns["neighbouring"] == "add/remove"
    summary = tracker.summary()
    assert summary["client_sampling"] == "poisson" and summary["sample_rate"] == 0.5 and summary["expected_cohort"] == 5.0
    assert summary["epsilon_rdp"] == pytest.approx(_dp_accounting_rdp(1.0, 0.5, 3), rel=1e-6)
    # the headline PLD ε against an independent implementation (Opacus' PRV, Gopi et al. 2021)
    assert summary["epsilon"] == summary["epsilon_pld"] and summary["epsilon_prv"] - 0.02 <= summary["epsilon_pld"] <= summary["epsilon_prv"] + 1e-3


# ------------------------------------------------------------------ end to end (Ray)


def _sim_config(tmp_path, client_sampling):
    return {
        "name": "central", "seed": 7,  # Poisson cohorts of seed 7: 7, 4, 4 clients in rounds 1..3
        "data": {"name": "mnist-5k", "test_fraction": 0.9},  # 50 training records per client
        "partition": {"method": "iid", "num_clients": 10},
        "model": {"name": "seed_cnn"},
        "train": {"lr": 0.05, "momentum": 0.9, "local_epochs": 1, "batch_size": 25},
        "strategy": {"name": "fedavg"},
        "simulation": {"rounds": 3, "clients_per_round": 5, "device": "cpu", "ray_num_cpus": 1},  # the `fedft run` subprocess's own Ray: one actor
        # seeded: the resumed run must repeat the noise and cohorts bit for bit (summary.json: not private)
        "privacy": {"mode": "central", "noise_multiplier": 1.1, "clipping_norm": 0.5, "client_sampling": client_sampling, "noise_source": "seeded"},
        "output": {"dir": str(tmp_path / "runs")},
    }


@pytest.mark.slow
def test_central_dp_run_samples_poisson_reports_dp_accountings_epsilon_and_resumes_identically(tmp_path, shared_ray, process_guard):
    """m = 5 of N = 10, 3 rounds. Poisson: cohort sizes vary, ε equals dp-accounting's
    Poisson-subsampled Gaussian RDP for the recorded (σ, q, T, δ). A second run of the same
    config, SIGKILLed after round 1 and resumed, ends with the same arrays, metrics and ε.
    Fixed-size: every cohort has 5 clients and ε is the no-amplification value."""
    import csv
    import json

    import tomli_w
    import torch

    import fedft
    from test_reliability import FedftProcess, rounds_in, rows_without_times

    cfg = _sim_config(tmp_path, "poisson")
    reference = fedft.run(cfg, out=tmp_path / "poisson", quiet=True)
    summary = json.loads((reference.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["client_sampling"] == "poisson"
    assert summary["privacy_unit"] == "user" and summary["neighbouring"] == "add/remove"
    assert summary["private"] is False and "seeded" in summary["not_private_because"]
    with open(reference.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    sampled = [int(r["clients_sampled"]) for r in rows[1:]]
    assert sampled == [len(poisson_sample_clients(7, r, 10, 0.5)) for r in (1, 2, 3)] and len(set(sampled)) > 1
    assert all(r["privacy_unit"] == "user" and r["neighbouring"] == "add/remove" for r in rows[1:])
    sigma, q, releases, delta = summary["noise_multiplier"], summary["sample_rate"], summary["releases"], summary["delta"]
    assert (sigma, q, releases, delta) == (1.1, 0.5, 3, 1e-5)
    reference_eps = _dp_accounting_rdp(sigma, q, releases, delta)
    assert summary["epsilon_rdp"] == pytest.approx(reference_eps, rel=1e-6)
    assert summary["epsilon"] == summary["epsilon_pld"] and abs(summary["epsilon_pld"] - summary["epsilon_prv"]) <= 0.02  # PLD against Opacus' PRV
    print(f"poisson: ε = {summary['epsilon']!r} (dp-accounting RDP {reference_eps!r}), ε_prv = {summary['epsilon_prv']!r}, cohorts {sampled}")

    config_file = tmp_path / "central.toml"
    config_file.write_text(tomli_w.dumps(cfg))
    run_dir = tmp_path / "killed"
    proc = FedftProcess(["run", str(config_file), "--out", str(run_dir), "--quiet"], tmp_path / "killed.log")
    try:
        proc.watch_until(lambda: 1 in rounds_in(run_dir))
        proc.signal_group(9)  # SIGKILL: nothing gets to clean up
        proc.wait()
    finally:
        proc.stop()
    assert rounds_in(run_dir)[-1] < 3
    resumed = fedft.run(resume=run_dir, quiet=True)
    assert resumed.summary["status"] == "completed"
    for key, value in reference.state.items():
        assert torch.equal(resumed.state[key], value), key
    assert rows_without_times(run_dir) == rows_without_times(reference.run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["epsilon"] == summary["epsilon"]

    fixed = fedft.run(_sim_config(tmp_path, "fixed"), out=tmp_path / "fixed", quiet=True).summary
    with open(tmp_path / "fixed" / "metrics.csv") as f:
        assert [int(r["clients_sampled"]) for r in list(csv.DictReader(f))[1:]] == [5, 5, 5]
    assert fixed["client_sampling"] == "fixed" and fixed["sample_rate"] == 1.0
    no_amplification = _dp_accounting_rdp(1.1, 1.0, 3)
    assert fixed["epsilon_rdp"] == pytest.approx(no_amplification, rel=1e-6)
    assert fixed["epsilon"] == pytest.approx(_gaussian_exact_epsilon(math.sqrt(3) / 1.1, DELTA), abs=1e-5)  # PLD: the 3-fold Gaussian's exact ε
    print(f"fixed: ε = {fixed['epsilon']!r} (dp-accounting Gaussian RDP without amplification {no_amplification!r}), ε_prv = {fixed['epsilon_prv']!r}")


@pytest.mark.slow
def test_fedft_check_refuses_krum_under_central_dp_with_one_line(tmp_path):
    import subprocess
    import sys

    import tomli_w

    from conftest import ROOT

    cfg = _sim_config(tmp_path, "poisson")
    cfg["strategy"] = {"name": "krum"}
    path = tmp_path / "krum.toml"
    path.write_text(tomli_w.dumps(cfg))
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fedft", "check", str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedft: error: strategy.name") and "central DP" in lines[0], proc.stderr


def test_over_devices_central_epsilon_counts_the_rounds_the_most_active_user_joined():
    """Fixed sampling over device profiles: user 0 joins rounds 1, 2 and 4, user 1 rounds 1 and 3,
    user 2 none of 6 releases: ε is the 3-fold Gaussian's (dp-accounting RDP, q = 1), and
    epsilon_all_releases the 6-fold one."""
    from flower_messages import train_reply

    cfg = load_config(_central(client_sampling="fixed", noise_multiplier=2.0) | {"devices": {"profiles": "seeded"}})
    tracker = privacy_tracker(cfg)
    client_of = {100 + c: c for c in range(10)}
    for joined in ([0, 1], [0], [1], [0], [], []):
        tracker.end_round([train_reply({"w": np.zeros(1)}, node_id=100 + c) for c in joined], client_of, [], released=True)
    summary = tracker.summary()
    assert summary["releases"] == 6 and summary["accounted_rounds"] == 3
    assert summary["epsilon_rdp"] == pytest.approx(_dp_accounting_rdp(2.0, 1.0, 3), rel=1e-9)
    assert summary["epsilon"] == pytest.approx(_gaussian_exact_epsilon(math.sqrt(3) / 2.0, DELTA), abs=1e-5)  # PLD, the 3-fold Gaussian
    assert summary["epsilon_all_releases"] == pytest.approx(_gaussian_exact_epsilon(math.sqrt(6) / 2.0, DELTA), abs=1e-5)
    resumed = privacy_tracker(cfg)
    resumed.load_plain(tracker.to_plain())
    assert resumed.summary() == summary
