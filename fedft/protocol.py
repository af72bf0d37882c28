"""What travels between ServerApp and ClientApp: record keys and their meaning.

Down: `arrays` (ArrayRecord, the global model) and `config` (ConfigRecord with
`server-round` and `fedft-config`, the run's validated config as JSON, so a
client needs nothing but its own data). Up: `arrays` and `metrics`
(MetricRecord with `num-examples`, the weight for aggregation).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, RecordDict

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
IDENTITY = "identity"
CONFIG_JSON = "fedft-config"
SERVER_ROUND = "server-round"
NUM_EXAMPLES = "num-examples"
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
PROXIMAL_MU = "proximal-mu"  # train config: FedProx's mu (Flower's FedProx sets it)
SCAFFOLD_CONTROL = "scaffold-c"  # down, ArrayRecord: SCAFFOLD's server control variate c
SCAFFOLD_DELTA = "scaffold-dc"  # up, ArrayRecord: a SCAFFOLD client's control change (c_i+ - c_i)


def payload_bytes(content: RecordDict) -> int:
    """Bytes of model arrays a message carries (the part that scales with the model)."""
    return sum(record.count_bytes() for record in content.values() if isinstance(record, ArrayRecord))
