"""Plain forms of what privacy trackers keep, for run checkpoints and summary.json.

Every tracker writes the same checkpoint section whatever its mode: the shape the
single mode-branching tracker wrote, so run checkpoints written by it still resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fedft.privacy.accounting import History, epsilon


def checkpoint_section(
    *,
    spent: Iterable[int] = (),
    eps: Mapping[int, float] | None = None,
    steps: Mapping[int, int] | None = None,
    noise: Mapping[int, float] | None = None,
    rate: Mapping[int, float] | None = None,
    releases: int = 0,
    clipping_norm: float = float("nan"),
    history: Mapping[int, list[tuple[float, float, int]]] | None = None,
    reported: Mapping[int, int] | None = None,
    joined_rounds: Mapping[int, list[int]] | None = None,
) -> dict[str, Any]:
    """The "privacy" section of a run checkpoint; a mode leaves what it does not track at the default.
    (`history`, `reported` and `joined_rounds` came later: a checkpoint without them still loads.)"""
    return {
        "spent": sorted(spent),
        "eps": {str(c): v for c, v in (eps or {}).items()},
        "steps": {str(c): v for c, v in (steps or {}).items()},
        "noise": {str(c): v for c, v in (noise or {}).items()},
        "rate": {str(c): v for c, v in (rate or {}).items()},
        "releases": releases,
        "clipping_norm": clipping_norm,
        "history": {str(c): [list(h) for h in v] for c, v in (history or {}).items()},
        "reported": {str(c): v for c, v in (reported or {}).items()},
        "joined_rounds": {str(c): list(v) for c, v in (joined_rounds or {}).items()},
    }


def finite(value: float) -> float | str:
    """JSON has no infinity: an unbounded ε (noise 0) is written as "inf"."""
    return value if math.isfinite(value) else "inf"


def approximate_gdp(history: History, delta: float) -> float | str | None:
    """Opacus' GDP ε (a central-limit approximation that can understate ε), or None where it
    does not apply (several (σ, q) in one history, or too few steps for its analysis)."""
    try:
        return finite(epsilon(history, delta, "gdp")) if history else 0.0
    except ValueError:
        return None
