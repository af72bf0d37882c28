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
from fedft.privacy.central import UNIFORM_WEIGHT


def central_dp_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """ClientApp mod for central DP: with client-side clipping, runs Flower's
    `fixedclipping_mod` / `adaptiveclipping_mod` around the training; in any
    central mode adds the uniform aggregation weight to the reply. A no-op when
    the run is not central DP."""
    config = msg.content.config_records.get(p.CONFIG)
    if config is None or p.CONFIG_JSON not in config:
        return call_next(msg, ctxt)
    pc = run_context(str(config[p.CONFIG_JSON])).cfg.privacy
    if pc.mode != "central":
        return call_next(msg, ctxt)
    if pc.clipping == "client_fixed":
        reply = fixedclipping_mod(msg, ctxt, call_next)
    elif pc.clipping == "client_adaptive":
        reply = adaptiveclipping_mod(msg, ctxt, call_next)
    else:
        reply = call_next(msg, ctxt)
    if not reply.has_error():
        for record in reply.content.metric_records.values():
            record[UNIFORM_WEIGHT] = 1.0
    return reply
