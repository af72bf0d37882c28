"""The one way fedft writes a file: all of it or nothing.

Every file is written to a temp file in the same folder (`.<name>.<pid>.<random>.tmp`,
so concurrent writers never share one), flushed and fsync'ed, then renamed over the
target with `os.replace`. A reader, a kill or a crash at any moment sees the old file
or the new one, never half of one; a write that fails removes its temp file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

PUBLIC = 0o666  # before the umask, like open(path, "w")
PRIVATE = 0o600  # key files: readable by the owner only, from the first byte


def write_with(path: str | Path, write: Callable[[BinaryIO], object], *, private: bool = False) -> Path:
    """Replace `path` with what `write(f)` writes to a binary file object, e.g.
    `lambda f: torch.save(obj, f)`. `private` creates it 0600 (never readable by others)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE if private else PUBLIC)
    try:
        with os.fdopen(fd, "wb") as f:
            if private:
                os.chmod(tmp, PRIVATE)  # exactly 0600 whatever the umask, before any byte
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: leave nothing half-written
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> Path:
    """Replace `path` with `data`."""
    return write_with(path, lambda f: f.write(data), private=private)


def write_text(path: str | Path, text: str) -> Path:
    """Replace `path` with `text`, UTF-8."""
    return write_bytes(path, text.encode("utf-8"))
