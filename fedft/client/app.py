"""The ClientApp: Flower glue around `fedft.client.local`.

A node knows only its own `partition-id` (from its node config, set by the
simulation engine or by `flower-supernode --node-config`), and learns the run's
config from the message. It replies with arrays and metrics, never data.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedft import protocol as p
from fedft.client.local import local_evaluate, local_update

app = ClientApp()


def _partition_id(context: Context) -> int:
    return int(context.node_config[p.PARTITION_ID])


@app.query()
def identify(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds, so sampling is by client id."""
    identity = ConfigRecord({p.PARTITION_ID: _partition_id(context)})
    return Message(RecordDict({p.IDENTITY: identity}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content[p.CONFIG]
    state, metrics = local_update(
        str(config[p.CONFIG_JSON]), _partition_id(context), int(config[p.SERVER_ROUND]),
        msg.content[p.ARRAYS].to_torch_state_dict(), str(config.get(p.FROZEN_DIGEST, "")),
    )
    content = RecordDict({p.ARRAYS: ArrayRecord(state), p.METRICS: MetricRecord(metrics)})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    config = msg.content[p.CONFIG]
    metrics = local_evaluate(str(config[p.CONFIG_JSON]), _partition_id(context), msg.content[p.ARRAYS].to_torch_state_dict())
    return Message(RecordDict({p.METRICS: MetricRecord(metrics)}), reply_to=msg)
