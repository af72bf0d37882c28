"""Where a client's accountant history lives between rounds.

Opacus keeps the history in the `PrivacyEngine`'s accountant; a client that
builds a fresh engine each round would start from ε = 0 every round (Opacus
issue 688). fedft saves the history after each round and restores it into the
next round's fresh accountant:

- in the node's Flower `Context.state` (a `ConfigRecord` of three parallel lists),
  which the simulation engine and a SuperNode keep for the whole run;
- and, when `privacy.state_dir` is set, in `<state_dir>/client-<id>.json`
  (`{"history": [[noise_multiplier, sample_rate, steps], ...]}`, kept by the node
  store `fedft.state.node_store`), which outlives the run (a deployment node keeps
  spending the same budget across runs and restarts). The file, when present, is
  the source of truth.

A deployed node (`fedft client`, `fedft launch`: node config `state-dir`) keeps its
history only in `<its state-dir>/client-<id>.json`: it never reads `Context.state`
for it, ignores `privacy.state_dir` (a folder the server would choose), and drops
any `client-state:` records the server sends (`fedft.fl.client.trainers.DPTrainer`,
`fedft.fl.client.app`).
"""

from __future__ import annotations

from typing import cast

from flwr.app import ConfigRecord, RecordDict

from fedft.privacy.accounting import History
from fedft.state.node_store import load_state, save_state

STATE_KEY = "fedft.dp-accountant"


def history_from_state(state: RecordDict) -> History:
    if STATE_KEY not in state:
        return []
    record = state.config_records[STATE_KEY]  # three parallel lists, as history_to_state wrote them
    noise, rates = cast(list[float], record["noise_multipliers"]), cast(list[float], record["sample_rates"])
    steps = cast(list[int], record["steps"])
    return [(float(s), float(q), int(n)) for s, q, n in zip(noise, rates, steps)]


def history_to_state(state: RecordDict, history: History) -> None:
    if not history:
        return
    state[STATE_KEY] = ConfigRecord({
        "noise_multipliers": [float(s) for s, _, _ in history],
        "sample_rates": [float(q) for _, q, _ in history],
        "steps": [int(n) for _, _, n in history],
    })


def _store_name(client_id: int) -> str:
    return f"client-{client_id}"  # the node store's file: <state_dir>/client-<id>.json


def load_history(state: RecordDict, state_dir: str, client_id: int) -> History:
    """The client's history so far: its file if `state_dir` is set and it exists,
    else its `Context.state`."""
    if state_dir:
        saved = load_state(state_dir, _store_name(client_id))
        if saved:
            return [(float(s), float(q), int(n)) for s, q, n in saved["history"]]
    return history_from_state(state)


def save_history(state: RecordDict, state_dir: str, client_id: int, history: History) -> None:
    history_to_state(state, history)
    if state_dir:
        save_state(state_dir, _store_name(client_id), {"history": [list(h) for h in history]})
