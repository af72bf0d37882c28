"""Sweeps: grid expansion, resume after a kill, report regeneration, and the MIA audit."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from fedft.cli import main
from fedft.errors import FedftError
from fedft.jobs.report import pareto_front, sweep_rows, write_report
from fedft.jobs.sweep import expand_grid, sweep
from fedft.privacy.audit import loss_threshold_attack, per_example_losses


def _base(tmp_path):
    return {
        "name": "tinysweep",
        "seed": 3,
        "data": {"name": "mnist-5k", "test_fraction": 0.9},  # 500 pool records: each point takes seconds
        "partition": {"method": "iid", "num_clients": 2},
        "model": {"name": "seed_cnn"},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 32},
        "simulation": {"rounds": 1, "clients_per_round": 2, "device": "cpu"},
        "audit": {"mia": True, "mia_samples": 50},
        "output": {"dir": str(tmp_path / "runs")},
    }


def test_grid_expansion_union_of_subgrids():
    raw = {"name": "g", "sweep": {"seed": [0, 1], "grid": [
        {"privacy": {"mode": ["none"]}},
        {"privacy": {"mode": ["local", "central"], "target_epsilon": [1.0, 4.0]}},
    ]}, "partition": {"num_clients": 4}, "simulation": {"clients_per_round": 4}}
    points = expand_grid(raw)
    assert len(points) == 2 * (1 + 2 * 2)
    assert points[0].values == {"seed": 0, "privacy.mode": "none"}
    assert points[2].values == {"seed": 0, "privacy.mode": "local", "privacy.target_epsilon": 1.0}
    assert len({p.name for p in points}) == len(points)
    assert points[2].name == "p002_seed=0_mode=local_target_epsilon=1"
    assert expand_grid({"sweep": {"train.lr": [0.1, 0.01]}})[1].overrides == ["train.lr=0.01"]


@pytest.mark.parametrize("grid, field", [
    ({"train": {"learning_rate": [0.1]}}, "train.learning_rate"),  # no such field
    ({"privacy": {"mode": ["none", "secret"]}}, "privacy.mode"),  # invalid value in one point
    ({"train": {"lr": 0.1}}, "sweep.train.lr"),  # not a list
])
def test_invalid_grid_fails_before_anything_runs(tmp_path, grid, field):
    raw = {**_base(tmp_path), "sweep": grid}
    with pytest.raises(FedftError) as exc:
        expand_grid(raw)
    assert field in exc.value.one_line()
    with pytest.raises(FedftError):
        sweep(raw, out=tmp_path / "sw", quiet=True)
    assert not (tmp_path / "sw").exists() and not (tmp_path / "runs").exists()
    cfg = tmp_path / "bad.toml"
    import tomli_w

    cfg.write_text(tomli_w.dumps(raw))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "sw2"), "--quiet"]) == 2
    assert main(["run", str(cfg), "--out", str(tmp_path / "sw2"), "--quiet"]) == 2  # fedft run runs a sweep config as a sweep
    assert not (tmp_path / "sw2").exists()


@pytest.mark.slow
def test_resume_after_kill_and_report_from_disk(tmp_path, shared_ray, process_guard):
    """A 2-point sweep killed during point 2: point 1 completed (its folder written by hand,
    so a rerun would show), point 2 half written. The resumed sweep runs point 2 only."""
    import tomli_w

    raw = {**_base(tmp_path), "sweep": {"train": {"lr": [0.05, 0.1]}}}
    names = [p.name for p in expand_grid(raw)]
    sw = tmp_path / "sw"
    (sw / names[0]).mkdir(parents=True)
    (sw / "sweep.toml").write_text(tomli_w.dumps(raw))
    done0 = {"status": "completed", "final_accuracy": 0.5, "best_accuracy": 0.5, "rounds": 1, "marker": "by hand"}
    (sw / names[0] / "summary.json").write_text(json.dumps(done0))
    (sw / names[1]).mkdir()
    (sw / names[1] / "config.toml").write_text("half-written")
    (sw / names[1] / "metrics.jsonl").write_text("{}")

    resumed = sweep(sw, quiet=True)
    assert resumed.ran == [names[1]]
    assert json.loads((sw / names[0] / "summary.json").read_text()) == done0  # not rerun
    s1 = json.loads((sw / names[1] / "summary.json").read_text())
    assert s1["status"] == "completed" and s1["rounds"] == 1 and 0.0 <= s1["mia_auc"] <= 1.0 and s1["mia_samples"] == 50
    assert (sw / names[1] / "model.pt").exists() and (sw / names[1] / "config.toml").read_text() != "half-written"
    assert sweep(sw, quiet=True).ran == []  # all complete: nothing runs again
    mtime = (sw / names[1] / "summary.json").stat().st_mtime_ns
    assert main(["run", str(sw / "sweep.toml"), "--out", str(sw), "--quiet"]) == 0  # fedft run on a sweep config: the sweep
    assert (sw / names[1] / "summary.json").stat().st_mtime_ns == mtime

    for f in ("sweep.csv", "sweep.md", "sweep.png"):
        (sw / f).unlink()
    assert main(["report", str(sw)]) == 0
    rows = sweep_rows(sw)
    assert [r["point"] for r in rows] == names and [r["train.lr"] for r in rows] == [0.05, 0.1]
    assert rows[1]["mia_auc"] == s1["mia_auc"] and rows[1]["final_accuracy"] == s1["final_accuracy"]
    header = (sw / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["point", "train.lr"] and "mia_tpr_at_1pct_fpr" in header and "epsilon" in header
    assert (sw / "sweep.png").stat().st_size > 0 and "| train.lr | seeds |" in (sw / "sweep.md").read_text()


def test_report_groups_seeds_and_marks_pareto(tmp_path):
    sw = tmp_path / "sw"
    points = []
    for i, (mode, eps, seed, acc) in enumerate([("none", None, 0, 0.9), ("none", None, 1, 0.8), ("local", 1.0, 0, 0.5), ("local", 1.0, 1, 0.7), ("local", 4.0, 0, 0.8)]):
        name = f"p{i}"
        values = {"seed": seed, "privacy.mode": mode, **({"privacy.target_epsilon": eps} if eps else {})}
        points.append({"name": name, "values": values})
        (sw / name).mkdir(parents=True)
        (sw / name / "summary.json").write_text(json.dumps({"status": "completed", "privacy_mode": mode, "final_accuracy": acc, "best_accuracy": acc, "epsilon": eps, "rounds": 1, "bytes_down": 1, "bytes_up": 2, "wall_seconds": 1.0}))
    (sw / "points.json").write_text(json.dumps(points))
    table = write_report(sw)
    assert "| none | - | 2 | 0.8500 ± 0.0707 |" in table
    assert "| local | 1.0 | 2 | 0.6000 ± 0.1414 |" in table
    assert pareto_front([(1.0, 0.6), (4.0, 0.8), (8.0, 0.7), (2.0, 0.5)]) == [(1.0, 0.6), (4.0, 0.8)]


def test_mia_planted_case():
    """A tiny MLP that memorised 50 random-label points: AUC near 1. The same
    architecture trained on other points never saw them: AUC near 0.5."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    members_x, members_y = torch.randn(50, 20, generator=gen), torch.randint(0, 10, (50,), generator=gen)
    others_x, others_y = torch.randn(50, 20, generator=gen), torch.randint(0, 10, (50,), generator=gen)
    unseen_x, unseen_y = torch.randn(50, 20, generator=gen), torch.randint(0, 10, (50,), generator=gen)

    def fit(x, y):
        model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return model

    memoriser = fit(members_x, members_y)
    hit = loss_threshold_attack(per_example_losses(memoriser, members_x, members_y), per_example_losses(memoriser, others_x, others_y))
    assert hit["mia_auc"] > 0.95 and hit["mia_tpr_at_1pct_fpr"] > 0.5
    blind = fit(unseen_x, unseen_y)
    miss = loss_threshold_attack(per_example_losses(blind, members_x, members_y), per_example_losses(blind, others_x, others_y))
    assert abs(miss["mia_auc"] - 0.5) < 0.15
    # closed form: perfectly separated losses give AUC 1 and TPR 1; identical ones give 0.5
    assert loss_threshold_attack(np.array([0.1, 0.2]), np.array([1.0, 2.0])) == {"mia_auc": 1.0, "mia_tpr_at_1pct_fpr": 1.0}
    assert loss_threshold_attack(np.ones(4), np.ones(4))["mia_auc"] == 0.5
    assert loss_threshold_attack(np.full(3, np.nan), np.array([np.inf, np.nan, np.nan]))["mia_auc"] == 0.5  # a diverged model


@pytest.mark.slow
def test_parallel_points_run_side_by_side_in_their_own_processes(tmp_path, process_guard):
    """Two points side by side on 2 CPUs: each a `fedft run` child with a 1-CPU Ray,
    both complete, their run times overlap, and the report covers both."""
    import tomli_w

    raw = {**_base(tmp_path), "audit": {"mia": False}, "sweep": {"train": {"lr": [0.05, 0.1]}}}
    cfg = tmp_path / "par.toml"
    cfg.write_text(tomli_w.dumps(raw))
    sw = tmp_path / "sw"
    # --parallel 4 with 2 points: the 2 CPUs are split between the 2 points that run
    assert main(["sweep", str(cfg), "--out", str(sw), "--parallel", "4", "--quiet"]) == 0
    names = [p.name for p in expand_grid(raw)]
    spans = []
    for name in names:
        summary = json.loads((sw / name / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["rounds"] == 1
        assert "ray_num_cpus = 1" in (sw / name / "config.toml").read_text()
        spans.append(((sw / name / "config.toml").stat().st_mtime, (sw / name / "summary.json").stat().st_mtime))
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a  # both were running at once
    assert [r["point"] for r in sweep_rows(sw)] == names


def test_parallel_split_refusals():
    from fedft.jobs.parallel import cpus_per_point
    from fedft.jobs.validate import load_config

    plain = load_config({"name": "x"})
    assert cpus_per_point([plain], 2, cpus=8) == 4
    for configs, parallel, cpus, says in [
        ([plain], 3, 2, "less than one CPU per point"),
        ([load_config({"simulation": {"client_resources": {"num_cpus": 2}}})], 2, 2, "client_resources.num_cpus=2"),
        ([load_config({"simulation": {"ray_address": "auto"}})], 2, 4, "share the Ray cluster"),
    ]:
        with pytest.raises(FedftError) as exc:
            cpus_per_point(configs, parallel, cpus)
        assert exc.value.field == "--parallel" and says in exc.value.one_line()
    with pytest.raises(FedftError) as exc:
        load_config({"simulation": {"ray_address": "auto", "ray_num_cpus": 2}})
    assert exc.value.field == "simulation.ray_num_cpus"


def test_parallel_points_split_the_gpus(monkeypatch):
    from fedft.jobs.parallel import parent_gpus, visible_gpus

    assert [visible_gpus(s, 2, ["0", "1", "2", "3"]) for s in range(2)] == ["0,1", "2,3"]  # disjoint shares
    assert [visible_gpus(s, 3, ["0", "1", "2", "3"]) for s in range(3)] == ["0", "1", "2"]  # 4 // 3: one each, one idle
    assert [visible_gpus(s, 3, ["5", "7"]) for s in range(3)] == ["5", "7", "5"]  # fewer GPUs than points: shared
    assert visible_gpus(0, 2, []) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5, 7")  # the parent's own restriction is respected
    assert parent_gpus() == ["5", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert parent_gpus() == []


@pytest.mark.slow
def test_ray_num_cpus_limits_the_local_ray(process_guard):
    """What each parallel point's Ray gets: `simulation.ray_num_cpus` reaches ray.init;
    its workers (the clients) run at nice 0, not Ray's default 15, so a busy process
    elsewhere on the machine cannot starve them."""
    import os

    import ray

    from fedft.config import SimulationConfig
    from fedft.runtime.engine import start_ray, backend_config

    assert "num_cpus" not in backend_config(SimulationConfig())["init_args"]  # 0: all of the machine's
    start_ray(backend_config(SimulationConfig(ray_num_cpus=1))["init_args"])
    try:
        assert ray.cluster_resources()["CPU"] == 1
        assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == 0
    finally:
        ray.shutdown()
