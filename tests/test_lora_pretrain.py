"""`fedft pretrain` of a Hugging Face causal LM on the play's non-client roles, the local-only
baseline, and `{pretrained}` as `model.path` in a comparison (the LoRA study's pieces).

Tiny Llama-style models (1 layer, 16 wide) built from `pretrain.hf_config`; the text is the
generated play of tests/plays.py. Nothing starts Ray: every test here runs in-process."""

import json

import numpy as np
import pytest
import torch

from fedft.cli import main
from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.ml.data.text import MERGED_ROLE, parse_play, public_text, role_texts, select_roles

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

TINY_LLAMA = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 2, "max_position_embeddings": 64}


@pytest.fixture
def study(play, tmp_path) -> dict:
    """A one-layer version of simulations/lora_study.toml: pretrain on the roles that are not clients."""
    return {
        "name": "study", "seed": 1,
        "data": {"name": "text", "path": str(play.path), "seq_len": 32, "min_chars": 200, "max_client_sequences": 12},
        "partition": {"method": "roles", "num_clients": 3},
        "model": {"name": "hf", "path": ""},
        "lora": {"rank": 2, "alpha": 4.0, "target_modules": ["q_proj", "v_proj"]},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 8},
        "pretrain": {"dataset": "text", "epochs": 1, "max_examples": 48, "optimizer": "adam", "lr": 0.01, "batch_size": 16, "hf_config": TINY_LLAMA},
        "simulation": {"rounds": 2, "clients_per_round": 3, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs")},
    }


def _with(cfg: dict, section: str, **values) -> dict:
    return {**cfg, section: {**cfg.get(section, {}), **values}}


# ------------------------------------------------------------------ the public text

@pytest.mark.parametrize("small_roles", ["drop", "merge"])
def test_public_text_is_every_speech_no_client_speaks(play, small_roles):
    roles = role_texts(parse_play(play.text))
    min_chars = 2000 if small_roles == "drop" else 3300  # merge: the roles below 3,300 characters become the largest client
    clients = [r for r, _ in select_roles(roles, 4, min_chars, small_roles)]
    speaking = set(clients) | ({r for r, t in roles.items() if len(t) < min_chars} if MERGED_ROLE in clients else set())

    text = public_text("text", "", "text", str(play.path), 4, min_chars, small_roles)

    public_roles = {s.role for s in parse_play(text)}
    assert public_roles == set(roles) - speaking and public_roles
    assert len(text) == sum(len(t) for r, t in roles.items() if r not in speaking)  # verbatim, in play order
    assert public_text("text", str(play.path), "text", "other-play.txt", 4, min_chars, small_roles) == "".join(
        s.text + "\n\n" for s in parse_play(play.text))  # another play than the clients': all of it


# ------------------------------------------------------------------ fedft pretrain for hf models

def test_pretrain_writes_a_save_pretrained_folder_that_transformers_and_fedft_load(study, tmp_path):
    from fedft.jobs.pretrain import pretrain
    from fedft.ml.generate import load_text_model

    result = pretrain(study, out=tmp_path / "pre", quiet=True)

    folder = result.model_path
    assert folder == tmp_path / "pre" / "hf" and (folder / "config.json").is_file()
    lm = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()  # transformers alone
    assert type(lm).__name__ == "LlamaForCausalLM" and lm.config.vocab_size == 97
    assert json.loads((folder / "fedft_vocabulary.json").read_text())["chars"][:2] == "\n "
    model, vocab = load_text_model(tmp_path / "pre" / "model.pt")  # `fedft generate --model pretrained/model.pt`
    tokens = torch.from_numpy(vocab.encode("ROMEO:\nSweet night, fair heaven."))[None, :]
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), lm(input_ids=tokens).logits)
    summary = json.loads((tmp_path / "pre" / "summary.json").read_text())
    assert summary["train_examples"] == 43 and np.isfinite(summary["val_perplexity"]) and summary["hf_path"] == str(folder)
    run = load_config(_with(study, "model", path=str(folder)))  # model.path takes it: LoRA on the pretrained model
    assert run.model.path == str(folder)


@pytest.mark.parametrize("hf_config,problem", [
    ({k: v for k, v in TINY_LLAMA.items() if k != "model_type"}, "no model_type"),
    ({**TINY_LLAMA, "max_position_embeddings": 16}, "positions"),
    ({**TINY_LLAMA, "vocab_size": 50}, "vocab_size"),
    ({"model_type": "vit", "hidden_size": 16}, "causal LM"),  # an image encoder: no causal LM head
])
def test_bad_hf_configs_are_refused_before_anything_is_written(study, tmp_path, hf_config, problem):
    from fedft.jobs.pretrain import prepare_pretrain

    with pytest.raises(FedftError) as err:
        prepare_pretrain(_with(study, "pretrain", hf_config=hf_config))

    assert err.value.field == "pretrain.hf_config" and problem in err.value.problem
    assert not (tmp_path / "runs").exists()


def test_hf_config_needs_an_hf_model(study):
    cfg = {**study, "model": {"name": "char_lstm"}, "lora": {}}
    with pytest.raises(FedftError) as err:
        load_config(cfg)
    assert err.value.field == "pretrain.hf_config"


def test_a_run_without_a_model_path_is_refused_even_when_pretraining_would_write_one(study, tmp_path, capsys):
    import tomli_w

    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(study))

    code = main(["run", str(path)])

    assert code == 2 and "model.path" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ {pretrained} as model.path in [compare]

def test_compare_checks_every_arm_before_the_pretrained_folder_exists(study, capsys, tmp_path):
    import tomli_w

    cfg = {**_with(study, "model", path="{pretrained}"), "compare": {"pretrain": True, "arms": {"lora": [], "ffa": ["lora.mode=ffa"], "full": ["lora.rank=0"]}}}
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(cfg))

    assert main(["check", str(path)]) == 0
    assert "3 compared runs" in capsys.readouterr().out
    bad = _with(cfg, "compare", pretrain=False)
    with pytest.raises(FedftError) as err:
        load_config(bad)
    assert err.value.field == "model.path"


# ------------------------------------------------------------------ local-only

def test_local_only_trains_each_client_alone_and_scores_it_on_its_own_held_out_text(study, tmp_path):
    from fedft.fl.client.pipeline import local_update
    from fedft.fl.context import RunContext
    from fedft.jobs.local_only import local_only
    from fedft.jobs.pretrain import pretrain
    from fedft.ml.training import evaluate

    folder = pretrain(study, out=tmp_path / "pre", quiet=True).model_path
    cfg = _with(_with(study, "model", path=str(folder)), "simulation", rounds=2)

    result = local_only(cfg, out=tmp_path / "local", quiet=True)

    ctx = RunContext(load_config(cfg))
    assert [r["role"] for r in result.rows] == list(ctx.data.roles)
    assert sum(r["test_targets"] for r in result.rows) == ctx.data.full.y[ctx.data.test].size  # the tails make up the test set
    state = {k: ctx.start_state[k] for k in ctx.plan.sent}  # client 1 by hand: its own rounds, then its own tail
    for server_round in (1, 2):
        state, _ = local_update(ctx.cfg.to_json(), 1, server_round, state, frozen_digest=ctx.frozen_digest)
    model = ctx.build_model()
    model.load_state_dict(ctx.merge_received(state, ctx.frozen_digest))
    idx = ctx.data.client_tests[1]
    loss, _ = evaluate(model, torch.from_numpy(ctx.data.full.x[idx]), torch.from_numpy(ctx.data.full.y[idx]), torch.device("cpu"))
    assert result.rows[1]["test_loss"] == pytest.approx(loss, rel=1e-6)
    weights = [r["test_targets"] for r in result.rows]
    assert result.test_loss == pytest.approx(np.average([r["test_loss"] for r in result.rows], weights=weights))
    assert (tmp_path / "local" / "local_only.csv").is_file()
    with pytest.raises(FedftError, match="privacy.mode"):
        local_only(_with(cfg, "privacy", mode="local", noise_multiplier=1.0), out=tmp_path / "dp", quiet=True)
