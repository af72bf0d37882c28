"""Datasets by name. A loader returns the whole labelled set as arrays in memory;
splitting and partitioning happen elsewhere, the same for every dataset."""

from __future__ import annotations

from collections.abc import Callable

from fedft.config.plugins import calling_module, lookup
from fedft.errors import FedftError
from fedft.ml.data.arrays import ArrayDataset
from fedft.ml.data.huggingface import load_hf_dataset

Loader = Callable[[str], ArrayDataset]  # path ("" = default place) -> dataset
_ORIGINS: dict[str, str] = {}  # name -> the module that registered it
_LOADERS: dict[str, Loader] = {}
HF_PREFIX = "hf:"


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    origin = calling_module()

    def wrap(fn: Loader) -> Loader:
        _ORIGINS[name] = origin
        _LOADERS[name] = fn
        return fn

    return wrap


def dataset_origin(name: str) -> str | None:
    """The module that registered `name` (None for names that are not registrations)."""
    return _ORIGINS.get(name)


def dataset_names() -> list[str]:
    return sorted(_LOADERS) + [f"{HF_PREFIX}<hub id>"]


def _loader(name: str) -> Loader:
    """A registered name, or `package.module:function` imported in this process."""
    return lookup(_LOADERS, name, "data.name", "dataset", dataset_names())


def check_dataset_name(name: str) -> None:
    if name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX):
        return
    _loader(name)


def load_dataset(name: str, path: str = "") -> ArrayDataset:
    if name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX):
        return load_hf_dataset(name[len(HF_PREFIX):])
    dataset = _loader(name)(path)
    if not isinstance(dataset, ArrayDataset):
        raise FedftError("data.name", f"'{name}' returned a {type(dataset).__name__}, not an ArrayDataset.", "return fedft.ml.data.ArrayDataset(name, x, y, num_classes).")
    return dataset
