"""LEAF's Shakespeare from the Hugging Face hub (`data.name = "hf:flwrlabs/shakespeare"`).

For users who are online: `flwr-datasets` downloads `flwrlabs/shakespeare` once
(about 500 MB of CSV, cached by `datasets`). Each row is one of LEAF's samples:
`character_id` (a role in one play), `x` (80 characters) and `y` (the next one),
in text order, one row per character position. A role's text is therefore its
first `x` followed by every `y`; from there the text pipeline is the same as for
a plain-text play (fedft/ml/data/text.py). Offline it fails with one line.
"""

from __future__ import annotations

from fedft.errors import FedftError
from fedft.ml.data.huggingface import hub_error

HUB_ID = "flwrlabs/shakespeare"


def load_hf_shakespeare_roles(hub_id: str = HUB_ID) -> dict[str, str]:
    """{character_id: that role's text}, roles in order of first appearance."""
    from huggingface_hub.utils import logging as hub_logging

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # no per-retry warnings: the error below says it once
    try:
        from flwr_datasets import FederatedDataset
        from flwr_datasets.partitioner import NaturalIdPartitioner

        fds = FederatedDataset(dataset=hub_id, partitioners={"train": NaturalIdPartitioner(partition_by="character_id")}, shuffle=False)
        table = fds.load_split("train")
    except Exception as exc:  # offline, unknown id, interrupted download: the fix is the same
        raise hub_error(f"'{hub_id}' from the Hugging Face hub", exc, 'go online once (the download is cached), or use data.name = "text" with data.path set to a plain-text play.') from None
    finally:
        hub_logging.set_verbosity(verbosity)
    missing = {"character_id", "x", "y"} - set(table.column_names)
    if missing:
        raise FedftError("data.name", f"'{hub_id}' lacks columns {sorted(missing)} (has {table.column_names}).", f"use {HUB_ID} (LEAF's Shakespeare).")
    frame = table.to_pandas()
    roles: dict[str, str] = {}
    for role, rows in frame.groupby("character_id", sort=False):
        roles[str(role)] = str(rows["x"].iloc[0]) + "".join(rows["y"].astype(str))
    return roles
