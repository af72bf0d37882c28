r"""SCAFFOLD's client half (Karimireddy et al. 2020); the server half and the full
update rules are in `strategies/scaffold.py`.

A client keeps its control variate c_i across rounds: in the node's Flower
`Context.state` (which the simulation engine keeps per node for the whole run)
and, when the node config names a `state-dir` (deployment:
`flower-supernode --node-config "partition-id=3 state-dir='/var/lib/fedft'"`),
also in a file there, so a restarted SuperNode continues with its c_i.

Per round, given the server's c (the `scaffold-c` ArrayRecord):

    offset  = c - c_i                                   (added to every local gradient)
    c_i+    = c_i - c + (x - y) / (K * eta)             ("option II")
    reply   : dc_i = c_i+ - c_i                         (`scaffold-dc`)

K is the number of local steps taken and eta the local step size; with SGD
momentum beta the steady-state step is eta / (1 - beta), which is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context, RecordDict

from fedft.fl import protocol as p
from fedft.state import atomic

STATE_KEY = "scaffold-client-control"  # in Context.state


@dataclass(frozen=True)
class Controls:
    server: dict[str, torch.Tensor]  # c
    client: dict[str, torch.Tensor]  # c_i before this round

    @property
    def offset(self) -> dict[str, torch.Tensor]:
        """c - c_i: what every local gradient gets added."""
        return {k: self.server[k] - self.client[k] for k in self.server}


def effective_lr(optimizer: str, lr: float, momentum: float) -> float:
    """The step size that turns K local steps into an average gradient: eta / (1 - beta) for SGD with momentum."""
    if optimizer != "sgd":
        raise ValueError("SCAFFOLD's control update is defined for SGD")
    return lr / (1.0 - momentum)


def updated_control(controls: Controls, global_state: dict[str, torch.Tensor], local_state: dict[str, torch.Tensor], steps: int, lr: float) -> dict[str, torch.Tensor]:
    """c_i+ = c_i - c + (x - y) / (K * eta); unchanged when no step was taken."""
    if steps <= 0:
        return dict(controls.client)
    out = {}
    for k, c in controls.server.items():
        if torch.is_floating_point(c):
            out[k] = controls.client[k] - c + (global_state[k].to(c.dtype) - local_state[k].to(c.dtype)) / (steps * lr)
        else:
            out[k] = controls.client[k]
    return out


def _disk_path(context: Context) -> Path | None:
    folder = context.node_config.get("state-dir")
    return Path(str(folder)) / f"scaffold-run{context.run_id}-node{context.node_id}.pt" if folder else None


def load_controls(content: RecordDict, context: Context) -> Controls | None:
    """The round's (c, c_i), or None when the message is not a SCAFFOLD round."""
    if p.SCAFFOLD_CONTROL not in content:
        return None
    server = content.array_records[p.SCAFFOLD_CONTROL].to_torch_state_dict()
    if STATE_KEY in context.state:
        client: dict[str, torch.Tensor] = context.state.array_records[STATE_KEY].to_torch_state_dict()
    elif (path := _disk_path(context)) is not None and path.is_file():
        client = torch.load(path, weights_only=True)
    else:
        client = {k: torch.zeros_like(v) for k, v in server.items()}
    return Controls(server=server, client=client)


def save_control(context: Context, control: dict[str, torch.Tensor]) -> None:
    context.state[STATE_KEY] = ArrayRecord(control)
    if (path := _disk_path(context)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_with(path, lambda f: torch.save(control, f))  # tensors, bit-exact: a torch file, not JSON


def finish_round(controls: Controls, context: Context, global_state: dict[str, torch.Tensor], local_state: dict[str, torch.Tensor], steps: int, lr: float) -> ArrayRecord:
    """Store c_i+ and return dc_i = c_i+ - c_i for the reply."""
    new = updated_control(controls, global_state, local_state, steps, lr)
    save_control(context, new)
    return ArrayRecord({k: new[k] - controls.client[k] for k in new})
