r"""SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging
for Federated Learning"), which Flower does not ship. Server half; the client
half is `fedft.fl.client.scaffold`.

State: the global model x and the server control variate c, the mean of all N
clients' control variates c_i (everything starts at 0). Round t, sampled set S:

    server -> i in S:  x (`arrays`) and c (a second ArrayRecord, `scaffold-c`)
    client i:          y <- x;  K times: y <- y - eta_l (g_i(y) + c - c_i)
                       c_i+ <- c_i - c + (x - y) / (K eta_l)          ("option II")
                       replies y (`arrays`, as every fedft client does) and
                       dc_i = c_i+ - c_i (`scaffold-dc`); keeps c_i+ for next time
    server:            x <- x + eta_g * sum_i w_i (y_i - x),  w_i = n_i / sum_j n_j
                       c <- c + (1/N) sum_{i in S} dc_i

The paper averages dy_i = y_i - x uniformly; here it is weighted by
`num-examples` exactly as FedAvg weights models, which is the same for equal
shards and makes SCAFFOLD with c = c_i = 0 and eta_g = 1 equal FedAvg. The c
update keeps c = (1/N) sum_i c_i over all N clients, sampled or not, so it is
an unweighted sum. eta_l, the client learning rate, stays on the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from fedft.errors import FedftError
from fedft.fl import protocol as p
from strategies.aggregation import weighted_mean
from strategies.registry import RunFacts, register_strategy


class Scaffold(FedAvg):
    """SCAFFOLD server: FedAvg's message flow plus the server control variate.

    Parameters
    ----------
    server_learning_rate : float (default: 1.0)
        eta_g, the step the server takes along the mean client update.
    num_clients : int (default: 0)
        N, all clients in the federation (fedft fills it from partition.num_clients);
        0 means "everyone who replied", i.e. full participation.
    """

    reply_array_records = (p.ARRAYS, p.SCAFFOLD_DELTA)  # what a valid reply carries (fedft.fl.server.validation)

    def __init__(
        self,
        server_learning_rate: float = 1.0,
        num_clients: int = 0,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = p.NUM_EXAMPLES,
        train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train, fraction_evaluate=fraction_evaluate, min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes, min_available_nodes=min_available_nodes, weighted_by_key=weighted_by_key,
            arrayrecord_key=p.ARRAYS, configrecord_key=p.CONFIG,
            train_metrics_aggr_fn=train_metrics_aggr_fn, evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.server_learning_rate = server_learning_rate
        self.num_clients = num_clients
        self.current_arrays: dict[str, np.ndarray] | None = None  # x of the round being trained
        self.control: dict[str, np.ndarray] | None = None  # c

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Send x and c to every node of `grid` (fedft hands over exactly the sampled ones)."""
        if self.fraction_train == 0.0:
            return []
        self.current_arrays = {k: a.numpy() for k, a in arrays.items()}
        if self.control is None:
            self.control = {k: np.zeros_like(v) for k, v in self.current_arrays.items()}
        config["server-round"] = server_round
        record = RecordDict({
            p.ARRAYS: arrays,
            p.SCAFFOLD_CONTROL: ArrayRecord({k: Array(v) for k, v in self.control.items()}),
            p.CONFIG: config,
        })
        return self._construct_messages(record, list(grid.get_node_ids()), MessageType.TRAIN)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """x <- x + eta_g * weighted mean(y_i - x);  c <- c + sum(dc_i) / N."""
        if self.current_arrays is None or self.control is None:
            raise RuntimeError("SCAFFOLD: configure_train must run before aggregate_train")
        valid = []
        for msg in replies:
            if msg.has_error():
                continue
            if p.ARRAYS in msg.content and p.SCAFFOLD_DELTA in msg.content:
                valid.append(msg)
            else:
                log(WARNING, "SCAFFOLD: reply from node %d lacks '%s' or '%s'; skipped", msg.metadata.src_node_id, p.ARRAYS, p.SCAFFOLD_DELTA)
        if not valid:
            return None, None
        keys = list(self.current_arrays)
        x = [self.current_arrays[k] for k in keys]
        models = [[y[k].numpy() for k in keys] for y in (m.content.array_records[p.ARRAYS] for m in valid)]
        weights = [float(p.number(next(iter(m.content.metric_records.values())), self.weighted_by_key)) for m in valid]
        mean_y = weighted_mean(models, weights)
        eta_g = self.server_learning_rate
        new_x = {k: np.asarray(xk + eta_g * (yk - xk)).astype(xk.dtype) for k, xk, yk in zip(keys, x, mean_y)}
        n = max(self.num_clients, len(valid))
        dc_sum = weighted_mean([[dc[k].numpy() for k in keys] for dc in (m.content.array_records[p.SCAFFOLD_DELTA] for m in valid)], [1.0] * len(valid))
        self.control = {k: (self.control[k] + (len(valid) / n) * d).astype(self.control[k].dtype) for k, d in zip(keys, dc_sum)}
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return ArrayRecord({k: Array(v) for k, v in new_x.items()}), metrics


def check_scaffold(params: dict[str, Any], run: RunFacts) -> None:
    if params.get("server_learning_rate", 1.0) <= 0:
        raise FedftError("strategy.server_learning_rate", f"must be > 0 (got {params['server_learning_rate']}).", "choose server_learning_rate > 0, e.g. 1.0.")
    if run.optimizer != "sgd":
        raise FedftError("train.optimizer", f"is '{run.optimizer}', but SCAFFOLD's control variates are defined for SGD steps.", "use train.optimizer = \"sgd\" with strategy.name = \"scaffold\".")


register_strategy("scaffold", check_scaffold)(Scaffold)
