"""Central pretraining and the comparison table, without Ray."""

import csv
from pathlib import Path

import pytest
import torch

from fedft.state.model_file import load_checkpoint
from fedft.jobs.compare import ArmResult, comparison_rows, comparison_table, rounds_to_reach
from fedft.jobs.validate import load_config
from fedft.errors import FedftError
from fedft.jobs.pretrain import pretrain
from fedft.jobs.tables import markdown_table


def _pretrain_config(tiny_config, **pre):
    return {**tiny_config, "pretrain": {"dataset": "digits", "max_examples": 300, "epochs": 2, "batch_size": 32, **pre}}


def test_pretrain_writes_a_checkpoint_that_records_what_it_is(tiny_config, tmp_path):
    result = pretrain(_pretrain_config(tiny_config), out=tmp_path / "pre", quiet=True)
    record = load_checkpoint(result.model_path)
    assert (record["architecture"], record["num_classes"], record["input_shape"], record["dataset"]) == ("seed_cnn", 10, [1, 28, 28], "digits")
    assert record["fedft_version"] and record["config"]
    rows = list(csv.DictReader(open(result.run_dir / "pretrain.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and 0.0 <= float(rows[-1]["val_accuracy"]) <= 1.0
    assert record["val_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]))
    again = pretrain(_pretrain_config(tiny_config), out=tmp_path / "again", quiet=True)  # seeded: same model
    assert all(torch.equal(v, load_checkpoint(again.model_path)["state_dict"][k]) for k, v in record["state_dict"].items())


def test_pretrain_on_a_class_subset_makes_a_smaller_head(tiny_config, tmp_path):
    result = pretrain(_pretrain_config(tiny_config, classes=[3, 5, 7], epochs=1), out=tmp_path / "pre", quiet=True)
    record = load_checkpoint(result.model_path)
    assert record["num_classes"] == 3 and record["classes"] == [3, 5, 7]
    assert record["state_dict"]["head.weight"].shape == (3, 64)


def test_model_file_alone_rebuilds_a_tanh_groupnorm_model(tiny_config, tmp_path):
    # model.activation / model.norm are part of the architecture: the file records them
    from fedft.ml.models import build_model

    config = {**_pretrain_config(tiny_config, epochs=1), "model": {**tiny_config.get("model", {}), "activation": "tanh", "norm": "group"}}
    record = load_checkpoint(pretrain(config, out=tmp_path / "pre", quiet=True).model_path)
    assert (record["model_options"]["activation"], record["model_options"]["norm"]) == ("tanh", "group")
    model = build_model(record["architecture"], tuple(record["input_shape"]), record["num_classes"], **record["model_options"])
    model.load_state_dict(record["state_dict"])  # strict: the GroupNorm tensors are there and fit
    assert any(isinstance(m, torch.nn.Tanh) for m in model.modules()) or "tanh" in repr(model).lower()


@pytest.mark.parametrize("pre,field", [
    ({"dataset": "mnist-5k"}, "pretrain.dataset"),  # the clients' own data
    ({"dataset": "imagenet"}, "pretrain.dataset"),
    ({"classes": [1, 1]}, "pretrain.classes"),
    ({"classes": [42]}, "pretrain.classes"),
    ({"epochs": 0}, "pretrain.epochs"),
])
def test_bad_pretrain_settings_fail_before_any_folder(tiny_config, tmp_path, pre, field):
    with pytest.raises(FedftError) as err:
        pretrain(_pretrain_config(tiny_config, **pre), out=tmp_path / "pre", quiet=True)
    assert err.value.field == field
    assert not (tmp_path / "pre").exists()


def test_pretrain_needs_a_public_dataset(tiny_config, tmp_path):
    with pytest.raises(FedftError, match="pretrain.dataset: is not set"):
        pretrain(tiny_config, out=tmp_path / "pre", quiet=True)


# ---------------------------------------------------------------- [compare] rules and table

@pytest.mark.parametrize("compare,field", [
    ({"arms": {"a": ["seed=1"]}}, "compare.arms.a"),
    ({"arms": {"a": ["partition.alpha=0.1"]}}, "compare.arms.a"),
    ({"arms": {"a": ["data.name=digits"]}}, "compare.arms.a"),
    ({"arms": {"a": ["compare.pretrain=true"]}}, "compare.arms.a"),
    ({"arms": {"a": ["model.init_from={pretrained}"]}}, "compare.arms.a"),  # no compare.pretrain
    ({"arms": {"a b": []}}, "compare.arms.a b"),
    ({"arms": {"a": []}, "reference": "b"}, "compare.reference"),
    ({"arms": {"a": []}, "pretrain": True}, "compare.pretrain"),  # no [pretrain] dataset
    ({"arms": {"a": []}, "targets": [90]}, "compare.targets"),
])
def test_bad_compare_tables_are_config_errors(tiny_config, compare, field):
    with pytest.raises(FedftError) as err:
        load_config({**tiny_config, "compare": compare})
    assert err.value.field == field, err.value.one_line()


def test_arm_overrides_are_validated_before_anything_runs(tiny_config, tmp_path):
    from fedft.jobs.compare import compare

    raw = {**tiny_config, "compare": {"arms": {"ok": [], "bad": ["finetune.mode=tail"]}}}
    with pytest.raises(FedftError) as err:
        compare(raw, out=tmp_path / "cmp", quiet=True)
    assert err.value.field == "compare.arms.bad: finetune.mode"
    assert not (tmp_path / "cmp").exists()


def test_fedft_run_refuses_a_comparison_config(tiny_config, tmp_path):
    import fedft

    with pytest.raises(FedftError, match="compare.arms"):
        fedft.run({**tiny_config, "compare": {"arms": {"a": [], "b": ["train.lr=0.01"]}}}, out=tmp_path / "x", quiet=True)
    assert not (tmp_path / "x").exists()


def _arm(name, accs, bytes_per_round, cfg):
    rows = [{"round": r, "test_accuracy": a, **({"bytes_down": bytes_per_round, "bytes_up": bytes_per_round} if r else {})} for r, a in enumerate(accs)]
    summary = {"status": "completed", "rounds": len(accs) - 1, "final_accuracy": accs[-1], "best_accuracy": max(accs),
               "bytes_down": bytes_per_round * (len(accs) - 1), "bytes_up": bytes_per_round * (len(accs) - 1), "wall_seconds": 1.0}
    return ArmResult(name, cfg, Path("/tmp") / name, summary, rows)


def test_comparison_counts_rounds_to_the_reference_final_accuracy(tiny_config):
    cfg = load_config(tiny_config)
    scratch = _arm("scratch", [0.1, 0.5, 0.7, 0.8, 0.9], 1000, cfg)
    fast = _arm("fast", [0.6, 0.85, 0.92, 0.95, 0.96], 10, cfg)
    never = _arm("never", [0.5, 0.6, 0.7, 0.8, 0.85], 10, cfg)
    assert rounds_to_reach(fast.rows, 0.9) == 2 and rounds_to_reach(never.rows, 0.9) is None
    rows = comparison_rows([scratch, fast, never], "scratch", targets=[0.8])
    assert [r["rounds_to_target"] for r in rows] == [4, 2, None]
    assert [r["rounds_to_0.8"] for r in rows] == [3, 1, 3]
    assert rows[1]["rounds_fraction"] == 0.5 and rows[1]["bytes_vs_reference"] == pytest.approx(0.01)
    table = comparison_table(rows, "scratch")
    lines = table.splitlines()
    assert len(lines) == 5 and "rounds to 0.8 |" in lines[0] and lines[-1].startswith("| never |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_comparison_table_is_pinned_byte_for_byte():
    """comparison.md's exact bytes (the one Markdown renderer, fedft.jobs.tables, lays it out)."""
    cfg = load_config({"name": "t"})
    rows = comparison_rows([_arm("scratch", [0.1, 0.5, 0.8], 2000, cfg), _arm("head", [0.6, 0.9, 0.95], 20, cfg)], "scratch", targets=[0.9])
    assert comparison_table(rows, "scratch") == (
        "| arm | start | mode | rounds | start acc | final acc | best acc | rounds to 0.8000 (scratch final) | rounds to 0.9 "
        "| bytes down/round | bytes up/round | vs scratch | failed replies | wall s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| scratch | scratch | full | 2 | 0.1000 | 0.8000 | 0.8000 | 2 | never | 2,000 | 2,000 | 100.00% | 0 | 1.0 |\n"
        "| head | scratch | full | 2 | 0.6000 | 0.9500 | 0.9500 | 1 | 1 | 20 | 20 | 1.00% | 0 | 1.0 |\n"
    )
    assert markdown_table(["a", "b"], [["1", "x"]]) == "| a | b |\n|---|---|\n| 1 | x |\n"
