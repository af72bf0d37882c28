"""The partition-id handshake: every node's claim is checked; a malformed, out-of-range
or duplicated claim refuses that node (logged, counted), never the run; the server
starts with a quorum (`simulation.min_clients`) and samples only the nodes that joined."""

from __future__ import annotations

from flower_messages import server_identity
from flwr.app import ConfigRecord, Error, Message, Metadata, RecordDict

from fedft.fl.server.nodes import assign, identify_nodes, parse_claim, quorum_out_of_reach
from fedft.fl.server.sampling import sample_clients


def _reply(node: int, identity: dict | None, reply_to: str = "q") -> Message:
    meta = Metadata(run_id=1, message_id=f"r{node}", src_node_id=node, dst_node_id=0, reply_to_message_id=reply_to,
                    group_id="", created_at=0.0, ttl=1e9, message_type="query")
    content = RecordDict({} if identity is None else {"identity": ConfigRecord(identity)})
    return Message(content, metadata=meta)


def test_parse_claim_refuses_malformed_and_out_of_range():
    assert parse_claim(_reply(1, {"partition-id": 3}), 10) == (3, "")
    for identity, needle in [(None, "no 'identity'"), ({"other": 1}, "no 'identity'"), ({"partition-id": "x"}, "not an integer"),
                             ({"partition-id": 2.5}, "not an integer"), ({"partition-id": 99}, "outside 0..9"), ({"partition-id": -1}, "outside 0..9")]:
        claim, why = parse_claim(_reply(1, identity), 10)
        assert claim is None and needle in why, (identity, why)
    err = Message(Error(code=0, reason="boom"), reply_to=_reply(1, None))
    assert parse_claim(err, 10)[0] is None


def test_assign_refuses_every_claimant_of_a_duplicated_id():
    mapping, refused = assign({11: 0, 12: 1, 13: 1, 14: 2})
    assert mapping == {0: 11, 2: 14} and sorted(refused) == [12, 13]


class QueryGrid:
    """A grid whose nodes answer the identity query with a given content (or nothing)."""

    def __init__(self, answers: dict[int, dict | None]) -> None:
        self.answers = answers
        self.pending: dict[str, int] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.answers)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            mid = f"q{msg.metadata.dst_node_id}"
            self.pending[mid] = msg.metadata.dst_node_id
            ids.append(mid)
        return ids

    def pull_messages(self, ids):
        out = [_reply(self.pending[i], self.answers[self.pending[i]], reply_to=i) for i in ids if i in self.pending]
        self.pending.clear()
        return out


def test_bad_claims_refuse_nodes_not_the_run_and_a_quorum_starts_it(caplog):
    answers = {101: {"partition-id": 0}, 102: {"partition-id": 1}, 103: {"partition-id": 1}, 104: {"partition-id": 99},
               105: None, 106: {"partition-id": "seven"}, 107: {"partition-id": 4}}
    refused: dict[int, str] = {}
    with server_identity():
        mapping = identify_nodes(QueryGrid(answers), num_clients=10, timeout=5.0, min_clients=2, refused=refused)
    assert mapping == {0: 101, 4: 107}  # 1 claimed twice: both refused
    assert sorted(refused) == [102, 103, 104, 105, 106]
    unavailable = frozenset(c for c in range(10) if c not in mapping)
    assert sample_clients(0, 1, 10, 10, exclude=unavailable) == [0, 4]  # only nodes that joined are sampled


def test_too_few_valid_claims_is_one_error():
    import pytest

    from fedft.errors import FedftError

    with server_identity(), pytest.raises(FedftError) as err:
        identify_nodes(QueryGrid({1: {"partition-id": 0}, 2: {"partition-id": 0}}), num_clients=3, timeout=1.0, min_clients=2)
    assert err.value.field == "simulation.min_clients" and "within 1 s" in err.value.problem  # no list: any node may still join


def test_too_few_connected_nodes_is_one_error():
    import pytest

    from fedft.errors import FedftError

    with server_identity(), pytest.raises(FedftError) as err:
        identify_nodes(QueryGrid({1: {"partition-id": 0}}), num_clients=3, timeout=0.5)
    assert err.value.field == "partition.num_clients" and "only 1 of 3 client nodes connected within" in err.value.problem


def test_a_registered_key_cannot_claim_another_clients_id():
    answers = {101: {"partition-id": 0}, 102: {"partition-id": 0}, 103: {"partition-id": 2}}
    refused: dict[int, str] = {}
    with server_identity():
        mapping = identify_nodes(QueryGrid(answers), num_clients=3, timeout=1.0, min_clients=1, refused=refused, bound={101: 0, 102: 1})
    assert mapping == {0: 101}
    assert "listed for 1" in refused[102] and "not in the operator's list" in refused[103]


def test_quorum_is_out_of_reach_only_when_the_listed_nodes_cannot_make_it():
    listed = {101: 0, 102: 1, 103: 2}
    # valid claims + listed nodes not yet asked < quorum  <=>  decided
    assert quorum_out_of_reach(1, 3, listed, {101, 102})  # 1 + 1 < 3
    assert not quorum_out_of_reach(1, 2, listed, {101, 102})  # 1 + 1 = 2: 103 may still make it
    assert not quorum_out_of_reach(1, 3, listed, {101})  # 1 + 2 = 3
    assert quorum_out_of_reach(0, 1, {}, set())  # an empty list: nobody can ever claim
    assert quorum_out_of_reach(2, 3, listed, {101, 102, 103, 999})  # an unlisted node asked changes nothing
    assert not quorum_out_of_reach(0, 3, None, {101, 102, 103})  # no list: any node may still join


def test_listed_nodes_all_answered_ends_the_wait_before_the_timeout():
    """A's key is listed for 0, B's for 1; B claims 0: refused. No other listed node can
    come, so the server fails now with one error, not after round_timeout."""
    import time

    import pytest

    from fedft.errors import FedftError

    answers = {101: {"partition-id": 0}, 102: {"partition-id": 0}}
    t0 = time.monotonic()
    with server_identity(), pytest.raises(FedftError) as err:
        identify_nodes(QueryGrid(answers), num_clients=2, timeout=60.0, bound={101: 0, 102: 1})
    assert err.value.field == "simulation.min_clients"
    assert "only 1 of 2 client nodes gave a valid partition id (every listed client has answered; 1 refused" in err.value.problem
    assert time.monotonic() - t0 < 30.0  # decided, not timed out (60 s)
