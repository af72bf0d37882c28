"""Every figure in one style (fedft/state/figures.py): PNG at ≥ 200 dpi and PDF, written
atomically, integer round ticks, ε ticks at the swept ε, titles that say what was run.
Built from small synthetic rows: no Ray, no training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from fedft.config import FedftConfig
from fedft.jobs.compare import ArmResult, comparison_figure, comparison_title, plot_comparison
from fedft.jobs.report import sweep_figure, sweep_title, write_report
from fedft.ml.data.plot import partition_title
from fedft.state import figures
from fedft.state.run_folder import accuracy_figure, plot_accuracy

ROWS = [{"round": r, "test_accuracy": 0.1 + 0.2 * r, "test_loss": 2.3 - 0.5 * r} for r in range(4)]


def tick_texts(fig, ax) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def assert_png_and_pdf(base: Path) -> None:
    png, pdf = base.with_suffix(".png"), base.with_suffix(".pdf")
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    assert all(round(d) >= figures.DPI for d in Image.open(png).info["dpi"])


def test_save_writes_png_and_pdf_and_nothing_when_rendering_fails(tmp_path):
    import matplotlib.pyplot as plt

    with figures.styled() as styled_plt:
        fig, _ = styled_plt.subplots()
    assert figures.save(fig, tmp_path / "accuracy.png") == (tmp_path / "accuracy.png", tmp_path / "accuracy.pdf")
    assert_png_and_pdf(tmp_path / "accuracy")
    assert not plt.fignum_exists(fig.number)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fig, ax = plt.subplots()
    ax.set_title("$\\notacommand$")  # mathtext error at render time
    with pytest.raises(ValueError):
        figures.save(fig, tmp_path / "accuracy")
    assert not plt.fignum_exists(fig.number)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # old files intact, no temp files
    assert sorted(os.listdir(tmp_path)) == ["accuracy.pdf", "accuracy.png"]


def test_styled_leaves_global_matplotlib_settings_alone():
    import matplotlib

    with figures.styled():  # the process's first use picks the Agg backend (a run order where no test plotted before failed on it)
        pass
    before = dict(matplotlib.rcParams)
    with figures.styled():
        assert matplotlib.rcParams["savefig.bbox"] == "tight"
    assert dict(matplotlib.rcParams) == before


@pytest.mark.parametrize(("mode", "eps", "delta", "title"), [
    ("none", None, None, "quickstart — FedAvg, no DP"),
    ("local", 2.9812, 1e-5, "quickstart — FedAvg, local DP-SGD ε=2.98, δ=1e-5"),
    ("central", 4.0, 1e-6, "quickstart — FedAvg, central DP ε=4, δ=1e-6"),
])
def test_run_title_says_strategy_and_privacy(mode, eps, delta, title):
    assert figures.run_title("quickstart", "fedavg", mode, eps, delta) == title


def test_accuracy_figure_has_integer_rounds_and_both_panels(tmp_path):
    title = figures.run_title("dp_local", "fedprox", "local", 2.98, 1e-5)
    fig = accuracy_figure(ROWS, title)
    acc_ax, loss_ax = fig.axes
    for ax in (acc_ax, loss_ax):
        labels = tick_texts(fig, ax)
        assert labels and all(t.lstrip("−").isdigit() for t in labels)  # matplotlib writes minus as U+2212
        assert ax.get_xlabel() == "round"
    assert acc_ax.get_ylabel() == "central test accuracy" and loss_ax.get_ylabel() == "central test loss"
    assert fig._suptitle.get_text() == "dp_local — FedProx, local DP-SGD ε=2.98, δ=1e-5"
    figures.save(fig, tmp_path / "accuracy")
    plot_accuracy(ROWS, tmp_path / "again.png", title)
    assert_png_and_pdf(tmp_path / "accuracy")
    assert_png_and_pdf(tmp_path / "again")


def sweep_row(point: str, mode: str, eps: float | None, acc: float, auc: float, seed: int = 0) -> dict:
    return {"point": point, "seed": seed, "privacy.mode": mode, "privacy.target_epsilon": eps, "status": "completed",
            "privacy_mode": mode, "final_accuracy": acc, "best_accuracy": acc, "epsilon": None if mode == "none" else eps * 0.999,
            "delta": None if mode == "none" else 1e-5, "noise_multiplier": None, "rounds": 3, "bytes_total": 1, "wall_seconds": 1.0,
            "mia_auc": auc, "mia_tpr_at_1pct_fpr": 0.0}


SWEEP = [sweep_row("p0", "none", None, 0.8, 0.6)] + [
    sweep_row(f"p{i}", mode, eps, 0.1 * eps, 0.5 + 0.01 * eps)
    for i, (mode, eps) in enumerate([(m, e) for m in ("local", "central") for e in (0.5, 2.0, 8.0)], start=1)
]


def test_sweep_figure_ticks_at_the_swept_epsilon_and_names_what_varied():
    title = sweep_title(SWEEP, "privacy_tradeoff")
    assert title == "final accuracy and MIA AUC vs ε — privacy_tradeoff, local and central DP, δ=1e-5"
    fig = sweep_figure(SWEEP, title)
    eps = sorted({r["epsilon"] for r in SWEEP if r["epsilon"] is not None})
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and list(ax.get_xticks()) == eps
        assert list(ax.get_xticks(minor=True)) == []  # no 2 and 5 between decades
        assert tick_texts(fig, ax) == [figures.number(e) for e in eps] == ["0.499", "2", "7.99"]
        assert ax.get_xlabel() == "ε (δ = 1e-05)"
        markers = {line.get_marker() for line in ax.get_lines() if line.get_marker() not in (None, "None", "", "_")}  # "_": error-bar caps
        assert len(markers) == 2  # one per privacy mode
    assert fig._suptitle.get_text() == title
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_sweep_title_without_privacy_names_the_varied_field():
    rows = [{**sweep_row("p0", "none", None, 0.8, 0.6), "train.lr": lr} for lr in (0.01, 0.1)]
    assert sweep_title(rows, "lr_sweep") == "final accuracy and MIA AUC by train.lr — lr_sweep, no DP"


def test_report_writes_sweep_png_and_pdf_titled_with_the_config_name(tmp_path):
    sw = tmp_path / "privacy_tradeoff-20260101-000000"
    points = []
    for row in SWEEP:
        values = {"seed": 0, "privacy.mode": row["privacy_mode"], **({"privacy.target_epsilon": row["privacy.target_epsilon"]} if row["privacy.target_epsilon"] else {})}
        points.append({"name": row["point"], "values": values})
        (sw / row["point"]).mkdir(parents=True)
        keys = ("status", "privacy_mode", "final_accuracy", "best_accuracy", "epsilon", "delta", "rounds", "wall_seconds", "mia_auc")
        (sw / row["point"] / "summary.json").write_text(json.dumps({k: row[k] for k in keys}))
    (sw / "points.json").write_text(json.dumps(points))
    (sw / "sweep.toml").write_text('name = "privacy_tradeoff"\n')
    write_report(sw)
    assert_png_and_pdf(sw / "sweep")


def test_comparison_figure_has_integer_rounds_and_says_what_differs(tmp_path):
    arms = [
        ArmResult("scratch", FedftConfig(name="cmp-scratch"), tmp_path, {}, ROWS),
        ArmResult("fast", FedftConfig(name="cmp-fast", train={"lr": 0.2}), tmp_path, {}, [{**r, "test_accuracy": r["test_accuracy"] / 2} for r in ROWS]),
    ]
    title = comparison_title("cmp", arms)
    assert title == "cmp — 2 arms differing in train.lr"
    fig = comparison_figure(arms, 0.7, title)
    for ax in fig.axes:
        assert all(t.lstrip("−").isdigit() for t in tick_texts(fig, ax)) and ax.get_xlabel() == "round"
    assert len({line.get_marker() for line in fig.axes[1].get_lines()}) == 2
    figures.save(fig, tmp_path / "comparison")
    plot_comparison(arms, tmp_path / "again", 0.7, title)
    assert_png_and_pdf(tmp_path / "comparison")
    assert_png_and_pdf(tmp_path / "again")


@pytest.mark.parametrize(("partition", "words"), [
    ({"method": "dirichlet", "alpha": 0.3, "num_clients": 8}, "mnist-5k — Dirichlet partition, α=0.3, 8 clients"),
    ({"method": "shards", "shards_per_client": 2, "num_clients": 10}, "mnist-5k — shards partition, 2 shards per client, 10 clients"),
    ({"method": "iid", "num_clients": 5}, "mnist-5k — IID partition, 5 clients"),
])
def test_partition_title_gives_the_partitioner_and_its_parameter(partition, words):
    assert partition_title(FedftConfig(data={"name": "mnist-5k"}, partition=partition)) == words


def test_an_unbounded_epsilon_is_labelled_inf():
    # summary.json records σ = 0's ε as "inf" (JSON has no infinity); titles and ticks show it as it is
    assert figures.number("inf") == figures.number(float("inf")) == "inf"
    assert figures.number(1e-05) == "1e-5"
