"""A picture of how labels are spread over clients (stacked bars), in the style of every
fedft figure (`fedft.state.figures`): `<path>.png` and `<path>.pdf`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedft.config import FedftConfig
from fedft.ml.data.partition import label_counts
from fedft.state import figures


def partition_title(cfg: FedftConfig) -> str:
    """What the plot shows, e.g. "mnist-5k — Dirichlet partition, α=0.5, 10 clients"."""
    p = cfg.partition
    how = {
        "iid": "IID partition",
        "dirichlet": f"Dirichlet partition, α={figures.number(p.alpha)}",
        "pathological": f"pathological partition, {p.classes_per_client} classes per client",
        "shards": f"shards partition, {p.shards_per_client} shards per client",
        "roles": "one client per speaking role",
    }[p.method]
    return f"{cfg.data.name} — {how}, {p.num_clients} clients"


def plot_label_counts(data, path: str | Path, title: str = "") -> tuple[Path, Path]:  # data: FederatedData
    """Label counts per client (text data: characters per role); returns the (png, pdf) written."""
    return figures.save(label_counts_figure(data, title), path)


def label_counts_figure(data, title: str = "") -> Any:  # data: FederatedData
    if data.full.y.ndim > 1:  # text: one client per speaking role, so show how much text each has
        return _text_sizes_figure(data, title)
    counts = label_counts(data.full.y, data.client_labels(), data.full.num_classes)
    with figures.styled() as plt:
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(counts)), 4))
        bottom = np.zeros(len(counts))
        cmap = plt.get_cmap("tab10" if counts.shape[1] <= 10 else "tab20")
        for cls in range(counts.shape[1]):
            ax.bar(np.arange(len(counts)), counts[:, cls], bottom=bottom, color=cmap(cls % cmap.N), label=str(cls))
            bottom += counts[:, cls]
        figures.integer_rounds(ax)  # clients are whole numbers too
        ax.set_xlabel("client")
        ax.set_ylabel("examples")
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        ax.legend(title="label", bbox_to_anchor=(1.01, 1), loc="upper left")
        return fig


def _text_sizes_figure(data, title: str = "") -> Any:  # data: TextFederatedData
    chars = [int(data.full.y[np.concatenate([t, v])].size) for t, v in data.clients]
    with figures.styled() as plt:
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(chars)), 4))
        ax.bar(np.arange(len(chars)), chars)
        ax.set_xticks(np.arange(len(chars)), [f"{i} {r}" for i, r in enumerate(data.roles)], rotation=90, fontsize="small")
        ax.set_ylabel("training characters (train + val)")
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        return fig
