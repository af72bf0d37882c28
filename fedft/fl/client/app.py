"""The ClientApp: Flower glue around `fedft.fl.client.pipeline`.

A node knows only its own `partition-id` (from its node config, set by the
simulation engine or by `flower-supernode --node-config`), and learns the run's
config from the message. It replies with arrays and metrics, never data.
"""

from __future__ import annotations

import traceback

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MessageType, Metadata, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedft.config import FedftConfig
from fedft.fl import compression, packing
from fedft.fl import protocol as p
from fedft.fl.client import distributed_dp, faults, scaffold
from fedft.fl.client.central_dp import central_dp_mod
from fedft.fl.client.node_data import DATA_PATH, cached_shard, node_tensors
from fedft.fl.client.pipeline import local_evaluate, local_update
from fedft.fl.client.secaggplus import secaggplus_train_mod
from fedft.fl.context import client_tensors, run_context
from fedft.privacy.client_policy import mode_refusal, policy_from_node_config
from fedft.state import client_records as client_state
from fedft.state.node_store import node_dir

app = ClientApp()
POLICY_ERROR_CODE = 16  # the Error a deployed client replies when its own privacy policy refuses the run


def _partition_id(context: Context) -> int:
    return int(context.node_config[p.PARTITION_ID])


def _node_data(context: Context, config_json: str, state: dict) -> tuple | None:
    """A deployed node's own data (`data-path`, or its shard cached in `state-dir`); None in simulation."""
    return node_tensors(context.node_config, config_json, _partition_id(context), state)


def _preload(context: Context, config_json: str) -> None:
    """Simulation: fill this worker's cache. Deployment (a fresh process per message): cache
    the shard in the node's `state-dir`; a node's own `data-path` file is read when training."""
    if context.node_config.get(DATA_PATH):
        return
    folder = node_dir(context)
    if folder is None:
        client_tensors(config_json, _partition_id(context))
    else:
        cached_shard(folder, config_json, _partition_id(context))


@app.query()
def identify(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds, so sampling is by client id."""
    if p.CONFIG in msg.content:  # load this client's data now, outside round 1's timeout
        try:
            _preload(context, str(msg.content[p.CONFIG][p.CONFIG_JSON]))
        except Exception:  # noqa: BLE001  (the training call reports it, with the round)
            pass
    identity = ConfigRecord({p.PARTITION_ID: _partition_id(context)})
    return Message(RecordDict({p.IDENTITY: identity}), reply_to=msg)


# deploy.secure_aggregation: Flower's secaggplus_mod (fedft.fl.client.secaggplus); central DP: Flower's client-side clipping when configured
@app.train(mods=[secaggplus_train_mod, central_dp_mod])
def train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records[p.CONFIG]
    cfg = run_context(str(config[p.CONFIG_JSON])).cfg
    policy = policy_from_node_config(context.node_config)  # None in a simulation
    if policy is None:
        client_state.restore_into_context(msg, context)  # after a resume: state the server checkpointed
    else:  # a deployed node keeps its own state on its own disk and takes none from the server
        client_state.discard(msg)
        if (reason := mode_refusal(policy, cfg.privacy.mode)) is not None:
            return Message(Error(code=POLICY_ERROR_CODE, reason=reason), reply_to=msg)
    fault = faults.injection_for(cfg.faults, cfg.seed, int(p.number(config, p.SERVER_ROUND)), _partition_id(context))
    if (dropout := fault.reply_instead(msg)) is not None:
        return dropout
    global_state = msg.content.array_records[p.ARRAYS].to_torch_state_dict()
    node_data = _node_data(context, str(config[p.CONFIG_JSON]), global_state)
    controls = scaffold.load_controls(msg.content, context)  # None unless the strategy is SCAFFOLD
    proximal_mu = float(p.number(config, p.PROXIMAL_MU, 0.0))
    gradient_offset = controls.offset if controls is not None else None
    frozen_digest = str(config.get(p.FROZEN_DIGEST, ""))  # finetune: only trainable arrays travel
    # local DP: the accountant history persists in context.state; None = budget spent, no update
    state, metrics = local_update(
        str(config[p.CONFIG_JSON]), _partition_id(context), int(p.number(config, p.SERVER_ROUND)), global_state, node_data,
        node_state=context.state, proximal_mu=proximal_mu, gradient_offset=gradient_offset, frozen_digest=frozen_digest, policy=policy,
    )
    fault.after_training()
    arrays = {} if state is None else _update_records(state, global_state, cfg, context, int(p.number(config, p.SERVER_ROUND)), _partition_id(context))
    content = RecordDict({**arrays, p.METRICS: MetricRecord(dict(metrics))})  # dict(): MetricRecord takes a dict of its own value type
    if controls is not None and state is not None:
        lr = scaffold.effective_lr(cfg.train.optimizer, cfg.train.lr, cfg.train.momentum)
        content[p.SCAFFOLD_DELTA] = scaffold.finish_round(controls, context, global_state, state, int(metrics["steps"]), lr)
    if cfg.checkpoint.client_state:
        client_state.attach_to_reply(content, context)
    return Message(content, reply_to=msg)


def _update_records(state: dict, global_state: dict, cfg: FedftConfig, context: Context, server_round: int, client_id: int) -> dict[str, ArrayRecord]:
    """The trained arrays as they travel: whole, or (compression.kind) their update encoded, the
    error-feedback residual kept in the node's Context.state for its next round, or (privacy.mode
    "distributed") their update as a secure-aggregation share (fedft.fl.client.distributed_dp)."""
    if cfg.privacy.mode == "distributed":  # a secure-aggregation share with its noise, never the update itself
        return distributed_dp.share_records(state, global_state, cfg, server_round, client_id)
    c = cfg.compression
    if c.kind == "none":
        return {p.ARRAYS: ArrayRecord(state)}
    update, other = compression.split_update(state, global_state)
    kept = context.state.array_records.get(compression.RESIDUAL)
    residual = dict(kept.to_torch_state_dict()) if kept is not None and c.error_feedback else None
    generator = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, server_round, client_id, 0xC0]).integers(2**62)))  # stochastic rounding: no privacy role
    wire, left_out = compression.compress(update, residual, c.kind, c.topk_fraction, c.error_feedback, generator)
    if left_out is not None:
        context.state[compression.RESIDUAL] = ArrayRecord(left_out)
    return {compression.COMPRESSED: ArrayRecord(wire), **({p.ARRAYS: ArrayRecord(other)} if other else {})}


def _as_train(md: Metadata) -> Metadata:
    """A packed message's metadata, as one client's own `train` message would have it."""
    return Metadata(run_id=md.run_id, message_id=md.message_id, src_node_id=md.src_node_id, dst_node_id=md.dst_node_id,
                    reply_to_message_id=md.reply_to_message_id, group_id=md.group_id, created_at=md.created_at, ttl=md.ttl,
                    message_type=MessageType.TRAIN, src_task_id=md.src_task_id, dst_task_id=md.dst_task_id)


@app.train("packed")
def train_packed(msg: Message, context: Context) -> Message:
    """Several clients' training in one call (`simulation.clients_per_call`, fedft.fl.packing):
    each runs through `train` above, mods included, with a Context of its own whose state
    came with the message and goes back with the reply. Simulation only: a deployed node
    trains nothing but its own data, so it refuses."""
    if context.node_config.get(DATA_PATH) or node_dir(context) is not None:
        return Message(Error(code=POLICY_ERROR_CODE, reason="a deployed node trains only its own partition; packed training is for simulation"), reply_to=msg)
    replies = []
    for client_id, content in packing.unpack_request(msg.content):
        own = Context(run_id=context.run_id, node_id=context.node_id, node_config={**context.node_config, p.PARTITION_ID: client_id},
                      state=RecordDict(), run_config=context.run_config)
        one = Message(content=content, metadata=_as_train(msg.metadata))  # type: ignore[call-overload]  # Flower's own internal form
        try:
            reply = app(one, own)
        except Exception as ex:  # noqa: BLE001  (what the engine does for an unpacked call: an error reply for this client only)
            reason = f"{type(ex)}:<'{''.join(traceback.format_exception(ex)).strip()}'>"
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=one)
        if not reply.has_error():
            client_state.attach_to_reply(reply.content, own)
        replies.append((client_id, reply))
    return Message(packing.pack_replies(replies), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    config = msg.content.config_records[p.CONFIG]
    global_state = msg.content.array_records[p.ARRAYS].to_torch_state_dict()
    metrics = local_evaluate(str(config[p.CONFIG_JSON]), _partition_id(context), global_state, _node_data(context, str(config[p.CONFIG_JSON]), global_state))
    return Message(RecordDict({p.METRICS: MetricRecord(dict(metrics))}), reply_to=msg)
