"""Fine-tuning end to end through Flower's simulation engine on Ray (3 clients, 1-2 rounds)."""

import csv

import pytest
import tomli_w
import torch
from flwr.app import ArrayRecord

import fedft
from fedft.cli import main
from fedft.ml.models import build_model
from fedft.state.model_file import load_checkpoint, save_checkpoint


@pytest.mark.slow
def test_head_mode_freezes_the_body_and_sends_only_the_head(tiny_config, tmp_path, shared_ray, process_guard):
    with torch.random.fork_rng():
        torch.manual_seed(123)
        start = build_model("seed_cnn").state_dict()
    ckpt = save_checkpoint(tmp_path / "start.pt", start, architecture="seed_cnn", num_classes=10, input_shape=(1, 28, 28), dataset="digits")
    cfg = {**tiny_config, "model": {"name": "seed_cnn", "init_from": str(ckpt)}, "finetune": {"mode": "head"}}

    result = fedft.run(cfg, out=tmp_path / "run", quiet=True)

    assert result.summary["status"] == "completed"
    final = load_checkpoint(result.run_dir / "model.pt")["state_dict"]
    head = {"head.weight", "head.bias"}
    for key, value in start.items():  # frozen tensors are bit-identical after the run; the head trained
        assert torch.equal(final[key], value) != (key in head), key
    head_bytes = ArrayRecord({k: start[k] for k in ("head.weight", "head.bias")}).count_bytes()
    full_bytes = ArrayRecord(dict(start)).count_bytes()
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    for row in rows[1:]:  # exactly the head's arrays, in both directions, for each of 3 clients
        assert int(row["bytes_down"]) == int(row["bytes_up"]) == 3 * head_bytes
    assert head_bytes <= 0.05 * full_bytes


@pytest.mark.slow
def test_compare_pretrains_runs_every_arm_and_writes_one_table(tiny_config, tmp_path, shared_ray, process_guard, capsys):
    raw = {
        **tiny_config,
        "simulation": {**tiny_config["simulation"], "rounds": 1},
        "pretrain": {"dataset": "digits", "max_examples": 300, "epochs": 1},
        "compare": {
            "reference": "scratch",
            "pretrain": True,
            "arms": {"scratch": [], "head": ["model.init_from={pretrained}", "model.reset_head=true", "finetune.mode=head"]},
        },
    }
    config = tmp_path / "cmp.toml"
    config.write_text(tomli_w.dumps(raw))
    out = tmp_path / "cmp"

    assert main(["run", str(config), "--out", str(out)]) == 0  # `fedft run` sees [compare] and runs the arms

    for name in ("comparison.csv", "comparison.md", "comparison.png", "config.toml", "pretrained/model.pt", "scratch/metrics.csv", "head/model.pt"):
        assert (out / name).is_file(), name
    rows = {r["arm"]: r for r in csv.DictReader(open(out / "comparison.csv"))}
    assert list(rows) == ["scratch", "head"] and rows["head"]["start"] == "pretrained/model.pt"
    assert float(rows["head"]["bytes_vs_reference"]) <= 0.05
    pretrained = load_checkpoint(out / "pretrained" / "model.pt")["state_dict"]
    head_final = load_checkpoint(out / "head" / "model.pt")["state_dict"]
    assert all(torch.equal(head_final[k], v) for k, v in pretrained.items() if not k.startswith("head."))
    metrics = {arm: list(csv.DictReader(open(out / arm / "metrics.csv"))) for arm in rows}
    assert metrics["scratch"][1]["clients_sampled"] == metrics["head"][1]["clients_sampled"] == "3"
    printed = capsys.readouterr().out
    assert "| arm | start | mode |" in printed and "| head | pretrained/model.pt | head |" in printed
