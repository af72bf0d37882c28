"""Where a result came from: the command line and the git commit of the folder it ran in.

The commit is read from the `.git` files themselves (no `git` process: a run must not
need git installed, and starting processes is the engine's business alone).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line() -> str:
    """This process's command line as a shell would take it back."""
    return shlex.join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])


def git_commit(folder: str | Path = ".") -> str | None:
    """HEAD's commit of the git checkout holding `folder` (a worktree too); None outside one."""
    start = Path(folder).resolve()
    for here in (start, *start.parents):
        dot_git = here / ".git"
        if dot_git.is_dir():
            return _head(dot_git, dot_git)
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            git_dir = (here / text.split(":", 1)[1].strip()).resolve()
            common = git_dir / "commondir"
            common_dir = (git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir
            return _head(git_dir, common_dir)
    return None


def _head(git_dir: Path, common_dir: Path) -> str | None:
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None  # detached HEAD: the commit itself
        ref = head.split(":", 1)[1].strip()
        for base in (git_dir, common_dir):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common_dir / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None  # a branch without commits yet
