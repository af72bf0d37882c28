"""`fedft plan-dp` and the noise cohort: σ against the accountant, the cohort search, bad input,
and the released noise of a simulated noise cohort (σC/M while m train)."""

import json

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg

from fedft.cli import main
from fedft.privacy import matrix_mechanism as mm
from fedft.privacy.accounting import calibrate_noise, central_rdp_orders, gaussian_epsilon
from fedft.privacy.central import CentralDP, noise_generator
from fedft.privacy.planner import cohort_for_noise, plan_dp
from flower_messages import FakeGrid, array_record, server_identity, train_reply


def _plan(capsys, *args):
    assert main(["plan-dp", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_poisson_plan_is_the_calibrated_sigma_and_its_noise_per_coordinate(capsys):
    plan = _plan(capsys, "--population", "6000", "--cohort", "100", "--rounds", "60", "--epsilon", "2", "--clipping-norm", "0.5")
    sigma = calibrate_noise(2.0, 1e-5, 100 / 6000, 60, "pld", rdp_orders=central_rdp_orders(100 / 6000))
    assert plan["noise_multiplier"] == sigma and plan["noise_std_round"] == pytest.approx(sigma * 0.5 / 100)
    assert plan["noise_std_final"] == pytest.approx(sigma * 0.5 * np.sqrt(60) / 100) and plan["epsilon_rdp"] > 2.0


def test_correlated_plan_is_one_gaussian_of_multiplier_sigma_over_sens(capsys):
    plan = _plan(capsys, "--population", "600", "--cohort", "10", "--rounds", "120", "--epsilon", "8", "--sampling", "cyclic", "--mechanism", "tree")
    sens = mm.planned_sensitivity(mm.tree(120).encoder, "cyclic", 60)
    assert plan["sensitivity"] == pytest.approx(sens) and plan["noise_multiplier"] == pytest.approx(plan["effective_noise_multiplier"] * sens)
    assert 7.99 <= gaussian_epsilon(plan["effective_noise_multiplier"], 1e-5, "pld") <= 8.0


def test_cohort_for_noise_is_the_smallest_that_meets_the_target():
    options = {"clipping_norm": 1.0, "sampling": "fixed"}  # σ does not depend on m here (one cached calibration); under Poisson each m has its own
    m = cohort_for_noise(0.01, 10000, 50, 4.0, 1e-5, **options)
    assert m is not None
    assert plan_dp(10000, m, 50, 4.0, 1e-5, **options).noise_std_round <= 0.01 < plan_dp(10000, m - 1, 50, 4.0, 1e-5, **options).noise_std_round
    assert cohort_for_noise(1e-9, 100, 50, 4.0, 1e-5) is None


@pytest.mark.parametrize("args,field", [(["--population", "10", "--cohort", "20"], "--cohort"), (["--population", "0", "--cohort", "1"], "--population"),
                                        (["--population", "100", "--cohort", "10", "--mechanism", "tree"], "--mechanism"),
                                        (["--population", "100", "--cohort", "10", "--delta", "2"], "--delta")])
def test_bad_plan_input_is_one_line_naming_the_flag_and_exit_2(capsys, args, field):
    assert main(["plan-dp", "--rounds", "5", "--epsilon", "2", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fedft: error: {field}")


def test_a_noise_cohort_releases_the_planned_cohorts_noise():
    """m = 5 train, noise_cohort_size M = 50: the released mean is current + (Σ clip + σC(m/M)ξ)/m,
    i.e. noise std σC/M per coordinate."""
    current = {"w": np.zeros(3)}
    strategy = CentralDP(FedAvg(fraction_train=1.0, min_available_nodes=0, min_train_nodes=0), noise_multiplier=0.7, clipping_norm=1.0,
                         expected_cohort=5.0, clipping="server_fixed", noise_seed=11, noise_scale=5 / 50)
    from flwr.app import ConfigRecord

    with server_identity():
        list(strategy.configure_train(2, array_record(current), ConfigRecord({}), FakeGrid([1])))
    arrays, _ = strategy.aggregate_train(2, [train_reply({"w": np.array([0.1, 0.0, 0.0])}, node_id=1)])
    xi = noise_generator(11, 2).standard_normal(3)
    assert np.allclose(arrays["w"].numpy(), (np.array([0.1, 0.0, 0.0]) + 0.7 * (5 / 50) * xi) / 5, atol=1e-12)
