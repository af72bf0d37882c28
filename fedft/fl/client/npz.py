"""A node's own data file, read with numpy alone: `fedft client` checks it before it
starts its SuperNode, without loading torch or Flower (fedft.deploy.client_command)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fedft.errors import FedftError


def read_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a node's own `.npz`, read in full, or one FedftError: `fedft client`
    calls it before starting, so a missing, truncated or foreign file fails there once,
    not in every round."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as f:
            return np.asarray(f["x"]), np.asarray(f["y"])
    except FileNotFoundError:
        raise FedftError("--data", f"'{path}' does not exist on this node.", "pass the path of an .npz file with arrays x and y.") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FedftError("--data", f"'{path}' is not a readable .npz with arrays x and y ({type(exc).__name__}: {exc}).", "save it again with numpy.savez(path, x=..., y=...).") from None
