"""End to end through Flower's real simulation engine on Ray."""

import csv
import json

import pytest
import torch

import fedft
from fedft.state.model_file import load_checkpoint


def _accuracy_column(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [row["test_accuracy"] for row in csv.DictReader(f)]


@pytest.mark.slow
def test_tiny_simulation_writes_results_and_is_reproducible(tiny_config, tmp_path, shared_ray, process_guard):
    first = fedft.run(tiny_config, out=tmp_path / "a", quiet=True)
    # the same run, evaluated centrally only after round 0 and the last: training is untouched
    second = fedft.run({**tiny_config, "simulation": {**tiny_config["simulation"], "evaluate_every": 2, "rounds": 2},
                        "output": {**tiny_config["output"], "plot_partitions": True}}, out=tmp_path / "b", quiet=True)

    run_dir = first.run_dir
    for name in ("config.toml", "metrics.csv", "metrics.jsonl", "summary.json", "model.pt", "accuracy.png", "accuracy.pdf"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "partitions.png").exists() and (second.run_dir / "partitions.png").is_file() and (second.run_dir / "partitions.pdf").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2 and summary["seed"] == 7
    assert set(summary["versions"]) >= {"fedft", "flwr", "torch", "opacus"}
    assert summary["final_accuracy"] > 0.5  # 2 rounds of seed_cnn on 3 clients learns something

    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [r["round"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["clients_sampled"] == "3" and rows[1]["clients_replied"] == "3"
    raw = sum(v.numel() * 4 for v in first.state.values())  # float32 payload; messages add a small header per array
    for key in ("bytes_down", "bytes_up"):
        assert 3 * raw <= int(rows[1][key]) <= 3 * raw * 1.01
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3

    ckpt = load_checkpoint(run_dir / "model.pt")
    assert ckpt["architecture"] == "seed_cnn" and ckpt["num_classes"] == 10
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in first.state.items())

    accuracy = _accuracy_column(first.run_dir)
    assert _accuracy_column(second.run_dir) == [accuracy[0], "", accuracy[2]]  # round 1 not evaluated, the last always
    assert all(torch.equal(first.state[k], second.state[k]) for k in first.state)
