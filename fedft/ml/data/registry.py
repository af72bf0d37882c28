"""Datasets by name. A loader returns the whole labelled set as arrays in memory;
splitting and partitioning happen elsewhere, the same for every dataset."""

from __future__ import annotations

from collections.abc import Callable

from fedft.errors import FedftError
from fedft.ml.data.arrays import ArrayDataset
from fedft.ml.data.huggingface import load_hf_dataset

Loader = Callable[[str], ArrayDataset]  # path ("" = default place) -> dataset
_LOADERS: dict[str, Loader] = {}
HF_PREFIX = "hf:"


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(_LOADERS) + [f"{HF_PREFIX}<hub id>"]


def check_dataset_name(name: str) -> None:
    if name in _LOADERS or (name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX)):
        return
    raise FedftError("data.name", f"unknown dataset '{name}'.", f"use one of: {', '.join(dataset_names())}.")


def load_dataset(name: str, path: str = "") -> ArrayDataset:
    check_dataset_name(name)
    if name.startswith(HF_PREFIX):
        return load_hf_dataset(name[len(HF_PREFIX):])
    return _LOADERS[name](path)
