"""Any image-classification dataset on the Hugging Face hub, for users who are online.

`data.name = "hf:<hub id>"` downloads the `train` split through `flwr-datasets`'
FederatedDataset machinery (the `datasets` library underneath) and converts the
first image column and the label column to arrays. Offline it fails with one line.
"""

from __future__ import annotations

import numpy as np

from fedft.errors import FedftError
from fedft.ml.data.arrays import ArrayDataset


def hub_error(what: str, exc: Exception, fix: str) -> FedftError:
    """One line for any failed hub download (offline, unknown id, auth), naming `data.name`."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FedftError("data.name", f"cannot load {what} ({reason[:160]}).", fix)


def load_hf_dataset(hub_id: str, split: str = "train") -> ArrayDataset:
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # network, auth, unknown id: all the user can fix is the same
        raise hub_error(f"Hugging Face dataset '{hub_id}'", exc, "check the hub id and your network, or use an offline dataset such as mnist-5k.") from None
    image_col = next((c for c in ("image", "img", "pixel_values") if c in ds.column_names), None)
    label_col = next((c for c in ("label", "labels", "fine_label") if c in ds.column_names), None)
    if image_col is None or label_col is None:
        raise FedftError("data.name", f"'{hub_id}' has no image/label columns ({ds.column_names}).", "use an image-classification dataset.")
    images = np.stack([np.asarray(img.convert("L"), dtype=np.float32) / 255.0 for img in ds[image_col]])
    labels = np.asarray(ds[label_col], dtype=np.int64)
    return ArrayDataset(f"hf:{hub_id}", images[:, None, :, :], labels, int(labels.max()) + 1)
