"""The server's privacy trackers on hand-made replies, without Ray: metrics.csv columns,
summary.json keys, and the run checkpoint's "privacy" section."""

import math

import numpy as np
import pytest
from flwr.app import Error, Message

from fedft.config import validate
from fedft.privacy.accounting import CENTRAL_RDP_ORDERS as O
from fedft.privacy.accounting import epsilon
from fedft.privacy.central_tracker import CentralDPTracker
from fedft.privacy.disclosure import outside_epsilon
from fedft.privacy.local_tracker import LocalDPTracker
from fedft.privacy.tracker import NoPrivacy, privacy_tracker
from flower_messages import RecordDict, train_instruction, train_reply

CLIENT_OF = {100 + c: c for c in range(5)}  # node id -> client id
PLAIN_KEYS = ["spent", "eps", "steps", "noise", "rate", "releases", "clipping_norm", "history", "reported", "joined_rounds"]  # what checkpoints hold, every mode


def _cfg(**privacy):
    privacy = {"accountant": "rdp", **privacy} if privacy.get("mode", "none") != "none" else privacy  # rdp: the references below are RDP accountants
    return validate({"partition": {"num_clients": 5}, "simulation": {"rounds": 4, "clients_per_round": 2}, "privacy": privacy})


def _local_reply(client: int, eps: float, steps: int, sigma: float = 1.1, q: float = 0.1, spent: float = 0.0, policy: float = 0.0) -> Message:
    metrics = {"epsilon": eps, "dp_steps": float(steps), "noise_multiplier": sigma, "sample_rate": q, "budget_spent": spent, "policy_refused": policy}
    return train_reply({"w": np.zeros(2)}, node_id=100 + client, metrics=metrics)


def _opacus_epsilon(accountant: str, sigma: float, q: float, steps: int, delta: float = 1e-5) -> float:
    """Opacus' own accountant holding the history: the reference for epsilon_rdp / epsilon_prv."""
    from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant

    acc = {"rdp": RDPAccountant, "prv": PRVAccountant, "gdp": GaussianAccountant}[accountant]()
    acc.history = [(sigma, q, steps)]
    return acc.get_epsilon(delta)


def _failed_reply(client: int) -> Message:
    return Message(Error(code=1, reason="boom"), reply_to=train_instruction(RecordDict(), node_id=100 + client))


class _AdaptiveWrapper:
    """What an adaptive-clipping Flower wrapper shows the tracker: its current norm."""

    def __init__(self, clipping_norm: float) -> None:
        self.clipping_norm = clipping_norm


def _round(tracker, replies, released=True, strategy=None):
    tracker.begin_round(strategy if strategy is not None else object())
    ok = [m for m in replies if not m.has_error()]
    kept, refused = tracker.split(ok, CLIENT_OF)
    return kept, refused, tracker.end_round(ok, CLIENT_OF, refused, released)


@pytest.mark.parametrize("mode,kind", [("none", NoPrivacy), ("local", LocalDPTracker), ("central", CentralDPTracker)])
def test_factory_picks_the_tracker_of_the_mode(mode, kind):
    privacy = {} if mode == "none" else {"mode": mode, "noise_multiplier": 1.0}
    assert type(privacy_tracker(_cfg(**privacy))) is kind


def test_no_privacy_has_no_columns_and_excludes_nobody():
    tracker = privacy_tracker(_cfg())
    replies = [_local_reply(1, 0.5, 10, spent=1.0)]
    kept, refused, columns = _round(tracker, replies)
    assert kept == replies and refused == [] and columns == {}
    assert tracker.exclude == frozenset()
    assert tracker.summary() == {"privacy_mode": "none", "epsilon": None}


def test_local_columns_and_summary_follow_the_clients_reports():
    tracker = privacy_tracker(_cfg(mode="local", noise_multiplier=1.1, max_grad_norm=0.7))
    assert tracker.summary()["epsilon"] == 0.0 and tracker.summary()["noise_multiplier"] == 1.1  # before any report

    _, _, columns = _round(tracker, [_local_reply(1, 0.5, 10, sigma=1.1), _local_reply(3, 0.7, 12, sigma=1.2), _failed_reply(4)])
    assert columns == {"epsilon": 0.7, "epsilon_mean": (0.5 + 0.7) / 5, "delta": 1e-5, "noise_multiplier": 1.1,
                       "clipping_norm": 0.7, "clients_refused_budget": 0, "privacy_unit": "record", "neighbouring": "add/remove"}

    out_of_budget = _local_reply(3, 1.2, 24, sigma=1.2, spent=1.0, policy=1.0)  # a deployed client's own policy refused
    trains = _local_reply(2, 0.3, 5, sigma=1.0, q=0.2)
    kept, refused, columns = _round(tracker, [out_of_budget, trains])
    assert kept == [trains] and refused == [3]  # the refusal is not aggregated
    assert tracker.exclude == frozenset({3})  # nor sampled again
    assert columns["epsilon"] == 1.2 and columns["epsilon_mean"] == pytest.approx((0.5 + 0.3 + 1.2) / 5)
    assert columns["noise_multiplier"] == 1.0 and columns["clients_refused_budget"] == 1  # only clients that trained count

    _, _, columns = _round(tracker, [_local_reply(0, 1.2, 20)])
    summary = tracker.summary()
    assert summary == {
        "privacy_mode": "local", "privacy_unit": "record", "neighbouring": "add/remove", "delta": 1e-5, "accountant": "rdp", "epsilon": 1.2,
        "epsilon_rdp": pytest.approx(_opacus_epsilon("rdp", 1.1, 0.1, 20)), "epsilon_prv": pytest.approx(_opacus_epsilon("prv", 1.1, 0.1, 20), abs=0.02),
        "epsilon_pld": pytest.approx(_opacus_epsilon("prv", 1.1, 0.1, 20), abs=0.02),  # PLD (dp-accounting) against Opacus' PRV
        "noise_multiplier": 1.1,
        "epsilon_gdp": pytest.approx(_opacus_epsilon("gdp", 1.1, 0.1, 20)),
        "max_grad_norm": 0.7, "sample_rate": 0.1, "steps_max": 24, "epsilon_client": 0, "epsilon_client_steps": 20,
        "epsilon_client_history": [[1.1, 0.1, 20]],
        "epsilon_mean": pytest.approx((1.2 + 0.5 + 0.3 + 1.2) / 5), "clients_budget_spent": [3],
        "clients_refused_policy": [3], "noise_source": "os", "client_metrics": "withheld",
        "private": True, "not_private_because": None, "outside_epsilon": outside_epsilon("local", "withheld"),
        "epsilon_per_client": {"0": 1.2, "1": 0.5, "2": 0.3, "3": 1.2},
    }  # clients 0 and 3 tie at the largest ε: the lower id is named
    assert list(summary) == list(LocalDPTracker(1e-5, "rdp", 5, 0.7, None).summary())  # one key order, before and after reports


def test_local_round_without_reports_has_nan_noise():
    tracker = privacy_tracker(_cfg(mode="local", noise_multiplier=1.1))
    _, _, columns = _round(tracker, [train_reply({"w": np.zeros(2)}, node_id=101)])
    assert columns["epsilon"] == 0.0 and math.isnan(columns["noise_multiplier"])


def test_central_epsilon_counts_released_rounds():
    tracker = privacy_tracker(_cfg(mode="central", noise_multiplier=0.9, accountant="prv", clipping="server_adaptive", clipping_norm=2.0))
    q = 2 / 5  # clients_per_round / num_clients
    replies = [_local_reply(1, 0.5, 10, spent=1.0)]  # central ignores local-DP metrics
    kept, refused, columns = _round(tracker, replies, strategy=_AdaptiveWrapper(0.8))
    assert kept == replies and refused == [] and tracker.exclude == frozenset()
    assert columns == {"epsilon": epsilon([(0.9, q, 1)], 1e-5, "prv", O), "delta": 1e-5, "noise_multiplier": 0.9,
                       "clipping_norm": 0.8, "clients_refused_budget": 0, "privacy_unit": "user", "neighbouring": "add/remove"}

    _, _, columns = _round(tracker, [], released=False)  # a skipped round releases nothing
    assert columns["epsilon"] == epsilon([(0.9, q, 1)], 1e-5, "prv", O)
    assert columns["clipping_norm"] == 2.0  # a strategy without a moving norm: the configured one
    _round(tracker, [], strategy=_AdaptiveWrapper(1.5))
    assert tracker.summary() == {
        "privacy_mode": "central", "delta": 1e-5, "accountant": "prv", "epsilon": epsilon([(0.9, q, 2)], 1e-5, "prv", O),
        "epsilon_rdp": epsilon([(0.9, q, 2)], 1e-5, "rdp", O), "epsilon_prv": epsilon([(0.9, q, 2)], 1e-5, "prv"),
        "epsilon_pld": pytest.approx(epsilon([(0.9, q, 2)], 1e-5, "prv"), abs=0.02),
        "epsilon_gdp": pytest.approx(_opacus_epsilon("gdp", 0.9, q, 2)),
        "privacy_unit": "user", "neighbouring": "add/remove", "client_sampling": "poisson", "expected_cohort": 2.0, "noise_source": "os",
        "client_metrics": "withheld", "private": True, "not_private_because": None, "outside_epsilon": outside_epsilon("central", "withheld", "poisson"),
        "noise_multiplier": 0.9, "max_grad_norm": None, "clipping": "server_adaptive", "clipping_norm": 1.5,
        "sample_rate": q, "releases": 2, "noise_mechanism": "independent",
    }


def test_central_noise_is_calibrated_to_the_target_and_unbounded_epsilon_is_written_as_inf():
    calibrated = privacy_tracker(_cfg(mode="central", target_epsilon=5.0))
    for _ in range(4):
        _round(calibrated, [])
    assert 0 < calibrated.summary()["epsilon"] <= 5.0
    noiseless = privacy_tracker(_cfg(mode="central", noise_multiplier=0.0))
    _round(noiseless, [])
    assert noiseless.summary()["epsilon"] == "inf"


def test_every_mode_checkpoints_the_same_section_shape():
    for privacy in ({}, {"mode": "local", "noise_multiplier": 1.0}, {"mode": "central", "noise_multiplier": 1.0}):
        assert list(privacy_tracker(_cfg(**privacy)).to_plain()) == PLAIN_KEYS


@pytest.mark.parametrize("privacy", [{}, {"mode": "local", "noise_multiplier": 1.1},
                                     {"mode": "central", "noise_multiplier": 0.9, "clipping": "client_adaptive"}])
def test_a_resumed_tracker_reports_what_the_checkpointed_one_did(privacy):
    tracker = privacy_tracker(_cfg(**privacy))
    _round(tracker, [_local_reply(1, 0.5, 10), _local_reply(3, 1.2, 24, spent=1.0)], strategy=_AdaptiveWrapper(0.6))
    _round(tracker, [_local_reply(2, 0.3, 5)], released=False)
    resumed = privacy_tracker(_cfg(**privacy))
    resumed.load_plain(tracker.to_plain())
    assert resumed.summary() == tracker.summary()
    assert resumed.exclude == tracker.exclude
    assert repr(resumed.to_plain()) == repr(tracker.to_plain())  # repr: NaN != NaN
    step = [_local_reply(4, 0.9, 15)]
    assert repr(_round(resumed, step)[2]) == repr(_round(tracker, step)[2])


def test_a_checkpoint_section_of_the_earlier_tracker_resumes():
    written = {"spent": [3], "eps": {"1": 0.5, "3": 1.2}, "steps": {"1": 10, "3": 24}, "noise": {"1": 1.1, "3": 1.2},
               "rate": {"1": 0.1, "3": 0.1}, "releases": 0, "clipping_norm": float("nan")}
    local = privacy_tracker(_cfg(mode="local", noise_multiplier=1.1))
    local.load_plain(written)
    assert local.exclude == frozenset({3}) and local.summary()["epsilon_client"] == 3
    plain = local.to_plain()
    assert repr({k: plain[k] for k in written}) == repr(written)
    assert plain["history"] == {"1": [[1.1, 0.1, 10]], "3": [[1.2, 0.1, 24]]} and plain["reported"] == {"1": 10, "3": 24}  # one entry per client
    central = privacy_tracker(_cfg(mode="central", noise_multiplier=0.9))
    central.load_plain({**written, "spent": [], "eps": {}, "steps": {}, "noise": {}, "rate": {}, "releases": 3, "clipping_norm": 0.7})
    assert central.summary()["releases"] == 3 and central.summary()["clipping_norm"] == 0.7


def _dp_accounting_rdp(history, delta=1e-5):
    """Google's dp-accounting on a whole history, at Opacus' default RDP orders."""
    import dp_accounting as dpa
    from dp_accounting.rdp import rdp_privacy_accountant
    from opacus.accountants.rdp import RDPAccountant

    acc = rdp_privacy_accountant.RdpAccountant(orders=list(RDPAccountant.DEFAULT_ALPHAS))
    for sigma, q, steps in history:
        acc.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps))
    return acc.get_epsilon(delta)


def test_a_client_whose_accountant_was_reset_is_counted_from_the_servers_history(caplog):
    """A client that lost its history (a resume without its state) reports dp_steps that fall.
    The server composes the new steps onto what it counted: ε never goes down, it is the whole
    history's (checked against dp-accounting), and past target_epsilon the client is excluded."""
    tracker = privacy_tracker(_cfg(mode="local", noise_multiplier=1.1, target_epsilon=5.0))
    _round(tracker, [_local_reply(1, epsilon([(1.1, 0.1, 20)], 1e-5), 20)])
    _round(tracker, [_local_reply(1, epsilon([(1.1, 0.1, 40)], 1e-5), 40)])
    before = tracker.summary()["epsilon"]
    assert tracker.exclude == frozenset()
    with caplog.at_level("WARNING", logger="fedft"):
        _, _, columns = _round(tracker, [_local_reply(1, epsilon([(1.1, 0.1, 20)], 1e-5), 20)])  # reset: 20 steps from scratch
    assert "was reset" in caplog.text
    whole = _dp_accounting_rdp([(1.1, 0.1, 60)])
    assert columns["epsilon"] > before and columns["epsilon"] == pytest.approx(whole, rel=0.02)  # dp-accounting's orders' bound differs by < 2%
    summary = tracker.summary()
    assert summary["epsilon_client_steps"] == 60 and summary["epsilon_client_history"] == [[1.1, 0.1, 60]]
    assert whole > 5.0 and tracker.exclude == frozenset({1})  # the server's count is past the budget: sampled no more
    # a report that goes down without a reset (steps unchanged) is not believed either
    _round(tracker, [_local_reply(1, 0.01, 20)])
    assert tracker.summary()["epsilon"] >= columns["epsilon"]


def test_epsilon_rdp_and_prv_come_from_the_whole_history_not_its_last_entry():
    """A client trained at σ = 1.1 for 20 steps, then at σ = 0.8 (another q) for 10: summary.json's
    epsilon_rdp is the composition of both (dp-accounting), not the last (σ, q, steps) alone."""
    tracker = privacy_tracker(_cfg(mode="local", noise_multiplier=1.1))
    _round(tracker, [_local_reply(2, epsilon([(1.1, 0.1, 20)], 1e-5), 20, sigma=1.1, q=0.1)])
    history = [(1.1, 0.1, 20), (0.8, 0.2, 10)]
    _round(tracker, [_local_reply(2, epsilon(history, 1e-5), 30, sigma=0.8, q=0.2)])
    summary = tracker.summary()
    assert summary["epsilon_client_history"] == [list(h) for h in history]
    assert summary["epsilon_rdp"] == pytest.approx(_dp_accounting_rdp(history), rel=0.02)
    single = epsilon([(0.8, 0.2, 30)], 1e-5)  # what one entry of (last σ, last q, all steps) gave before
    assert abs(summary["epsilon_rdp"] - single) > 0.1 * single
    assert summary["epsilon_gdp"] is None  # GDP needs one (σ, q): no approximation to show
    resumed = privacy_tracker(_cfg(mode="local", noise_multiplier=1.1))
    resumed.load_plain(tracker.to_plain())
    assert resumed.summary() == summary
