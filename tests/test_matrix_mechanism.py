"""Correlated noise (fedft.privacy.matrix_mechanism): factorizations, sensitivities and ε
against closed forms; the noise a round adds; the wiring into CentralDP and its tracker."""

import math

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent
from dp_accounting.rdp import RdpAccountant
from scipy.optimize import brentq
from scipy.stats import norm

from fedft.jobs.validate import load_config
from fedft.errors import FedftError
from fedft.fl.server.sampling import cyclic_sample_clients
from fedft.privacy import matrix_mechanism as mm
from fedft.privacy.accounting import gaussian_epsilon
from fedft.privacy.central import central_noise_multiplier, central_planned_epsilon
from fedft.privacy.tracker import privacy_tracker

DELTA = 1e-5


def _gaussian_exact_epsilon(mu, delta=DELTA):
    """Balle & Wang 2018: the Gaussian of sensitivity/std μ is (ε, δ)-DP iff
    Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) ≤ δ."""
    return brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 500)


@pytest.mark.parametrize("rounds", [1, 2, 5, 8, 13, 16])
@pytest.mark.parametrize("name", mm.MECHANISMS)
def test_every_factorization_decodes_the_prefix_sums(name, rounds):
    fact = mm.factorization(name, rounds, bands=3)
    assert np.allclose(fact.decoder @ fact.encoder, mm.prefix_sum_matrix(rounds), atol=1e-12)
    assert np.allclose(np.cumsum(fact.round_noise(), axis=0), fact.decoder, atol=1e-12)  # the rounds' noise sums to B z
    assert (fact.encoder >= 0).all()  # what makes sens(π) = ‖C π‖ valid for any directions


@pytest.mark.parametrize("levels", [2, 3, 5])
def test_tree_sensitivities_have_their_closed_forms(levels):
    """T = 2^L: every round is in L + 1 complete nodes; all T rounds give Σ_ℓ (T / 2^ℓ) (2^ℓ)² = T (2^(L+1) − 1);
    prefix t is tiled by popcount(t) nodes."""
    rounds = 2 ** levels
    fact = mm.tree(rounds)
    assert all(mm.sensitivity(fact.encoder, [t]) ** 2 == pytest.approx(levels + 1) for t in range(1, rounds + 1))
    assert mm.sensitivity(fact.encoder, range(1, rounds + 1)) ** 2 == pytest.approx(rounds * (2 ** (levels + 1) - 1))
    assert [int(row.sum()) for row in fact.decoder] == [bin(t).count("1") for t in range(1, rounds + 1)]
    assert fact.encoder.shape[0] == 2 * rounds - 1


def test_banded_square_root_squares_to_the_prefix_sums_and_its_separated_columns_add_in_quadrature():
    """Without banding C² = A (c_j = binom(2j, j)/4^j); with b bands and participations ≥ b apart,
    sens² = Σ_t Σ_{j < min(b, T − t + 1)} c_j²."""
    full = mm.banded(12, 12).encoder
    assert np.allclose(full @ full, mm.prefix_sum_matrix(12), atol=1e-12)
    assert mm.sqrt_coefficients(5).tolist() == pytest.approx([math.comb(2 * j, j) / 4 ** j for j in range(5)])
    rounds, bands = 20, 4
    enc = mm.banded(rounds, bands).encoder
    c2 = [math.comb(2 * j, j) ** 2 / 16 ** j for j in range(bands)]
    for pattern in mm.cyclic_participation(rounds, period=bands):
        expected = sum(sum(c2[:min(bands, rounds - t + 1)]) for t in pattern)
        assert mm.sensitivity(enc, pattern) ** 2 == pytest.approx(expected)


def test_independent_noise_is_dp_fedavg_with_sensitivity_root_k():
    enc = mm.independent(30).encoder
    assert mm.planned_sensitivity(enc, "cyclic", 10) == pytest.approx(math.sqrt(3))
    assert mm.planned_sensitivity(enc, "fixed", 10) == pytest.approx(math.sqrt(30))


@pytest.mark.parametrize("effective", [0.6, 1.0, 2.5])
def test_one_gaussian_mechanism_epsilon_against_the_closed_form_and_dp_accounting(effective):
    """The whole correlated-noise run is one Gaussian of multiplier σ/sens: PLD within 1e-5 of
    Balle & Wang's exact ε, RDP equal to dp-accounting's RDP of the same Gaussian (± its orders)."""
    exact = _gaussian_exact_epsilon(1 / effective)
    assert exact - 1e-9 <= gaussian_epsilon(effective, DELTA, "pld") <= exact + 1e-5
    assert exact - 1e-6 <= gaussian_epsilon(effective, DELTA, "prv") <= exact + 0.02
    acc = RdpAccountant()
    acc.compose(GaussianDpEvent(effective))
    assert gaussian_epsilon(effective, DELTA, "rdp") == pytest.approx(acc.get_epsilon(DELTA), rel=0.02)


def test_round_noise_is_regenerated_from_the_key_and_its_prefix_sums_have_covariance_b_bt():
    fact = mm.tree(6)
    coefficients = fact.round_noise()
    first = mm.round_noise(coefficients[3], 7, [(2, 3)])
    assert np.array_equal(first[0], mm.round_noise(coefficients[3], 7, [(2, 3)])[0])
    draws = np.stack([mm.round_noise(coefficients[t], 11, [(20000,)])[0] for t in range(6)])  # 20,000 coordinates, 6 rounds
    covariance = np.cov(np.cumsum(draws, axis=0))
    assert np.allclose(covariance, fact.decoder @ fact.decoder.T, atol=0.1)


def test_cyclic_sampling_takes_turns_and_skips_the_remainder():
    cohorts = [cyclic_sample_clients(3, r, 10, 3) for r in range(1, 7)]
    assert cohorts[:3] == cohorts[3:] and sorted(sum(cohorts[:3], [])) == sorted(set(sum(cohorts[:3], []))) and len(set(sum(cohorts, []))) == 9


def _central(**privacy):
    return load_config({"partition": {"num_clients": 20}, "simulation": {"clients_per_round": 5, "rounds": 8},
                        "privacy": {"mode": "central", "client_sampling": "cyclic", **privacy}})


@pytest.mark.parametrize("mechanism", mm.MECHANISMS)
def test_calibrated_noise_spends_the_target_and_the_tracker_counts_each_users_rounds(mechanism):
    """8 rounds, period 4: every user joins 2 rounds; σ is calibrated so the planned
    one-Gaussian ε is the target, and the tracker's ε after the run (counted from the
    replies) equals the closed form at σ / max_u ‖C π_u‖."""
    from flower_messages import train_reply

    cfg = _central(target_epsilon=4.0, noise_mechanism=mechanism)
    sigma = central_noise_multiplier(cfg)
    assert 3.99 <= central_planned_epsilon(cfg, sigma) <= 4.0
    tracker = privacy_tracker(cfg)
    client_of = {100 + c: c for c in range(20)}
    for r in range(1, 9):
        cohort = cyclic_sample_clients(cfg.seed, r, 20, 5)
        tracker.end_round([train_reply({"w": np.zeros(1)}, node_id=100 + c) for c in cohort], client_of, [], released=True)
    summary = tracker.summary()
    enc = mm.factorization(mechanism, 8, bands=4).encoder
    sens = max(mm.sensitivity(enc, p) for p in mm.cyclic_participation(8, 4))
    exact = _gaussian_exact_epsilon(sens / sigma)
    assert summary["noise_mechanism"] == mechanism and summary["epsilon"] == pytest.approx(exact, abs=1e-4)
    assert summary["epsilon"] <= 4.0 + 1e-4
    resumed = privacy_tracker(cfg)
    resumed.load_plain(tracker.to_plain())
    assert resumed.summary() == summary


@pytest.mark.parametrize("privacy,field", [({"client_sampling": "poisson", "noise_mechanism": "tree"}, "privacy.noise_mechanism"),
                                           ({"noise_mechanism": "banded", "clipping": "server_adaptive"}, "privacy.clipping")])
def test_correlated_noise_refuses_participation_it_does_not_account_for(privacy, field):
    with pytest.raises(FedftError) as err:
        _central(noise_multiplier=1.0, **privacy)
    assert err.value.field == field


def test_the_secret_noise_key_is_kept_by_a_strategy_snapshot():
    """Under noise_source = "os" the key is OS entropy; the run checkpoint (a strategy
    snapshot) keeps it, so a resumed run regenerates the same z_j."""
    from flwr.serverapp.strategy import FedAvg

    from fedft.privacy.central import CentralDP
    from fedft.state.snapshot import restore_object, snapshot_object

    def strategy():
        return CentralDP(FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, expected_cohort=2.0, clipping="server_fixed", noise_seed=None,
                         round_noise=mm.tree(4).round_noise())

    first, second = strategy(), strategy()
    assert first.noise_key != second.noise_key and len(first.noise_key) >= 24  # 128 random bits
    restore_object(second, snapshot_object(first))
    assert second.noise_key == first.noise_key


@pytest.mark.slow
def test_a_banded_noise_run_over_cyclic_turns_reports_its_epsilon_and_resumes_bit_identically(tiny_config, tmp_path, process_guard):
    """6 users in 3 turns of 2 over 4 rounds (users of group 0 join rounds 1 and 4): ε is the
    closed-form Gaussian at σ / max_u ‖C π_u‖, and a run stopped after round 2 and resumed
    regenerates the same correlated noise (seeded here, to compare with the uninterrupted run)."""
    import torch

    import fedft
    from test_reliability import rows_without_times, stop_after_round

    tiny_config["partition"]["num_clients"] = 6
    tiny_config["simulation"].update(rounds=4, clients_per_round=2, backend="local")
    tiny_config["privacy"] = {"mode": "central", "client_sampling": "cyclic", "noise_mechanism": "banded", "bands": 2,
                              "noise_multiplier": 0.8, "clipping_norm": 0.5, "noise_source": "seeded"}
    reference = fedft.run(tiny_config, out=tmp_path / "reference", quiet=True)
    s = reference.summary
    assert s["status"] == "completed" and s["noise_mechanism"] == "banded" and s["client_sampling"] == "cyclic"
    assert [r["clients_sampled"] for r in reference.metrics[1:]] == [2, 2, 2, 2]
    enc = mm.banded(4, 2).encoder
    sens = max(mm.sensitivity(enc, p) for p in mm.cyclic_participation(4, 3))
    assert s["sensitivity"] == pytest.approx(sens) and s["epsilon"] == pytest.approx(_gaussian_exact_epsilon(sens / 0.8), abs=1e-4)

    with pytest.raises(Exception, match="stopped after round 2"):
        fedft.run(tiny_config, out=tmp_path / "stopped", quiet=True, on_round=stop_after_round(2))
    resumed = fedft.run(resume=tmp_path / "stopped", quiet=True)
    assert resumed.summary["status"] == "completed" and resumed.summary["epsilon"] == s["epsilon"]
    assert rows_without_times(tmp_path / "stopped") == rows_without_times(reference.run_dir)
    for key, value in reference.state.items():
        assert torch.equal(resumed.state[key], value), key
