"""A picture of how labels are spread over clients (stacked bars)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedft.ml.data.partition import label_counts


def plot_label_counts(data, path: str | Path, title: str = "") -> Path:  # data: FederatedData
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if data.full.y.ndim > 1:  # text: one client per speaking role, so show how much text each has
        return _plot_text_sizes(data, path, title)
    counts = label_counts(data.full.y, data.client_labels(), data.full.num_classes)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(counts)), 4))
    bottom = np.zeros(len(counts))
    cmap = plt.get_cmap("tab10" if counts.shape[1] <= 10 else "tab20")
    for cls in range(counts.shape[1]):
        ax.bar(np.arange(len(counts)), counts[:, cls], bottom=bottom, color=cmap(cls % cmap.N), label=str(cls))
        bottom += counts[:, cls]
    ax.set_xlabel("client")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(title="label", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_text_sizes(data, path: str | Path, title: str = "") -> Path:  # data: TextFederatedData
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chars = [int(data.full.y[np.concatenate([t, v])].size) for t, v in data.clients]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(chars)), 4))
    ax.bar(np.arange(len(chars)), chars)
    ax.set_xticks(np.arange(len(chars)), [f"{i} {r}" for i, r in enumerate(data.roles)], rotation=90, fontsize="small")
    ax.set_ylabel("training characters (train + val)")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
