"""Every ready config in simulations/ passes `fedft check` as shipped (fields, data,
partitions, model, privacy calibration; every arm and sweep point), and check refuses
what a job would refuse, with the same one line and exit 2."""

from pathlib import Path

import pytest

from conftest import FASHION_MNIST, HAS_FASHION_MNIST
from fedft.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "simulations").glob("*.toml"))
NEEDS_PLAY = {"shakespeare_lstm.toml", "lora_study.toml"}  # data.path is the user's play: `--set data.path=...`
NEEDS_PRETRAINED = {"finetune_head.toml"}  # starts from `fedft pretrain simulations/pretrain_public.toml --out runs/pretrained`


def test_there_are_ready_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.slow  # seconds of compute, no process
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ready_config_checks(path, play, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # data paths in the configs are relative to the repository root
    if "fashion-mnist" in path.read_text() and not HAS_FASHION_MNIST:
        pytest.skip(f"Fashion-MNIST is not in {FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
    if 'name = "hf"' in path.read_text():
        pytest.importorskip("transformers", reason="needs the fedft[llm] extra")
        pytest.importorskip("peft", reason="needs the fedft[llm] extra")
    args = ["--set", f"data.path={play.path}"] if path.name in NEEDS_PLAY else []
    code = main(["check", str(path.relative_to(ROOT)), *args])
    out, err = capsys.readouterr()
    if path.name in NEEDS_PRETRAINED and not (ROOT / "runs" / "pretrained" / "model.pt").is_file():
        assert code == 2 and err.startswith("fedft: error: model.init_from: ") and len(err.strip().splitlines()) == 1
        return
    assert code == 0, err
    assert out.startswith(f"simulations/{path.name}: ok, ")


def test_a_play_config_without_a_path_names_data_path(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["check", "simulations/shakespeare_lstm.toml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedft: error: data.path: is empty;") and "--set data.path=" in err and len(err.strip().splitlines()) == 1


def test_check_refuses_a_bad_sweep_point_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "bad.toml"
    cfg.write_text('name = "bad"\n[data]\nname = "mnist-5k"\n[sweep]\nprivacy.mode = ["local"]\nprivacy.target_epsilon = [1.0, -2.0]\n')
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedft: error: sweep point p001_") and "target_epsilon" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]
