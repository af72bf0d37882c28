"""Text data: roles from a play, the vocabulary, sequences, the bigram baseline,
char_lstm and its DP twin, and one tiny federated round on real Ray."""

import collections
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import fedft
from conftest import ROOT
from fedft.cli import main as cli_main
from fedft.errors import FedftError
from fedft.ml.bigram import bigram_accuracy, bigram_counts, bigram_perplexity, bigram_predictions
from fedft.ml.data import federated_data
from fedft.ml.data.text import MERGED_ROLE, UNKNOWN, TextFederatedData, Vocabulary, parse_play, role_texts, select_roles, sequences
from fedft.ml.models import build_model
from fedft.ml.models.dp_layers import from_dp, to_dp
from fedft.state.model_file import load_checkpoint

CLIENT_ROLES = ("ROMEO", "JULIET", "NURSE", "MERCUTIO")  # the generated play's largest roles, largest first


@pytest.fixture(scope="module")
def corpus(play) -> str:
    return play.text


# ------------------------------------------------------------------ parsing

def test_tiny_play_parses_by_hand():
    play = "A prologue nobody speaks.\n\nROMEO:\nBut soft!\nWhat light?\n\nJULIET:\nAy me.\n\n\nStill Juliet, after a gap.\n\nROMEO:\n\nNURSE:\nAnon!\n"
    speeches = parse_play(play)
    assert [(s.role, s.text) for s in speeches] == [
        ("ROMEO", "ROMEO:\nBut soft!\nWhat light?"),
        ("JULIET", "JULIET:\nAy me."),
        ("JULIET", "Still Juliet, after a gap."),  # a block without a name continues the speaker
        ("ROMEO", "ROMEO:"),  # a speech with no lines is still a speech
        ("NURSE", "NURSE:\nAnon!"),
    ]
    assert role_texts(speeches) == {
        "ROMEO": "ROMEO:\nBut soft!\nWhat light?\n\nROMEO:\n\n",
        "JULIET": "JULIET:\nAy me.\n\nStill Juliet, after a gap.\n\n",
        "NURSE": "NURSE:\nAnon!\n\n",
    }


def test_play_roles_lose_and_duplicate_nothing(corpus, play):
    speeches = parse_play(corpus)
    lines = corpus.split("\n")
    # Independent count: a speech starts at each non-blank line that follows a blank line (or opens the file).
    starts = [line for i, line in enumerate(lines) if line.strip() and (i == 0 or not lines[i - 1].strip())]
    assert len(speeches) == len(starts) - 1 == sum(play.speeches.values())  # the prologue opens the file and is nobody's
    assert all(s.endswith(":") for s in starts[1:])  # in this play every speech has a `NAME:` line
    roles = role_texts(speeches)
    assert len(roles) == len({s[:-1] for s in starts[1:]}) == len(play.speeches)
    assert {role: sum(1 for s in speeches if s.role == role) for role in roles} == play.speeches
    assert sum(1 for s in speeches if s.role == "ROMEO") == corpus.count("\nROMEO:\n") == play.speeches["ROMEO"]
    prologue = set(corpus.split("\n\n", 1)[0].split("\n"))
    in_play = collections.Counter(line for line in lines if line.strip() and line not in prologue)
    # Every non-blank line of the play (but the prologue) is in exactly one role's text, as often as in the play.
    in_roles = collections.Counter(line for text in roles.values() for line in text.split("\n") if line.strip())
    assert in_roles == in_play


def test_small_roles_are_dropped_or_merged():
    roles = {"A": "a" * 50, "B": "b" * 30, "C": "c" * 5, "D": "d" * 7}
    assert select_roles(roles, 2, 10, "drop") == [("A", roles["A"]), ("B", roles["B"])]
    merged = select_roles(roles, 3, 10, "merge")
    assert merged[2] == (MERGED_ROLE, "c" * 5 + "d" * 7)
    with pytest.raises(FedftError, match=r"partition.num_clients: 3 clients but only 2 roles .* Fix: use at most 2"):
        select_roles(roles, 3, 10, "drop")


# ------------------------------------------------------------------ vocabulary and sequences

def test_vocabulary_round_trip(corpus):
    vocab = Vocabulary.default()
    assert vocab.size == 97 and vocab.encode("\n").tolist() == [1]
    tokens = vocab.encode(corpus)
    assert tokens.dtype == np.int64 and len(tokens) == len(corpus) and tokens.min() >= 1  # every character known
    assert vocab.decode(tokens) == corpus
    assert vocab.encode("é\tü€").tolist() == [0, 0, 0, 0]  # unknown characters: one token
    assert vocab.decode(vocab.encode("Romeo é")) == "Romeo " + UNKNOWN
    assert Vocabulary(vocab.chars) == vocab  # what model.pt stores is enough to rebuild it


def test_sequences_are_next_character_pairs():
    tokens = np.arange(10)
    x, y = sequences(tokens, 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert sequences(np.arange(3), 3)[0].shape == (0, 3)


def test_text_federated_data_shape_and_splits(tmp_path, play):
    data = federated_data("text", str(play.path), 0.2, 0.1, "roles", 4, 0, seq_len=40, max_client_sequences=50)
    assert isinstance(data, TextFederatedData)
    assert data.roles == CLIENT_ROLES  # the largest roles
    assert data.full.x.dtype == np.int64 and data.full.x.shape[1:] == (40,) and data.full.num_classes == 97
    assert np.array_equal(data.full.x[:, 1:], data.full.y[:, :-1])
    used = [data.test] + [part for pair in data.clients for part in pair]
    everything = np.concatenate(used)
    assert len(everything) == len(set(everything.tolist()))  # train, val and test never overlap
    assert all(len(t) + len(v) == 50 for t, v in data.clients)  # capped
    vocab = Vocabulary(data.vocabulary)
    first_test = vocab.decode(data.full.x[data.test[0]])
    romeo = role_texts(parse_play(play.text))["ROMEO"]
    assert first_test in romeo[int(len(romeo) * 0.8) - 1 :]  # test text is the role's tail


    from fedft.ml.data.plot import plot_label_counts

    assert all(f.is_file() for f in plot_label_counts(data, tmp_path / "roles.png", "roles"))  # `fedft partitions`: text per role


# ------------------------------------------------------------------ bigram baseline

def test_bigram_baseline_by_hand():
    # Corpus "abab" + "ba" over vocabulary {a: 0, b: 1, c: 2}: pairs a->b, b->a, a->b, b->a.
    x, y = np.array([[0, 1, 0], [1, 1, 1]]), np.array([[1, 0, 1], [0, 0, 2]])
    counts = bigram_counts(x, y, 3)
    assert counts.tolist() == [[0, 2, 0], [3, 0, 1], [0, 0, 0]]
    assert bigram_predictions(counts).tolist() == [1, 0, 0]  # c never seen before: most frequent next overall (a)
    assert bigram_accuracy(counts, np.array([0, 1, 2, 1]), np.array([1, 1, 0, 0])) == 0.75
    # add-one: P(b|a) = 3/5, P(a|b) = 4/7 -> perplexity = exp(-(log 3/5 + log 4/7) / 2)
    expected = math.exp(-(math.log(3 / 5) + math.log(4 / 7)) / 2)
    assert bigram_perplexity(counts, np.array([0, 1]), np.array([1, 0])) == pytest.approx(expected)


# ------------------------------------------------------------------ model and its DP twin

def test_char_lstm_shapes_and_sizes():
    model = build_model("char_lstm", (80,), 97, embedding_dim=8, hidden_size=32, num_layers=2)
    assert model(torch.zeros(3, 80, dtype=torch.int64)).shape == (3, 80, 97)
    assert (model.embedding.embedding_dim, model.lstm.hidden_size, model.lstm.num_layers) == (8, 32, 2)
    leaf = build_model("char_lstm", (80,), 80)  # LEAF: 80 characters, 8 / 256 / 256
    assert sum(p.numel() for p in leaf.parameters()) == 80 * 8 + 4 * 256 * (8 + 256 + 2) + 4 * 256 * (256 + 256 + 2) + 256 * 80 + 80


def test_dp_lstms_have_the_same_array_names_and_function():
    """fedft's FastDPLSTM (to_dp) and Opacus' DPLSTM (Opacus' own fix) both load and give back plain checkpoints."""
    from opacus.validators import ModuleValidator

    torch.manual_seed(0)
    plain = build_model("char_lstm", (20,), 97, hidden_size=16)
    reference = {k: v.clone() for k, v in plain.state_dict().items()}
    x = torch.randint(1, 97, (2, 20))
    expected = plain(x)
    for dp_model, layer in ((to_dp(build_model("char_lstm", (20,), 97, hidden_size=16)), "FastDPLSTM"), (ModuleValidator.fix(plain), "DPLSTM")):
        dp_model.load_state_dict(reference)  # non-DP checkpoint -> DP model
        assert type(dp_model.lstm).__name__ == layer
        assert {k: v.shape for k, v in dp_model.state_dict().items()} == {k: v.shape for k, v in reference.items()}
        assert torch.allclose(dp_model(x), expected, atol=1e-5)
        back = from_dp(dp_model)
        assert isinstance(back.lstm, torch.nn.LSTM) and list(back.state_dict()) == list(reference)  # same order too
        assert all(torch.equal(back.state_dict()[k], v) for k, v in reference.items())


def test_one_dp_sgd_client_round_on_a_dp_lstm(play):
    """A client's round under Opacus DP-SGD: FastDPLSTM in, the same array names out."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    data = federated_data("text", str(play.path), 0.2, 0.1, "roles", 3, 0, seq_len=20, max_client_sequences=64)
    train_set, _ = data.client_sets(0)
    torch.manual_seed(0)
    global_model = build_model("char_lstm", (20,), data.full.num_classes, embedding_dim=4, hidden_size=16, num_layers=1)
    global_state = {k: v.clone() for k, v in global_model.state_dict().items()}
    model = to_dp(build_model("char_lstm", (20,), data.full.num_classes, embedding_dim=4, hidden_size=16, num_layers=1))
    model.load_state_dict(global_state)
    loader = DataLoader(TensorDataset(torch.from_numpy(train_set.x), torch.from_numpy(train_set.y)), batch_size=16)
    engine = PrivacyEngine(accountant="rdp")
    private, optimizer, loader = engine.make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0)
    steps = 0
    for xb, yb in loader:
        if len(xb) == 0:
            continue
        optimizer.zero_grad()
        logits = private(xb)
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1)).backward()
        optimizer.step()
        steps += 1
    assert steps > 0 and engine.get_epsilon(1e-5) > 0
    assert {k: v.shape for k, v in private._module.state_dict().items()} == {k: v.shape for k, v in global_state.items()}
    update = from_dp(private._module).state_dict()
    assert list(update) == list(global_state)  # no `_module.` prefix, PyTorch's order
    assert any(not torch.equal(update[k], global_state[k]) for k in global_state)
    global_model.load_state_dict(update)  # a DP update loads into the non-DP model


# ------------------------------------------------------------------ end to end

def _tiny_text_config(tmp_path, play) -> dict:
    return {
        "name": "tiny-text",
        "seed": 3,
        "data": {"name": "text", "path": str(play.path), "seq_len": 20, "max_client_sequences": 40},
        "partition": {"method": "roles", "num_clients": 3},
        "model": {"name": "char_lstm", "embedding_dim": 4, "hidden_size": 16, "num_layers": 1},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 8},
        "simulation": {"rounds": 1, "clients_per_round": 2, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs")},
    }


@pytest.mark.slow
def test_tiny_text_round_writes_perplexity_baseline_and_generates(tmp_path, play, shared_ray, process_guard, capsys):
    result = fedft.run(_tiny_text_config(tmp_path, play), out=tmp_path / "run", quiet=True)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 1
    assert 0 < summary["baseline_accuracy"] < 1 and summary["baseline_perplexity"] > 1
    assert summary["roles"] == list(CLIENT_ROLES[:3])
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert [r["round"] for r in rows] == ["0", "1"] and rows[1]["clients_replied"] == "2"
    for row in rows:
        assert float(row["test_perplexity"]) == pytest.approx(math.exp(float(row["test_loss"])))
    assert float(rows[0]["test_perplexity"]) == pytest.approx(97, rel=0.2)  # untrained: about uniform over 97 tokens
    ckpt = load_checkpoint(result.run_dir / "model.pt")
    assert ckpt["vocabulary"] == Vocabulary.default().chars and ckpt["model_options"]["hidden_size"] == 16

    args = ["generate", "--model", str(result.run_dir / "model.pt"), "--prompt", "ROMEO:", "--length", "50", "--temperature", "0.8", "--seed", "1"]
    assert cli_main(args) == 0
    first = capsys.readouterr().out
    assert cli_main(args) == 0
    assert capsys.readouterr().out == first  # seeded
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 50 + 1  # + print's newline
    assert UNKNOWN not in first


def test_generate_rejects_an_image_model(tmp_path, capsys):
    from fedft.state.model_file import save_checkpoint

    path = save_checkpoint(tmp_path / "cnn.pt", build_model("seed_cnn").state_dict(), architecture="seed_cnn", num_classes=10, input_shape=(1, 28, 28), dataset="mnist-5k")
    assert cli_main(["generate", "--model", str(path)]) == 2
    assert capsys.readouterr().err.startswith("fedft: error: --model: ")


@pytest.mark.parametrize(
    "override,field",
    [
        ("partition.method=iid", "partition.method"),
        ("partition.num_clients=500", "partition.num_clients"),
        ("data.path=/nonexistent/play.txt", "data.path"),
        ("data.small_roles=keep", "data.small_roles"),
    ],
)
def test_text_config_errors_are_one_line(override, field, tmp_path, play):
    from fedft.api import prepare

    cfg = _tiny_text_config(tmp_path, play)
    cfg["simulation"]["clients_per_round"] = 2
    with pytest.raises(FedftError) as err:
        prepare(cfg, [override])
    assert err.value.field == field and "\n" not in str(err.value)


@pytest.mark.slow
def test_hf_shakespeare_offline_fails_with_one_line(tmp_path, process_guard):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf")}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "fedft", "run", "simulations/shakespeare_lstm.toml", "--set", "data.name=hf:flwrlabs/shakespeare", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fedft: error: data.name: cannot load 'flwrlabs/shakespeare'"), proc.stderr
    assert not out.exists()


def test_hf_shakespeare_rows_become_role_texts(monkeypatch):
    """LEAF's rows (character_id, 80 characters, the next one) rebuild each role's text."""
    import datasets
    import flwr_datasets

    from fedft.ml.data.hf_shakespeare import load_hf_shakespeare_roles

    texts = {"PLAY_ROMEO": "But soft, what light through yonder window breaks? " * 3, "PLAY_JULIET": "O Romeo, Romeo! wherefore art thou Romeo? " * 3}
    rows = {"character_id": [], "x": [], "y": []}
    for role, text in texts.items():
        for i in range(len(text) - 80):
            rows["character_id"].append(role)
            rows["x"].append(text[i : i + 80])
            rows["y"].append(text[i + 80])

    class FakeFederatedDataset:
        def __init__(self, **kwargs):
            assert kwargs["dataset"] == "flwrlabs/shakespeare"

        def load_split(self, split):
            return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(flwr_datasets, "FederatedDataset", FakeFederatedDataset)
    assert load_hf_shakespeare_roles() == texts


@pytest.mark.slow
def test_one_tiny_round_with_local_dp_sends_plain_lstm_names(tmp_path, play, shared_ray, process_guard):
    # DP-SGD on a char_lstm through the real Ray engine: FastDPLSTM inside, plain names out.
    cfg = _tiny_text_config(tmp_path, play)
    cfg["privacy"] = {"mode": "local", "noise_multiplier": 1.0, "max_grad_norm": 1.0}
    result = fedft.run(cfg, out=tmp_path / "dp", quiet=True)
    plain = build_model("char_lstm", (cfg["data"].get("seq_len", 80),), 97, **{k: v for k, v in cfg["model"].items() if k != "name"})
    assert result.summary["status"] == "completed"
    assert result.summary["epsilon"] > 0  # the clients trained under DP and accounted for it
    assert sorted(result.state) == sorted(plain.state_dict())
