"""Central DP on the client: the ClientApp mod around training.

The server side (wrapped strategy, noise, accounting) is `fedft.privacy.central`;
this is the client's part of it, Flower glue like `fedft.fl.client.app`.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable

from fedft.fl import protocol as p
from fedft.fl.context import run_context


def central_dp_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """ClientApp mod for central DP: with client-side clipping, runs Flower's
    `fixedclipping_mod` / `adaptiveclipping_mod` around the training (the server
    sends the norm in force and clips again). A no-op otherwise."""
    config = msg.content.config_records.get(p.CONFIG)
    if config is None or p.CONFIG_JSON not in config:
        return call_next(msg, ctxt)
    pc = run_context(str(config[p.CONFIG_JSON])).cfg.privacy
    if pc.mode != "central":
        return call_next(msg, ctxt)
    if pc.clipping == "client_fixed":
        return fixedclipping_mod(msg, ctxt, call_next)
    if pc.clipping == "client_adaptive":
        return adaptiveclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)
