"""A small generated play for the text tests: nothing is read from outside the repo.

Roles speak in a fixed order of sizes, so which roles become clients is known in
advance; the speech counts are returned, so tests check parsing against what was
written rather than against numbers from a particular corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

# (role, speeches): 21 roles above data.min_chars (2,000 characters), enough for the ready
# Shakespeare config's 20 clients; the last three are small. The four largest lead clearly.
CITIZENS = tuple((f"CITIZEN {i}", 20 - i % 3) for i in range(1, 18))
ROLES = (("ROMEO", 40), ("JULIET", 34), ("NURSE", 28), ("MERCUTIO", 24), *CITIZENS, ("FRIAR LAURENCE", 3), ("BALTHASAR", 2), ("PAGE", 1))
WORDS = "love light night sweet death fair heaven thou thee art doth hath swear kiss name rose star sword blood grave wherefore soft banished morrow".split()


@dataclass(frozen=True)
class Play:
    path: Path
    speeches: dict[str, int]  # role -> number of speeches written
    text: str


def _line(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 9))]
    return (" ".join(words)).capitalize() + rng.choice(".,!?;")


def write_play(path: Path, seed: int = 0) -> Play:
    """Writes a play in the plain-text layout `fedft` reads (blank-line blocks, each
    opened by `NAME:`), with a prologue nobody speaks and roles interleaved."""
    rng = random.Random(seed)
    order = [role for role, count in ROLES for _ in range(count)]
    rng.shuffle(order)
    blocks = ["THE TRAGEDY OF A GENERATED PLAY\nA prologue nobody speaks."]
    for role in order:
        blocks.append(f"{role}:\n" + "\n".join(_line(rng) for _ in range(rng.randint(2, 5))))
    text = "\n\n".join(blocks) + "\n"
    path.write_text(text, encoding="utf-8")
    return Play(path, dict(ROLES), text)
