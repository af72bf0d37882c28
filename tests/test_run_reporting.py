"""What a run tells its user: bytes in units, the time its remaining rounds will take, σ and
the privacy mode before it starts, the commit and command line in summary.json, where
`fedft partitions` wrote its plot."""

from __future__ import annotations

import sys
from pathlib import Path

from fedft.cli import main
from fedft.runtime.progress import RoundPrinter, clock, eta_seconds, human_bytes
from fedft.state.provenance import command_line, git_commit

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "simulations" / "quickstart.toml")
SHA, OTHER = "0123456789abcdef0123456789abcdef01234567", "fedcba9876543210fedcba9876543210fedcba98"


def test_bytes_are_shown_in_binary_units():
    assert [human_bytes(n) for n in (0, 1023, 1024, 7494240, 56203264, 3 * 1024**4)] == ["0 B", "1023 B", "1.0 KiB", "7.1 MiB", "53.6 MiB", "3.0 TiB"]


def test_eta_is_the_median_round_times_the_rounds_left():
    assert eta_seconds([], 5) is None
    assert eta_seconds([30.0, 2.0, 4.0], 10) == 40.0  # median 4 s: the slow first round does not count
    assert eta_seconds([2.0, 4.0], 3) == 9.0 and eta_seconds([2.0], 0) == 0.0
    assert [clock(s) for s in (0, 75, 3725)] == ["0:00", "1:15", "1:02:05"]


def test_round_lines_show_the_eta_of_the_remaining_rounds():
    from rich.console import Console

    printer = RoundPrinter(rounds=4, console=Console(record=True, width=200))
    for r, seconds in ((0, 0.5), (1, 20.0), (2, 10.0), (3, 12.0), (4, 11.0)):
        printer.on_round({"round": r, "test_accuracy": 0.5, "test_loss": 1.0, "wall_seconds": seconds})
    lines = printer.console.export_text().splitlines()
    assert "ETA" not in lines[0]  # round 0 evaluates the start model: nothing to time yet
    assert lines[1].endswith("ETA 1:00") and lines[2].endswith("ETA 0:30") and lines[3].endswith("ETA 0:12")  # 20·3, 15·2, 12·1
    assert "ETA" not in lines[4]  # the last round: nothing left


def test_git_commit_is_read_from_the_checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(SHA + "\n")
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") == SHA  # from a folder inside the checkout
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/main\n")
    assert git_commit(repo) == SHA  # a packed branch
    # a worktree: .git is a file naming its own git dir, whose commondir holds the refs
    wt_git = repo / ".git" / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_git / "commondir").write_text("../..\n")
    (repo / ".git" / "refs" / "heads" / "feature").write_text(OTHER + "\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {wt_git}\n")
    assert git_commit(tmp_path / "wt") == OTHER
    (wt_git / "HEAD").write_text(SHA + "\n")  # detached
    assert git_commit(tmp_path / "wt") == SHA
    assert git_commit(tmp_path) is None  # /tmp is no checkout


def test_command_line_is_the_one_that_started_the_process(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/fedft", "run", "my config.toml", "--set", "train.lr=0.1"])
    assert command_line() == "fedft run 'my config.toml' --set train.lr=0.1"


def test_check_shows_the_privacy_mode_and_sigma(capsys):
    assert main(["check", QUICKSTART]) == 0
    assert capsys.readouterr().out.rstrip().endswith(", fedavg, no DP")
    assert main(["check", QUICKSTART, "--set", "privacy.mode=local", "--set", "privacy.noise_multiplier=1.1"]) == 0
    assert "local DP (DP-SGD): σ 1.1, per-sample clipping at 1, δ 1e-05" in capsys.readouterr().out
    assert main(["check", QUICKSTART, "--set", "privacy.mode=central", "--set", "privacy.noise_multiplier=0.8"]) == 0
    assert "central DP: σ 0.8, server_fixed clipping at 1, δ 1e-05" in capsys.readouterr().out


def test_partitions_says_where_it_wrote_the_plot(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["partitions", QUICKSTART, "--out-png", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".pdf").is_file() and f"wrote {out.resolve()} and p.pdf" in capsys.readouterr().out
