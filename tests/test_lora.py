"""Federated LoRA on a Hugging Face causal LM (model.name = "hf", [lora]): config rules,
what travels, FlexLoRA's mixed-rank math, and 2-round runs through the Ray engine.

The model is a tiny randomly initialised GPT-2 written by `save_pretrained` into a
temporary folder; the text is the generated play (tests/plays.py)."""

import csv
import sys

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

import fedft
from fedft.cli import main
from fedft.errors import FedftError
from fedft.fl.context import RunContext
from fedft.jobs.validate import load_config
from fedft.state.model_file import load_checkpoint
from strategies.flexlora import average_delta, delta_weight, flexlora, split_delta, to_rank

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=256, n_positions=64), seeded, saved."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=256, n_positions=64,
                                         bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def lora_config(tiny_gpt2, play, tmp_path) -> dict:
    return {
        "name": "lora", "seed": 3,
        "data": {"name": "text", "path": str(play.path), "seq_len": 32, "min_chars": 200, "max_client_sequences": 24},
        "partition": {"method": "roles", "num_clients": 3},
        "model": {"name": "hf", "path": str(tiny_gpt2)},
        "lora": {"rank": 4, "alpha": 8.0},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 8},
        "simulation": {"rounds": 2, "clients_per_round": 3, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs")},
    }


def _with(cfg: dict, section: str, **values) -> dict:
    return {**cfg, section: {**cfg.get(section, {}), **values}}


# ------------------------------------------------------------------ config rules

@pytest.mark.parametrize("section,values,field", [
    ("model", {"path": ""}, "model.path"),
    ("model", {"path": "/nonexistent/tiny-gpt2"}, "model.path"),
    ("lora", {"target_modules": ["q_proj"]}, "lora.target_modules"),
    ("lora", {"mode": "ffa", "ranks": [2, 4]}, "lora.ranks"),
    ("lora", {"ranks": [2, 4]}, "lora.ranks"),  # needs strategy.name = "flexlora"
    ("finetune", {"mode": "head"}, "finetune.mode"),
    ("data", {"seq_len": 65}, "data.seq_len"),
])
def test_bad_lora_configs_name_the_field(lora_config, section, values, field):
    with pytest.raises(FedftError) as err:
        load_config(_with(lora_config, section, **values))
    assert err.value.field == field


def test_central_dp_refuses_flexlora_whose_aggregate_is_not_a_mean(lora_config):
    cfg = _with(_with(_with(lora_config, "lora", ranks=[2, 4]), "strategy", name="flexlora"), "privacy", mode="central", noise_multiplier=1.0)
    with pytest.raises(FedftError) as err:
        load_config(cfg)
    assert err.value.field == "strategy.name"


def test_ranks_below_one_are_refused_by_the_schema(lora_config):
    with pytest.raises(FedftError, match="lora.ranks"):
        load_config(_with(lora_config, "lora", ranks=[4, 0]))


def test_hf_needs_text_data(lora_config):
    with pytest.raises(FedftError) as err:
        load_config({**lora_config, "data": {"name": "mnist-5k"}, "partition": {"method": "iid", "num_clients": 3}})
    assert err.value.field == "model.name"


def test_without_the_llm_extra_the_cli_says_how_to_install_it(lora_config, tmp_path, monkeypatch, capsys):
    import tomli_w

    path = tmp_path / "lora.toml"
    path.write_text(tomli_w.dumps(lora_config))
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError, as when it is not installed

    code = main(["run", str(path)])

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert "model.name" in lines[0] and "pip install 'fedft[llm]'" in lines[0]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ what trains and travels

@pytest.mark.parametrize("mode,sent", [("lora", {"lora_A", "lora_B"}), ("ffa", {"lora_B"})])
def test_only_adapter_tensors_travel_and_the_seeded_init_is_shared(lora_config, mode, sent):
    cfg = load_config(_with(lora_config, "lora", mode=mode))
    ctx, again = RunContext(cfg), RunContext(load_config(_with(lora_config, "lora", mode=mode)))

    plan = ctx.plan

    assert {k.split(".")[-3] for k in plan.sent} == sent and len(plan.sent) == 4 * len(sent)  # 4 projections in the 1 block
    assert plan.trainable == plan.sent
    assert all("lora_" not in k or (mode == "ffa" and "lora_A" in k) for k in plan.frozen)
    for key, value in ctx.start_state.items():  # every process rebuilds the same A (and base) from the seed
        assert torch.equal(value, again.start_state[key]), key
    assert ctx.frozen_digest == again.frozen_digest != ""
    shapes = {k.split(".")[-3]: tuple(ctx.start_state[k].shape) for k in plan.sent if ".c_attn." in k}
    assert shapes["lora_B"] == (48, 4) and shapes.get("lora_A", (4, 16)) == (4, 16)  # c_attn: 16 -> 48, rank 4


def test_a_client_round_with_dropout_is_reproducible_and_leaves_the_global_generator_alone(lora_config):
    from fedft.fl.client.pipeline import local_update

    cfg = load_config(_with(lora_config, "lora", dropout=0.5))
    ctx = RunContext(cfg)
    sent = {k: ctx.start_state[k] for k in ctx.plan.sent}
    first, _ = local_update(cfg.to_json(), 1, 2, sent, frozen_digest=ctx.frozen_digest)  # also builds the worker's model (peft's init draws globally)
    before = torch.random.get_rng_state()

    second, _ = local_update(cfg.to_json(), 1, 2, sent, frozen_digest=ctx.frozen_digest)
    other_round, _ = local_update(cfg.to_json(), 1, 3, sent, frozen_digest=ctx.frozen_digest)

    assert first is not None and second is not None and other_round is not None
    assert all(torch.equal(first[k], second[k]) for k in sent)  # dropout masks from (seed, round, client)
    assert any(not torch.equal(first[k], other_round[k]) for k in sent)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_rank_zero_fine_tunes_the_hf_model_as_finetune_mode_says(lora_config):
    full = RunContext(load_config(_with(lora_config, "lora", rank=0)))
    head = RunContext(load_config(_with(_with(lora_config, "lora", rank=0), "finetune", mode=["*.ln_f.*"])))

    assert full.plan.sends_everything and not any("lora" in k for k in full.plan.sent)
    assert head.plan.sent == ("lm.transformer.ln_f.weight", "lm.transformer.ln_f.bias")


# ------------------------------------------------------------------ FlexLoRA math

def test_flexlora_splits_the_weighted_mean_update_by_truncated_svd():
    # Prepare: two clients on one 4x3 layer, ranks 1 and 2, weights 1 and 3, alpha 2
    rng = np.random.default_rng(0)
    b1, a1 = rng.normal(size=(4, 1)), rng.normal(size=(1, 3))
    b2, a2 = rng.normal(size=(4, 2)), rng.normal(size=(2, 3))
    alpha = 2.0
    by_hand = (1 * (alpha / 1) * b1 @ a1 + 3 * (alpha / 2) * b2 @ a2) / 4
    u, s, vt = np.linalg.svd(by_hand)

    # Execute
    (b_r1, a_r1), (b_r2, a_r2), (b_r5, a_r5) = flexlora([(b1, a1), (b2, a2)], [1, 3], alpha, [1, 2, 5])

    # Assert: the mean of the products, then (alpha/r) B A = U_r S_r V_r^T with A A^T = S_r, B^T B = (r/alpha)^2 S_r
    np.testing.assert_allclose(average_delta([(b1, a1), (b2, a2)], [1, 3], alpha), by_hand, rtol=1e-12)
    for r, b, a in ((1, b_r1, a_r1), (2, b_r2, a_r2)):
        assert b.shape == (4, r) and a.shape == (r, 3)
        np.testing.assert_allclose(delta_weight(b, a, alpha), (u[:, :r] * s[:r]) @ vt[:r], atol=1e-12)
        np.testing.assert_allclose(a @ a.T, np.diag(s[:r]), atol=1e-12)
        np.testing.assert_allclose(b.T @ b, (r / alpha) ** 2 * np.diag(s[:r]), atol=1e-12)
    assert b_r5.shape == (4, 5) and a_r5.shape == (5, 3)  # rank above min(4, 3): zero padding, exact
    assert not b_r5[:, 3:].any() and not a_r5[3:].any()
    np.testing.assert_allclose((alpha / 5) * b_r5 @ a_r5, by_hand, atol=1e-12)


def test_flexlora_on_a_diagonal_update_keeps_the_largest_singular_values():
    # Prepare: one client whose update is diag(3, 2, 1) on a 4x3 layer (alpha = r = 3, scale 1)
    b, a = np.vstack([np.diag([3.0, 2.0, 1.0]), np.zeros((1, 3))]), np.eye(3)

    # Execute
    b2, a2 = split_delta(average_delta([(b, a)], [5], 3.0), 2, 3.0)

    # Assert: rank 2 keeps 3 and 2; B = (2/3) [sqrt3 e1, sqrt2 e2], A = [sqrt3 e1; sqrt2 e2] (up to sign)
    expected = np.zeros((4, 3))
    expected[0, 0], expected[1, 1] = 3.0, 2.0
    np.testing.assert_allclose((3.0 / 2) * b2 @ a2, expected, atol=1e-12)
    np.testing.assert_allclose(np.abs(a2), [[3 ** 0.5, 0, 0], [0, 2 ** 0.5, 0]], atol=1e-12)
    np.testing.assert_allclose(np.abs(b2[:2]), (2 / 3) * np.array([[3 ** 0.5, 0], [0, 2 ** 0.5]]), atol=1e-12)


def test_to_rank_pads_and_truncates_without_changing_the_update():
    # Prepare: a rank-3 split of a 4x3 update (alpha 2), and a rank-2 client adapter
    rng = np.random.default_rng(1)
    delta = rng.normal(size=(4, 3))
    b3, a3 = split_delta(delta, 3, 2.0)
    b2, a2 = rng.normal(size=(4, 2)), rng.normal(size=(2, 3))

    # Execute
    (b_down, a_down), (b_up, a_up) = to_rank(b3, a3, 1), to_rank(b2, a2, 5)

    # Assert: cutting to rank 1 = the rank-1 split; padding keeps (alpha/r) B A exactly
    b1, a1 = split_delta(delta, 1, 2.0)
    np.testing.assert_allclose(delta_weight(b_down, a_down, 2.0), delta_weight(b1, a1, 2.0), atol=1e-12)
    np.testing.assert_allclose(delta_weight(b_up, a_up, 2.0), delta_weight(b2, a2, 2.0), atol=1e-12)
    assert b_up.shape == (4, 5) and a_up.shape == (5, 3) and not a_up[2:].any()


def test_rank_glue_cuts_messages_per_client_pads_fitting_replies_and_leaves_misfits():
    from fedft.fl.server.ranks import ClientRanks, pad_replies, send_at_client_ranks
    from flower_messages import RecordDict, array_record, train_instruction, train_reply

    # Prepare: a server adapter of rank 4 (one layer, 5x3), clients 0 and 1 at ranks 2 and 4
    rng = np.random.default_rng(2)
    b, a = split_delta(rng.normal(size=(5, 3)), 4, 8.0)
    layer = {"x.lora_B.w": b.astype(np.float32), "x.lora_A.w": a.astype(np.float32), "x.bias": np.ones(5, np.float32)}
    shared = RecordDict({"arrays": array_record(layer)})  # strategies hand every message the same content
    messages = [train_instruction(shared, node_id=10), train_instruction(shared, node_id=11)]
    ranks, client_of = ClientRanks((2, 4)), {10: 0, 11: 1}
    b2, a2 = to_rank(b, a, 2)
    fits = train_reply({"x.lora_B.w": b2, "x.lora_A.w": a2, "x.bias": np.ones(5)}, node_id=10)
    misfit = train_reply({"x.lora_B.w": b, "x.lora_A.w": a, "x.bias": np.ones(5)}, node_id=10)  # rank 4 from a rank-2 client

    # Execute
    send_at_client_ranks(messages, client_of, ranks)
    pad_replies([fits, misfit], client_of, ranks)

    # Assert: client 0 got rank 2 (= the rank-2 SVD split), client 1 the server's arrays untouched
    got0, got1 = (m.content.array_records["arrays"] for m in messages)
    assert tuple(got0["x.lora_B.w"].shape) == (5, 2)
    np.testing.assert_allclose(delta_weight(got0["x.lora_B.w"].numpy(), got0["x.lora_A.w"].numpy(), 8.0), delta_weight(b2, a2, 8.0), atol=1e-5)
    assert tuple(got1["x.lora_B.w"].shape) == (5, 4)
    padded = fits.content.array_records["arrays"]
    assert tuple(padded["x.lora_B.w"].shape) == (5, 4)
    np.testing.assert_allclose(delta_weight(padded["x.lora_B.w"].numpy(), padded["x.lora_A.w"].numpy(), 8.0), delta_weight(b2, a2, 8.0), atol=1e-12)
    assert tuple(misfit.content.array_records["arrays"]["x.lora_A.w"].shape) == (4, 3)  # left as it came: the schema check rejects it


def test_flexlora_strategy_averages_products_and_fedavgs_the_rest():
    from flower_messages import train_reply
    from strategies import build_strategy

    rng = np.random.default_rng(3)
    pairs = [(rng.normal(size=(4, 3)), rng.normal(size=(3, 3))) for _ in range(2)]  # rank 3 = min(4, 3): the split is exact
    replies = [train_reply({"m.lora_B.w": b, "m.lora_A.w": a, "m.bias": np.full(4, float(i))}, num_examples=n, node_id=i + 1)
               for i, ((b, a), n) in enumerate(zip(pairs, (1.0, 3.0)))]

    arrays, _ = build_strategy("flexlora", {}).aggregate_train(1, replies)  # lora_alpha 16 by default

    np.testing.assert_allclose(delta_weight(arrays["m.lora_B.w"].numpy(), arrays["m.lora_A.w"].numpy(), 16.0),
                               average_delta(pairs, [1, 3], 16.0), atol=1e-12)
    np.testing.assert_allclose(arrays["m.bias"].numpy(), np.full(4, 0.75))


def test_flexlora_refuses_mismatched_pairs_and_weights():
    with pytest.raises(ValueError):
        delta_weight(np.ones((4, 2)), np.ones((3, 3)), 1.0)
    with pytest.raises(ValueError):
        average_delta([(np.ones((4, 1)), np.ones((1, 3)))], [0.0], 1.0)
    with pytest.raises(ValueError):
        average_delta([(np.ones((4, 1)), np.ones((1, 3))), (np.ones((2, 1)), np.ones((1, 3)))], [1, 1], 1.0)


# ------------------------------------------------------------------ 2 rounds through the Ray engine

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "ffa"])
def test_two_rounds_send_only_adapters_and_leave_the_base_bit_identical(lora_config, tiny_gpt2, mode, tmp_path, shared_ray, process_guard):
    cfg = _with(lora_config, "lora", mode=mode)
    ctx = RunContext(load_config(cfg))
    adapters = {k: v for k, v in ctx.start_state.items() if k in ctx.plan.sent}
    base = transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2).state_dict()

    result = fedft.run(cfg, out=tmp_path / "run", quiet=True)

    assert result.summary["status"] == "completed"
    final = load_checkpoint(result.run_dir / "model.pt")["state_dict"]
    prefix = "lm.base_model.model."
    for key, value in base.items():  # the frozen base, as saved by save_pretrained, bit for bit
        stored = key.rsplit(".", 1)
        name = f"{prefix}{key}" if f"{prefix}{key}" in final else f"{prefix}{stored[0]}.base_layer.{stored[1]}"
        assert torch.equal(final[name], value), key
    for key, value in ctx.start_state.items():  # adapters that travel changed; nothing else did
        assert torch.equal(final[key], value) != (key in adapters), key
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    adapter_bytes = ArrayRecord({k: v for k, v in adapters.items()}).count_bytes()
    for row in rows[1:]:  # exactly the adapters, both directions, 3 clients
        assert int(row["bytes_down"]) == int(row["bytes_up"]) == 3 * adapter_bytes
    assert all(np.isfinite(float(r["test_perplexity"])) and float(r["test_accuracy"]) >= 0 for r in rows)
    assert float(rows[-1]["test_loss"]) < float(rows[0]["test_loss"])


@pytest.mark.slow
def test_mixed_ranks_train_each_client_at_its_rank_and_aggregate_by_flexlora(lora_config, tmp_path, shared_ray, process_guard):
    cfg = _with(_with(lora_config, "lora", ranks=[1, 2, 4]), "strategy", name="flexlora")
    ctx = RunContext(load_config(cfg))
    adapters = {k: v for k, v in ctx.start_state.items() if k in ctx.plan.sent}
    per_rank = {r: ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(x)) for k, x in _at(adapters, r).items()}).count_bytes() for r in (1, 2, 4)}

    result = fedft.run(cfg, out=tmp_path / "run", quiet=True)

    assert result.summary["status"] == "completed"
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    for row in rows[1:]:  # each client got and sent its own rank's adapters
        assert int(row["clients_replied"]) == 3 and int(row["clients_rejected"]) == 0
        assert int(row["bytes_down"]) == int(row["bytes_up"]) == sum(per_rank.values())
    final = load_checkpoint(result.run_dir / "model.pt")["state_dict"]
    for key in adapters:  # the server keeps the largest rank
        assert tuple(final[key].shape) == tuple(adapters[key].shape) and not torch.equal(final[key], adapters[key]), key
    assert float(rows[-1]["test_loss"]) < float(rows[0]["test_loss"])


def _at(adapters: dict, rank: int) -> dict:
    """`adapters` (B and A tensors by peft name) moved to `rank`."""
    out = {}
    for key_b in [k for k in adapters if ".lora_B." in k]:
        key_a = key_b.replace(".lora_B.", ".lora_A.")
        out[key_b], out[key_a] = to_rank(adapters[key_b].numpy(), adapters[key_a].numpy(), rank)
    return out


# ------------------------------------------------------------------ export and generate

def _trained_run_dir(lora_config, tmp_path):
    """A run folder whose model.pt holds the start state with nonzero (seeded) adapters, as a run writes it."""
    from fedft.fl.server.text_metrics import checkpoint_extra
    from fedft.state.model_file import save_checkpoint

    cfg = load_config(lora_config)
    ctx = RunContext(cfg)
    gen = torch.Generator().manual_seed(5)
    state = {k: (torch.randn(v.shape, generator=gen) * 0.5 if k in ctx.plan.sent else v) for k, v in ctx.start_state.items()}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_checkpoint(run_dir / "model.pt", state, architecture="hf", num_classes=ctx.num_classes, input_shape=ctx.input_shape,
                    dataset=cfg.data.name, config_json=cfg.to_json(), extra=checkpoint_extra(cfg, ctx.data))
    model = ctx.build_model()
    model.load_state_dict(state)
    return run_dir, model.eval()


def test_export_merged_reloads_with_transformers_alone_and_gives_the_same_logits(lora_config, tmp_path, capsys):
    # Prepare: a run folder with a nonzero adapter, and base + adapter's logits
    run_dir, with_adapter = _trained_run_dir(lora_config, tmp_path)
    tokens = torch.randint(1, 97, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = with_adapter(tokens)

    # Execute
    code = main(["export", str(run_dir), "--merged", str(tmp_path / "merged")])

    # Assert: transformers alone, no peft wrapper, the same logits; the vocabulary beside it
    assert code == 0 and "fedft export: wrote" in capsys.readouterr().out
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in k for k in merged.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=tokens).logits, expected, atol=1e-5, rtol=1e-5)
    assert (tmp_path / "merged" / "fedft_vocabulary.json").is_file()


def test_export_refuses_a_non_empty_folder_and_leaves_it_as_it_was(lora_config, tmp_path, capsys):
    run_dir, _ = _trained_run_dir(lora_config, tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")

    code = main(["export", str(run_dir), "--merged", str(tmp_path / "taken")])

    assert code == 2 and "--merged" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


@pytest.mark.slow  # about 20 s of sampling on 2 cores
def test_generate_samples_an_hf_run_beyond_its_context_within_the_vocabulary(lora_config, tmp_path):
    from fedft.ml.generate import generate, load_text_model

    run_dir, _ = _trained_run_dir(lora_config, tmp_path)
    model, vocab = load_text_model(run_dir / "model.pt")

    text = generate(model, vocab, "ROMEO:", 80, temperature=1.0, seed=1)  # 86 characters > the model's 64 positions

    assert text.startswith("ROMEO:") and len(text) == 86 and "\ufffd" not in text
    assert text == generate(model, vocab, "ROMEO:", 80, temperature=1.0, seed=1)


# ------------------------------------------------------------------ DP-SGD on the adapters

@pytest.mark.parametrize("mode", ["lora", "ffa"])
def test_opacus_samples_per_example_gradients_of_the_trainable_adapters_only(lora_config, mode):
    from opacus import GradSampleModule

    from fedft.ml.finetune import freeze
    from fedft.privacy.dp_sgd import make_dp_compatible

    ctx = RunContext(load_config(_with(lora_config, "lora", mode=mode)))
    model = make_dp_compatible(ctx.build_model())
    model.load_state_dict(ctx.start_state)
    freeze(model, ctx.plan)
    sampled = GradSampleModule(model)
    x, y = ctx.client_tensors(0)[:2]

    logits = sampled(x[:3])
    torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:3].reshape(-1), reduction="sum").backward()

    with_samples = {n.removeprefix("_module.") for n, p in sampled.named_parameters() if getattr(p, "grad_sample", None) is not None}
    assert with_samples == set(ctx.plan.trainable)  # the base (and FFA's A) is neither sampled nor clipped nor noised
    assert all(p.grad_sample.shape[0] == 3 for p in sampled.parameters() if getattr(p, "grad_sample", None) is not None)
    sampled._close()


def test_a_local_dp_round_trains_the_adapters_and_accounts_epsilon(lora_config):
    from fedft.fl.client.pipeline import local_update

    cfg = load_config(_with(_with(lora_config, "lora", mode="ffa"), "privacy", mode="local", noise_multiplier=1.0, max_grad_norm=1.0))
    ctx = RunContext(cfg)
    sent = {k: ctx.start_state[k] for k in ctx.plan.sent}

    state, metrics = local_update(cfg.to_json(), 0, 1, sent, frozen_digest=ctx.frozen_digest)

    assert state is not None and set(state) == set(sent)
    assert any(not torch.equal(state[k], sent[k]) for k in sent)
    assert 0 < metrics["epsilon"] < float("inf") and metrics["dp_steps"] >= 1


@pytest.mark.slow
def test_central_dp_releases_a_noised_adapter_update_and_accounts_it(lora_config, tmp_path, shared_ray, process_guard):
    cfg = _with(_with(lora_config, "lora", mode="ffa"), "privacy", mode="central", noise_multiplier=1.0, clipping_norm=0.5, client_sampling="fixed")
    ctx = RunContext(load_config(cfg))

    result = fedft.run(cfg, out=tmp_path / "run", quiet=True)

    assert result.summary["status"] == "completed"
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    epsilons = [float(r["epsilon"]) for r in rows[1:]]
    assert 0 < epsilons[0] < epsilons[1] < float("inf")
    final = load_checkpoint(result.run_dir / "model.pt")["state_dict"]
    for key, value in ctx.start_state.items():  # only B moved (by the noised mean update); base and A as they started
        assert torch.equal(final[key], value) != (key in ctx.plan.sent), key
