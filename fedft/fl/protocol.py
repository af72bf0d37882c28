"""What travels between ServerApp and ClientApp: record keys and their meaning.

Down: `arrays` (ArrayRecord, the global model) and `config` (ConfigRecord with
`server-round` and `fedft-config`, the run's validated config as JSON, so a
client needs nothing but its own data). With `finetune.mode` other than `full`,
`arrays` holds only the trainable arrays, both ways, and `config` adds
`frozen-sha256`, a digest of the frozen part the client rebuilds itself. Up: `arrays` and `metrics`
(MetricRecord with `num-examples`, the weight for aggregation).
"""

from __future__ import annotations

from typing import cast

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

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
CLIENT_STATE = "client-state:"  # prefix of the records that carry a client's Context.state (fedft.state.client_records)
FROZEN_DIGEST = "frozen-sha256"  # with finetune.mode != full: sha256 of the frozen tensors the client must hold


def payload_bytes(content: RecordDict) -> int:
    """Bytes of model arrays a message carries (the part that scales with the model); client
    state records are not counted here (`fedft.state.client_records.state_bytes` counts them)."""
    return sum(record.count_bytes() for key, record in content.items() if isinstance(record, ArrayRecord) and not key.startswith(CLIENT_STATE))


def number(record: ConfigRecord | MetricRecord, key: str, default: float | None = None) -> float:
    """`record[key]`, typed as the number this protocol puts there (`server-round`,
    `partition-id`, `num-examples`, `proximal-mu`); Flower types a record's values as the
    union of every kind. Returned as received, not converted (callers `int()`/`float()`
    it); a missing key raises KeyError, or gives `default` when one is passed."""
    return cast(float, record[key] if default is None else record.get(key, default))
