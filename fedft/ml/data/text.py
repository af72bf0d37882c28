"""Text: a play split by speaking role, one client per role, next-character targets.

A plain-text play (`data.name = "text"`, `data.path` = the file) is parsed into
speeches: a block of lines separated from the next by a blank line, whose first
line is `NAME:`. Each role's text is its speeches in play order, kept verbatim
(header line included, so a model learns the play's layout and `fedft generate
--prompt "ROMEO:"` continues in it). Roles smaller than `data.min_chars` are
dropped or merged into one client (`data.small_roles`); the largest
`partition.num_clients` roles become clients 0, 1, ... by size.

Each client's text is cut once: the last `data.test_fraction` of it (in play
order) goes to the server test set, the rest is the client's. Text becomes
sequences of `data.seq_len` tokens with next-character targets (x = t[i:i+T],
y = t[i+1:i+T+1], windows every T characters, so every character is a target once).
The result is an ordinary `FederatedData`: x and y are int64 N x T, num_classes
is the vocabulary size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedft.errors import FedftError
from fedft.ml.data.arrays import ArrayDataset
from fedft.ml.data.federated import FederatedData
from fedft.ml.data.hf_shakespeare import load_hf_shakespeare_roles
from fedft.ml.data.partition import split_train_val
from fedft.ml.data.registry import register_dataset

TEXT = "text"
HF_SHAKESPEARE = "hf:flwrlabs/shakespeare"
TEXT_DATASETS = (TEXT, HF_SHAKESPEARE)
MERGED_ROLE = "(small roles)"
UNKNOWN = "\ufffd"  # how the unknown token prints
_NAME_LINE = re.compile(r"[^\s:][^:]{0,59}:")  # `NAME:` alone on its line (60 chars at most)


def is_text_dataset(name: str) -> bool:
    return name in TEXT_DATASETS


def check_text_partition(dataset: str, method: str) -> None:
    """Text data is split by speaking role; image data by label."""
    if is_text_dataset(dataset) != (method == "roles"):
        if method == "roles":
            raise FedftError("partition.method", f"'roles' needs a text dataset, not '{dataset}'.", 'use data.name = "text" with data.path, or another partition method.')
        raise FedftError("partition.method", f"'{method}' does not apply to text data ('{dataset}'): each speaking role is a client.", 'set partition.method = "roles".')


# ------------------------------------------------------------------ vocabulary

@dataclass(frozen=True)
class Vocabulary:
    """A fixed character vocabulary: token 0 is 'unknown', then `chars` in order.

    The same 97 tokens for every corpus (newline + printable ASCII), so models
    trained on different texts share one output layer; saved in model.pt.
    """

    chars: str

    @classmethod
    def default(cls) -> Vocabulary:
        return cls("\n" + "".join(chr(c) for c in range(32, 127)))

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars) or UNKNOWN in self.chars:
            raise ValueError("vocabulary characters must be distinct and not the unknown marker")

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """Characters -> int64 token ids; any character outside `chars` -> 0."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.zeros(max(map(ord, self.chars)) + 1, dtype=np.int64)
        table[[ord(c) for c in self.chars]] = np.arange(1, self.size)
        inside = codes < len(table)
        return np.where(inside, table[np.minimum(codes, len(table) - 1)], 0).astype(np.int64)

    def decode(self, tokens) -> str:
        lookup = UNKNOWN + self.chars
        return "".join(lookup[int(t)] for t in tokens)


# ------------------------------------------------------------------ parsing

@dataclass(frozen=True)
class Speech:
    role: str
    text: str  # the block verbatim, header line included, without the blank line after it


def parse_play(text: str) -> list[Speech]:
    """Split a play into speeches. A block (lines between blank lines) whose first
    line is `NAME:` is a speech by NAME; a block without one continues the previous
    speaker (a new speech by the same role); text before the first name is dropped."""
    speeches: list[Speech] = []
    role = None
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        block = block.strip("\n")
        if not block.strip():
            continue
        first = block.split("\n", 1)[0].rstrip()
        if _NAME_LINE.fullmatch(first):
            role = first[:-1].strip()
        if role is not None:
            speeches.append(Speech(role, block))
    return speeches


def role_texts(speeches: list[Speech]) -> dict[str, str]:
    """Each role's speeches in play order, each followed by a blank line, as the play prints them."""
    parts: dict[str, list[str]] = {}
    for s in speeches:
        parts.setdefault(s.role, []).append(s.text + "\n\n")
    return {role: "".join(p) for role, p in parts.items()}


def read_play(path: str) -> dict[str, str]:
    if not path:
        raise FedftError("data.path", "is empty; the text dataset reads a plain-text play from a file.", 'pass the play, e.g. --set data.path=tinyshakespeare.txt (any UTF-8 play whose speeches start with a `NAME:` line).')
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FedftError("data.path", f"'{path}' does not exist.", "point data.path at a plain-text play (UTF-8, `NAME:` lines start speeches).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FedftError("data.path", f"cannot read '{path}' as UTF-8 text ({exc}).", "point data.path at a plain-text play.") from None
    roles = role_texts(parse_play(text))
    if not roles:
        raise FedftError("data.path", f"'{path}' has no speeches (no block starts with a `NAME:` line).", "use a play in which a line `NAME:` starts each speech.")
    return roles


def select_roles(roles: dict[str, str], num_clients: int, min_chars: int, small_roles: str) -> list[tuple[str, str]]:
    """The `num_clients` largest roles with at least `min_chars` characters (ties by
    name); with `small_roles = "merge"` the smaller roles first become one more role."""
    large = {r: t for r, t in roles.items() if len(t) >= min_chars}
    small = [t for r, t in roles.items() if len(t) < min_chars]
    if small_roles == "merge" and small:
        large[MERGED_ROLE] = "".join(small)
    ranked = sorted(large.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    if num_clients > len(ranked):
        raise FedftError(
            "partition.num_clients",
            f"{num_clients} clients but only {len(ranked)} roles have at least data.min_chars={min_chars} characters"
            f" (of {len(roles)} roles, small roles {'merged' if small_roles == 'merge' else 'dropped'}).",
            f"use at most {len(ranked)} clients, lower data.min_chars, or set data.small_roles = \"merge\".",
        )
    return ranked[:num_clients]


def sequences(tokens: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each n x seq_len with y = x shifted by one character; n = (len - 1) // seq_len."""
    n = max(0, (len(tokens) - 1) // seq_len)
    return tokens[: n * seq_len].reshape(n, seq_len), tokens[1 : n * seq_len + 1].reshape(n, seq_len)


# ------------------------------------------------------------------ federated data

@dataclass(frozen=True)
class TextFederatedData(FederatedData):
    roles: tuple[str, ...] = ()  # role of client 0, 1, ...
    vocabulary: str = ""  # Vocabulary.chars
    client_tests: tuple[np.ndarray, ...] = ()  # per client: its held-out tail's indices into `full` (together: `test`)


def load_roles(name: str, path: str) -> dict[str, str]:
    if name == HF_SHAKESPEARE:
        return load_hf_shakespeare_roles()
    return read_play(path)


def text_federated_data(
    name: str, path: str, test_fraction: float, val_fraction: float, num_clients: int, seed: int,
    seq_len: int = 80, min_chars: int = 2000, small_roles: str = "drop", max_client_sequences: int = 0,
) -> TextFederatedData:
    """Clients = the largest roles; test = each client role's held-out tail."""
    vocab = Vocabulary.default()
    selected = select_roles(load_roles(name, path), num_clients, min_chars, small_roles)
    xs, ys, clients, test = [], [], [], []
    offset = 0
    for cid, (role, text) in enumerate(selected):
        cut = int(round(len(text) * (1.0 - test_fraction)))
        x_tr, y_tr = sequences(vocab.encode(text[:cut]), seq_len)
        x_te, y_te = sequences(vocab.encode(text[cut:]), seq_len)
        if len(x_tr) == 0:
            raise FedftError("data.seq_len", f"role '{role}' has too little text for one training sequence of {seq_len} characters.", "raise data.min_chars or lower data.seq_len.")
        if 0 < max_client_sequences < len(x_tr):  # a seeded subset, kept in play order
            keep = np.sort(np.random.default_rng([seed, cid, 0x7E47]).choice(len(x_tr), max_client_sequences, replace=False))
            x_tr, y_tr = x_tr[keep], y_tr[keep]
        train, val = split_train_val(offset + np.arange(len(x_tr)), val_fraction, seed, cid)
        clients.append((np.sort(train), np.sort(val)))
        test.append(offset + len(x_tr) + np.arange(len(x_te)))
        xs += [x_tr, x_te]
        ys += [y_tr, y_te]
        offset += len(x_tr) + len(x_te)
    full = ArrayDataset(name, np.concatenate(xs), np.concatenate(ys), vocab.size)
    return TextFederatedData(full=full, test=np.concatenate(test), clients=tuple(clients), roles=tuple(r for r, _ in selected), vocabulary=vocab.chars,
                             client_tests=tuple(test))


def public_text(name: str, path: str, clients_name: str, clients_path: str, num_clients: int, min_chars: int, small_roles: str) -> str:
    """The public text for `fedft pretrain`: the speeches (in play order) of the play `name`/`path`
    that no client speaks. From the clients' own play that is every role that is not one of its
    `num_clients` client roles (nor, when they are merged into a client, the small roles); from
    another play, all of it. Never a character of any client's text, train or test."""
    source = path or (clients_path if name == clients_name else "")
    speeches = load_speeches(name, source)
    if name == clients_name and source == clients_path:
        roles = role_texts(speeches)
        chosen = {role for role, _ in select_roles(roles, num_clients, min_chars, small_roles)}
        if MERGED_ROLE in chosen:
            chosen |= {r for r, t in roles.items() if len(t) < min_chars}
        speeches = [s for s in speeches if s.role not in chosen]
    return "".join(s.text + "\n\n" for s in speeches)


def load_speeches(name: str, path: str) -> list[Speech]:
    """Every speech of a text dataset in play order (the Hub's Shakespeare: role by role)."""
    if name == HF_SHAKESPEARE:
        return [Speech(role, text.rstrip("\n")) for role, text in load_hf_shakespeare_roles().items()]
    read_play(path)  # the one-line errors for a missing or speechless play
    return parse_play(Path(path).read_text(encoding="utf-8"))


@register_dataset(TEXT)
def text_dataset(path: str = "") -> ArrayDataset:
    """The whole play as sequences of 80 characters, roles one after another (no split)."""
    vocab = Vocabulary.default()
    x, y = sequences(vocab.encode("".join(read_play(path).values())), 80)
    return ArrayDataset(TEXT, x, y, vocab.size)
