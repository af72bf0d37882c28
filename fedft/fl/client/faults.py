"""Injected client faults (`[faults]`): dropouts, crashes and stragglers for studies.

Which fault a client suffers in a round is a pure function of (seed, round, client
id), like sampling and data order, so a rerun or a resumed run replays exactly the
same faults, and a test can compute the expected counts without running anything.

What the server sees, and why it is faithful to a real deployment:

- dropout: the client goes offline for the round. In Flower's deployment runtime
  the SuperLink answers the pending message of a node that stopped heart-beating
  with an error reply, `ErrorCode.NODE_UNAVAILABLE`; a dropped client here answers
  with that same error at once (the one difference: the reply's source is the
  node, not the SuperLink). Counted in `clients_dropped`.
- crash: the ClientApp raises after its local training, before replying, so the
  work is lost; Flower turns the exception into an error reply
  (`CLIENT_APP_RAISED_EXCEPTION`), exactly as for a real bug. Counted in
  `clients_failed`.
- straggler: the client sleeps `straggler_delay` seconds before training. If its
  reply misses `simulation.round_timeout`, the round goes on without it and it is
  counted in `clients_timed_out` (the late reply is ignored).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from flwr.app import Error, Message
from flwr.common.constant import ErrorCode

from fedft.config import FaultsConfig

NONE, DROPOUT, CRASH, STRAGGLER = "none", "dropout", "crash", "straggler"
CRASH_MARKER = "fedft injected crash"  # engine.py keeps these expected tracebacks out of the console
DROPOUT_REASON = "fedft injected dropout: the node went offline for this round"


class InjectedCrash(RuntimeError):
    """Raised by a client told to crash this round (`faults.crash_probability`)."""


def fault_for(faults: FaultsConfig, seed: int, server_round: int, client_id: int) -> str:
    """The fault of `client_id` in `server_round`: one uniform draw u from
    (seed, round, client) picks dropout if u < p_d, crash if u < p_d + p_c,
    straggler if u < p_d + p_c + p_s, else none; so each has exactly its probability."""
    p_drop, p_crash, p_strag = faults.dropout_probability, faults.crash_probability, faults.straggler_probability
    if p_drop == p_crash == p_strag == 0.0:
        return NONE
    u = float(np.random.default_rng([seed, server_round, client_id, 0xFA17]).random())
    if u < p_drop:
        return DROPOUT
    if u < p_drop + p_crash:
        return CRASH
    if u < p_drop + p_crash + p_strag:
        return STRAGGLER
    return NONE


@dataclass(frozen=True)
class Injection:
    """One client's fault for one round, applied around its local work."""

    kind: str
    seed: int
    server_round: int
    client_id: int
    straggler_delay: float = 0.0

    def reply_instead(self, msg: Message) -> Message | None:
        """For a dropout, the error reply a vanished node gets; otherwise None. A
        straggler sleeps here, before its work."""
        if self.kind == DROPOUT:
            return Message(Error(code=ErrorCode.NODE_UNAVAILABLE, reason=DROPOUT_REASON), reply_to=msg)
        if self.kind == STRAGGLER:
            time.sleep(self.straggler_delay)
        return None

    def after_training(self) -> None:
        """A crashing client raises here, after its local work and before its reply."""
        if self.kind == CRASH:
            raise InjectedCrash(f"{CRASH_MARKER}: client {self.client_id} in round {self.server_round} (faults.crash_probability, seed {self.seed})")


def injection_for(faults: FaultsConfig, seed: int, server_round: int, client_id: int) -> Injection:
    return Injection(fault_for(faults, seed, server_round, client_id), seed, server_round, client_id, faults.straggler_delay)


def expected_counts(faults: FaultsConfig, seed: int, server_round: int, clients: list[int]) -> dict[str, int]:
    """How many of `clients` get each fault in `server_round` (for tests and studies)."""
    counts = {NONE: 0, DROPOUT: 0, CRASH: 0, STRAGGLER: 0}
    for c in clients:
        counts[fault_for(faults, seed, server_round, c)] += 1
    return counts
