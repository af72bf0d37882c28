"""Flower's SecAgg+ on the client: Flower's own `secaggplus_mod` around fedft's `train`.

With `deploy.secure_aggregation`, the server's SecAggPlusWorkflow (fedft.fl.server.secaggplus)
sends four TRAIN messages per round, each with a `secaggplus_configs` record. Flower's
`secaggplus_mod` answers three of them itself (setup: key pairs; share keys: secret
shares; unmask: the shares the server asks for); in the third, `collect_masked_vectors`,
it calls the ClientApp with a legacy FitIns, then quantises, masks and sends the
FitRes's parameters. This module only translates that call, with no cryptography of
its own: FitIns -> fedft's train message (the arrays named by `ARRAY_KEYS`), and fedft's
reply -> a FitRes whose parameters are the update (trained minus received arrays) and
whose num-examples and metrics travel, as in Flower, in the clear beside the masked vector.
A train message without that record goes to `train` untouched.
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, bytes_to_ndarray, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

from fedft.fl import protocol as p

ARRAY_KEYS = "fedft-array-keys"  # FitIns.config: the arrays' names as a JSON list, in the order of the parameters
SCALARS = (bool, int, float, str, bytes)  # what a legacy FitRes's metrics may hold


class SecAggPlusRefused(RuntimeError):
    """The wrapped `train` replied with an error: this node drops out of the round (its masks are rebuilt from shares)."""


def secaggplus_train_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's `secaggplus_mod` for SecAgg+ messages; any other message passes straight on."""
    if RECORD_KEY_CONFIGS not in msg.content.config_records:
        return call_next(msg, context)
    return secaggplus_mod(msg, context, lambda m, c: _as_fitres(m, call_next(_as_train(m), c)))


def _as_train(msg: Message) -> Message:
    """The FitIns of `collect_masked_vectors` as the train message fedft's strategies send."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config = dict(fitins.config)
    keys = json.loads(str(config.pop(ARRAY_KEYS)))
    arrays = ArrayRecord({k: Array(bytes_to_ndarray(t)) for k, t in zip(keys, fitins.parameters.tensors, strict=True)})
    content = RecordDict({p.ARRAYS: arrays, p.CONFIG: ConfigRecord(config)})  # type: ignore[arg-type]  # Scalar values are ConfigRecord values
    return Message(content=content, metadata=msg.metadata)  # type: ignore[call-overload]  # Flower's own internal form


def _as_fitres(msg: Message, reply: Message) -> Message:
    """fedft's train reply as a legacy FitRes carrying the update, in the FitIns's array order.
    Only the update, num-examples and scalar metrics go: client-state records, if any, stay here."""
    if reply.has_error():
        raise SecAggPlusRefused(reply.error.reason)
    keys = json.loads(str(msg.content.config_records["fitins.config"][ARRAY_KEYS]))
    sent = msg.content.array_records["fitins.parameters"]
    trained = reply.content.array_records[p.ARRAYS]
    update = [np.asarray(trained[k].numpy(), np.float64) - bytes_to_ndarray(sent[str(i)].data).astype(np.float64) for i, k in enumerate(keys)]
    metrics = reply.content.metric_records[p.METRICS]
    fitres = FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(update), num_examples=int(p.number(metrics, p.NUM_EXAMPLES)),
                    metrics={k: v for k, v in metrics.items() if isinstance(v, SCALARS)})
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)
