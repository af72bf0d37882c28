"""Reply validation: each kind of bad reply is dropped with a reason, good ones pass."""

import logging

import numpy as np
import pytest
from flower_messages import array_record, train_reply

from fedft.fl.server.validation import check_reply, conform, schema_of, screen_replies

GOOD = {"w": np.ones((2, 3), dtype=np.float32), "b": np.asarray(0.5, dtype=np.float32)}
SCHEMA = schema_of(array_record(GOOD))


def test_good_reply_passes():
    assert check_reply(train_reply(GOOD), SCHEMA) is None


@pytest.mark.parametrize(
    "layers,needle",
    [
        ({**GOOD, "w": np.full((2, 3), np.nan, dtype=np.float32)}, "NaN or Inf"),
        ({**GOOD, "b": np.asarray(np.inf, dtype=np.float32)}, "NaN or Inf"),
        ({**GOOD, "w": np.ones((3, 2), dtype=np.float32)}, "shape (3, 2)"),
        ({**GOOD, "w": np.ones((2, 3), dtype=np.float64)}, "dtype float64"),
        ({"w": GOOD["w"]}, "missing ['b']"),
        ({**GOOD, "extra": np.ones(1, dtype=np.float32)}, "unexpected ['extra']"),
    ],
    ids=["nan", "inf", "shape", "dtype", "missing-key", "extra-key"],
)
def test_bad_arrays_are_named(layers, needle):
    reason = check_reply(train_reply(layers), SCHEMA)
    assert reason is not None and needle in reason


@pytest.mark.parametrize("weight", [0.0, -3.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_num_examples(weight):
    assert "num-examples" in check_reply(train_reply(GOOD, num_examples=weight), SCHEMA)


def test_nan_metric_and_wrong_record_structure():
    assert "train_loss" in check_reply(train_reply(GOOD, metrics={"train_loss": float("nan")}), SCHEMA)
    assert "ArrayRecords" in check_reply(train_reply(GOOD, extra_arrays={"sneaky": GOOD}), SCHEMA)
    assert check_reply(train_reply(GOOD, extra_arrays={"scaffold-dc": GOOD}), SCHEMA, ("arrays", "scaffold-dc")) is None
    assert "ArrayRecords" in check_reply(train_reply(GOOD), SCHEMA, ("arrays", "scaffold-dc"))


def test_screen_logs_node_and_keeps_majority_metric_keys(caplog):
    # Prepare: two good replies, one NaN, one with an extra metric key (would stop Flower's aggregation)
    replies = [
        train_reply(GOOD, node_id=11),
        train_reply({**GOOD, "b": np.asarray(np.nan, dtype=np.float32)}, node_id=12),
        train_reply(GOOD, node_id=13),
        train_reply(GOOD, node_id=14, metrics={"surprise": 1.0}),
    ]
    # Execute
    with caplog.at_level(logging.WARNING, logger="fedft"):
        accepted, rejected = screen_replies(replies, SCHEMA, server_round=3)
    # Assert
    assert [m.metadata.src_node_id for m in accepted] == [11, 13]
    assert sorted(m.metadata.src_node_id for m, _ in rejected) == [12, 14]
    assert "round 3" in caplog.text and "node 12" in caplog.text and "NaN" in caplog.text and "node 14" in caplog.text


def test_conform_restores_the_model_dtype():
    wide = array_record({k: v.astype(np.float64) for k, v in GOOD.items()})
    back = conform(wide, SCHEMA)
    assert schema_of(back) == SCHEMA
    with pytest.raises(RuntimeError):
        conform(array_record({"w": GOOD["w"]}), SCHEMA)
