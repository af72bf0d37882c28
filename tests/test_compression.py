"""Compressed updates (fedft/fl/compression.py): the bytes, the error bounds, error
feedback's telescoping sum, and hostile encodings refused."""

from __future__ import annotations

import math

import pytest
import torch

from fedft.fl.compression import compress, decode, encode, encoded_bytes


def _update(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(8, 1, 3, 3, generator=g), "fc.bias": torch.randn(10, generator=g)}


def _shapes(u):
    return {k: tuple(v.shape) for k, v in u.items()}


def test_int8_is_one_byte_an_entry_within_one_step_and_unbiased():
    u = _update()
    wire = encode(u, "int8", 0.0, torch.Generator().manual_seed(1))
    assert sum(v.numel() * v.element_size() for v in wire.values()) == encoded_bytes(_shapes(u), "int8", 0.0) == 72 + 4 + 10 + 4
    step = {k: float(v.abs().max()) / 127 for k, v in u.items()}
    back = decode(wire, _shapes(u), "int8", 0.0)
    for k in u:
        assert float((back[k] - u[k]).abs().max()) <= step[k] * (1 + 1e-6)  # stochastic rounding moves at most one step
    g = torch.Generator().manual_seed(2)
    mean = sum(decode(encode(u, "int8", 0.0, g), _shapes(u), "int8", 0.0)["fc.bias"] for _ in range(4000)) / 4000
    # E[decode] = u: the mean of 4,000 draws, each within a step, is within 0.1 step (floor rounding would be up to 1 step off)
    assert float((mean - u["fc.bias"]).abs().max()) < 0.1 * step["fc.bias"]


def test_topk_keeps_the_largest_entries_of_each_tensor():
    u = {"w": torch.tensor([0.1, -5.0, 0.2, 3.0, -0.3, 0.0, 1.0, 0.05, -2.0, 0.4])}
    back = decode(encode(u, "topk", 0.3), _shapes(u), "topk", 0.3)  # k = ceil(0.3 x 10) = 3
    assert back["w"].tolist() == [0.0, -5.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, -2.0, 0.0]
    assert encoded_bytes(_shapes(u), "topk", 0.3) == 3 * 12


def test_error_feedback_sends_everything_eventually():
    """With e_0 = 0 and e_t = (u_t + e_{t-1}) - sent_t: sum(sent) = sum(u) - e_T exactly."""
    residual, total_sent, total = None, torch.zeros(10), torch.zeros(10)
    for t in range(20):
        u = {"w": _update(t)["fc.bias"]}
        wire, residual = compress(u, residual, "topk", 0.2, True)
        total_sent += decode(wire, {"w": (10,)}, "topk", 0.2)["w"]
        total += u["w"]
    torch.testing.assert_close(total_sent + residual["w"], total, rtol=0, atol=1e-5)
    _, none = compress(u, None, "topk", 0.2, False)
    assert none is None


@pytest.mark.parametrize("damage, needle", [
    (lambda w: w.pop("fc.bias|scale"), "do not match"),
    (lambda w: w.update({"fc.bias|q": torch.zeros(11, dtype=torch.int8)}), "int8 entries of shape (10,)"),
    (lambda w: w.update({"fc.bias|q": torch.zeros(10, dtype=torch.int16)}), "int8 entries"),
    (lambda w: w.update({"fc.bias|scale": torch.tensor([math.inf])}), "finite float32 scale"),
])
def test_a_hostile_int8_update_is_refused_with_what_is_wrong(damage, needle):
    u = _update()
    wire = encode(u, "int8", 0.0)
    damage(wire)
    with pytest.raises(ValueError, match=None) as caught:
        decode(wire, _shapes(u), "int8", 0.0)
    assert needle in str(caught.value)


@pytest.mark.parametrize("index, value, needle", [
    ([0, 99], [1.0, 1.0], "in [0, 10)"),
    ([-1, 2], [1.0, 1.0], "in [0, 10)"),
    ([3, 3], [1.0, 1.0], "distinct"),
    ([0, 1, 2, 3], [1.0] * 4, "at most 3"),
    ([0, 1], [math.nan, 1.0], "values finite"),
])
def test_a_hostile_topk_update_is_refused_with_what_is_wrong(index, value, needle):
    wire = {"w|index": torch.tensor(index, dtype=torch.int64), "w|value": torch.tensor(value, dtype=torch.float32)}
    with pytest.raises(ValueError) as caught:
        decode(wire, {"w": (10,)}, "topk", 0.3)
    assert needle in str(caught.value)


def test_the_server_decodes_a_reply_against_what_it_sent_and_rejects_a_hostile_one():
    """Prepare two replies to the same global arrays, one honest (int8) and one whose indices
    point outside the tensor; Execute the server's decoding; Assert the honest one is the
    global plus its decoded update, the other is rejected with the reason."""
    from flwr.app import ArrayRecord, MetricRecord, RecordDict

    from fedft.fl import protocol as p
    from fedft.fl.compression import COMPRESSED
    from fedft.fl.server.decompress import decode_replies
    from flower_messages import train_reply

    sent = ArrayRecord({"w": torch.tensor([1.0, 2.0, 3.0, 4.0])})
    honest = train_reply({"w": torch.zeros(4).numpy()}, node_id=1)
    honest.content = RecordDict({COMPRESSED: ArrayRecord(encode({"w": torch.tensor([0.5, -0.5, 0.0, 0.25])}, "topk", 0.5)),
                                 p.METRICS: MetricRecord({"num-examples": 1.0})})
    hostile = train_reply({"w": torch.zeros(4).numpy()}, node_id=2)
    hostile.content = RecordDict({COMPRESSED: ArrayRecord({"w|index": torch.tensor([0, 9]), "w|value": torch.tensor([1.0, 1.0])}),
                                  p.METRICS: MetricRecord({"num-examples": 1.0})})
    ok, rejected = decode_replies([honest, hostile], lambda m: sent, "topk", 0.5, lambda m: f"node {m.metadata.src_node_id}", 1)
    assert ok == [honest] and COMPRESSED not in honest.content
    assert honest.content.array_records[p.ARRAYS].to_torch_state_dict()["w"].tolist() == [1.5, 1.5, 3.0, 4.0]  # top-2 of |u|: 0.5 and -0.5
    assert [(m, reason) for m, reason in rejected] == [(hostile, "compressed update: 'w': indices must be distinct and in [0, 4), values finite")]
