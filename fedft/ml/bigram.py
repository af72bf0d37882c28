"""The bigram-count baseline for next-character prediction.

Fitted by counting, in the clients' training sequences, how often character b
follows character a; it predicts the most frequent follower of the previous
character. A federated model that cannot beat it has learned less than counting.
Pure functions of token arrays (x = previous characters, y = next characters,
same shape, as in fedft/ml/data/text.py).
"""

from __future__ import annotations

import numpy as np


def bigram_counts(x: np.ndarray, y: np.ndarray, vocab_size: int) -> np.ndarray:
    """counts[a, b] = number of positions where x == a and y == b (a V x V matrix)."""
    pairs = np.asarray(x, dtype=np.int64).ravel() * vocab_size + np.asarray(y, dtype=np.int64).ravel()
    return np.bincount(pairs, minlength=vocab_size * vocab_size).reshape(vocab_size, vocab_size)


def bigram_predictions(counts: np.ndarray) -> np.ndarray:
    """Per previous character a: argmax_b counts[a, b] (lowest id on ties); a character
    never seen as a predecessor gets the most frequent next character overall."""
    best = counts.argmax(axis=1)
    unseen = counts.sum(axis=1) == 0
    best[unseen] = counts.sum(axis=0).argmax()
    return best


def bigram_accuracy(counts: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of positions where prediction[x] == y."""
    y = np.asarray(y).ravel()
    return float(np.mean(bigram_predictions(counts)[np.asarray(x).ravel()] == y)) if y.size else float("nan")


def bigram_perplexity(counts: np.ndarray, x: np.ndarray, y: np.ndarray, smoothing: float = 1.0) -> float:
    """exp(-mean log P(y | x)) with add-k smoothing: P(b | a) = (counts[a, b] + k) / (sum_b' counts[a, b'] + k V)."""
    v = counts.shape[1]
    prob = (counts + smoothing) / (counts.sum(axis=1, keepdims=True) + smoothing * v)
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    return float(np.exp(-np.mean(np.log(prob[x, y])))) if y.size else float("nan")


def bigram_baseline(data) -> dict[str, float]:  # data: FederatedData with token sequences
    """Fit on every client's training split, score on the server test set."""
    train = np.concatenate([t for t, _ in data.clients])
    counts = bigram_counts(data.full.x[train], data.full.y[train], data.full.num_classes)
    test_x, test_y = data.full.x[data.test], data.full.y[data.test]
    return {"baseline_accuracy": bigram_accuracy(counts, test_x, test_y), "baseline_perplexity": bigram_perplexity(counts, test_x, test_y)}
