"""The one look of every fedft figure, and the one way to save one.

Every plot (a run's accuracy figure, a sweep's, a comparison's, the partitions plot) is
built by a `*_figure` function inside `styled()`, so fonts, sizes and grid come from
`STYLE` alone, and is written by `save(fig, path)`, which writes `<path>.png` (`DPI` dots per inch) and `<path>.pdf` (vector,
for a paper) with `fedft.state.atomic`: both are rendered in memory first, so a failure
leaves neither file half-written. To restyle every figure, change `STYLE` (any matplotlib
rcParam). The figure builders live beside what they plot; this module holds only what they
share: the style, saving, integer round axes and the words a title uses for a strategy and
a privacy mode.

Lives in `fedft.state` because the run folder (`run_folder.plot_accuracy`) is the lowest
layer that draws.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedft.state import atomic

DPI = 200  # PNG resolution: sharp on a slide and in a paper's raster fallback
STYLE: dict[Any, Any] = {  # rcParam name -> value (keys typed Any: matplotlib types them as a Literal of every name)
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs (ε, δ, α) on every machine
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "figure.titlesize": 11,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "pdf.fonttype": 42,  # TrueType in the PDF: editable text, accepted by paper submission checks
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # one per series, so lines read in greyscale too

STRATEGY_NAMES = {  # registry name -> the name papers use; others are shown as written
    "fedavg": "FedAvg", "fedavgm": "FedAvgM", "fedprox": "FedProx", "fedadam": "FedAdam", "fedyogi": "FedYogi",
    "fedadagrad": "FedAdagrad", "fedmedian": "FedMedian", "fedtrimmedavg": "FedTrimmedAvg", "krum": "Krum",
    "multikrum": "MultiKrum", "bulyan": "Bulyan", "qfedavg": "q-FedAvg", "scaffold": "SCAFFOLD",
}


def _import_pyplot() -> None:
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # a notebook's backend, already in use, is left as it is
        matplotlib.use("Agg")
    import matplotlib.backends.backend_pdf  # noqa: F401  (fontTools' subsetter: 0.2 s, imported by the first PDF `save` writes)
    import matplotlib.pyplot  # noqa: F401


def preload_in_background() -> None:
    """Import matplotlib (Agg, and the PDF backend) in a daemon thread: about 0.5 s of a
    run's end that its final central evaluation can hide (the plots then only draw and write)."""
    threading.Thread(target=_import_pyplot, name="fedft-preload-matplotlib", daemon=True).start()


@contextmanager
def styled() -> Iterator[Any]:
    """matplotlib.pyplot with `STYLE` in force until the block ends: build the figure inside
    it. No rcParams change survives it, except that the first call in a process that has not
    imported pyplot yet selects the non-interactive Agg backend (a notebook's backend, already
    in use, is left as it is)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        yield plt


def save(fig: Any, path: str | Path) -> tuple[Path, Path]:
    """Write `fig` as `<path>.png` at `DPI` and `<path>.pdf` (a `.png`/`.pdf` suffix on `path`
    is dropped) and close it, even when rendering fails. Returns (png, pdf)."""
    import matplotlib.pyplot as plt

    base = Path(path)
    if base.suffix.lower() in (".png", ".pdf"):
        base = base.with_suffix("")
    png, pdf = io.BytesIO(), io.BytesIO()
    try:
        with plt.rc_context(STYLE):  # ticks are made while drawing: they take the style here
            fig.savefig(png, format="png", dpi=DPI)
            fig.savefig(pdf, format="pdf", metadata={"CreationDate": None})  # same figure, same bytes
    finally:
        plt.close(fig)
    png_path, pdf_path = base.with_name(base.name + ".png"), base.with_name(base.name + ".pdf")
    atomic.write_bytes(png_path, png.getvalue())
    atomic.write_bytes(pdf_path, pdf.getvalue())
    return png_path, pdf_path


def integer_rounds(ax: Any) -> None:
    """Rounds are whole numbers: major x ticks only at integers, labelled "round"."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")


def number(value: float | str) -> str:
    """Short, exact enough for a title: 2.9812 -> "2.98", 1e-05 -> "1e-5", 4.0 -> "4", "inf" -> "inf"
    (summary.json records an unbounded ε, σ = 0, as the string "inf")."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{float(value):.3g}")


def strategy_label(name: str) -> str:
    """"fedavg" -> "FedAvg"; a name fedft does not know (a user's factory) as written."""
    return STRATEGY_NAMES.get(name, name)


def privacy_label(mode: str | None, epsilon: float | None = None, delta: float | None = None) -> str:
    """What a run's privacy was, for a title: "no DP", "local DP-SGD ε=2.98, δ=1e-5",
    "central DP ε=4, δ=1e-5" (ε as spent, or as targeted before a run has spent any)."""
    if not mode or mode == "none":
        return "no DP"
    kind = "local DP-SGD" if mode == "local" else "central DP" if mode == "central" else f"{mode} DP"
    budget = [f"ε={number(epsilon)}" if epsilon is not None else "", f"δ={number(delta)}" if delta is not None else ""]
    text = ", ".join(b for b in budget if b)
    return f"{kind} {text}" if text else kind


def run_title(name: str, strategy: str, mode: str | None, epsilon: float | None = None, delta: float | None = None) -> str:
    """"quickstart — FedAvg, no DP": the run's name, strategy and privacy."""
    return f"{name} — {strategy_label(strategy)}, {privacy_label(mode, epsilon, delta)}"
