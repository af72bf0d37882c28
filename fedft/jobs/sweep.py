"""Sweeps: a base config plus a `[sweep]` grid, each point a normal run folder.

    [sweep]                                  # keys common to every sub-grid
    seed = [0, 1]
    [[sweep.grid]]                           # optional sub-grids; the points are their union
    privacy.mode = ["none"]
    [[sweep.grid]]
    privacy.mode = ["local", "central"]
    privacy.target_epsilon = [1.0, 4.0]

Every key is a dotted config field and every value a list; the points are the
Cartesian product of the common keys with each sub-grid (without `[[sweep.grid]]`,
of the common keys alone). All points are validated (config, data, privacy) before
anything runs. Point `i` runs with `fedft.run` into `<sweep_dir>/<point-name>/`,
one after another. Resumable: `fedft sweep SWEEP_DIR` (or the same --out) skips a
point whose summary.json says "completed" and removes and redoes any other point
folder (half-written, failed or interrupted). `fedft report` renders the tables.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig, apply_overrides, read_toml
from fedft.errors import FedftError
from fedft.jobs.parallel import cpus_per_point, run_in_children
from fedft.jobs.report import write_report
from fedft.jobs.run import prepare
from fedft.jobs.runner import FinishedRun, run_each
from fedft.jobs.validate import load_config
from fedft.runtime.local_backend import machine_cpus
from fedft.state.run_folder import atomic_write, new_run_dir, read_summary

SWEEP_TOML = "sweep.toml"  # the sweep's own config (base + [sweep]), for resuming and reporting
POINTS_JSON = "points.json"


@dataclass(frozen=True)
class Point:
    name: str  # folder name inside the sweep folder
    values: dict[str, Any]  # dotted field -> value

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={_toml_value(v)}" for k, v in self.values.items()]


def _toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool)) else repr(value) if not isinstance(value, float) else repr(float(value))


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def is_sweep_config(config: str | Path) -> bool:
    """True for a TOML file with a [sweep] table (so `fedft run` can run it as a sweep)."""
    path = Path(config)
    return path.is_file() and "sweep" in read_toml(path)


def split_sweep(raw: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, list[Any]]]]:
    """(base config without [sweep], sub-grids with the common keys merged in)."""
    raw = copy.deepcopy(raw)
    table = raw.pop("sweep", None)
    if not isinstance(table, dict) or not table:
        raise FedftError("sweep", "is missing or empty: nothing to sweep.", 'add a [sweep] table of dotted fields to lists, e.g. privacy.target_epsilon = [1.0, 4.0].')
    subs = table.pop("grid", [{}])
    if isinstance(subs, dict):
        subs = [subs]
    common = _flatten(table)
    grids = []
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict):
            raise FedftError(f"sweep.grid[{i}]", "is not a table.", "write each sub-grid as [[sweep.grid]] with dotted fields = lists.")
        grid = {**common, **_flatten(sub)}
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise FedftError(f"sweep.{key}", f"is {values!r}, not a non-empty list of values.", f"write e.g. {key} = [{_toml_value(values)}].")
        grids.append(grid)
    return raw, grids


def _slug(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "empty"


def expand_grid(raw: dict[str, Any]) -> list[Point]:
    """The points of a sweep config (a pure function of its dict). Each point's config
    is validated with `load_config`; an invalid field raises FedftError naming the point."""
    base, grids = split_sweep(raw)
    load_config(copy.deepcopy(base))  # the base alone must be valid too
    keys = list(dict.fromkeys(k for g in grids for k in g))
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    short = {k: (s if list(short.values()).count(s) == 1 else k) for k, s in short.items()}  # ambiguous: full key
    points: list[Point] = []
    seen: set[str] = set()
    for grid in grids:
        for combo in itertools.product(*grid.values()):
            values = dict(zip(grid, combo))
            label = "_".join(f"{short[k]}={_slug(v)}" for k, v in values.items())
            if label in seen:
                continue  # the same point from two sub-grids runs once
            seen.add(label)
            points.append(Point(name=f"p{len(points):03d}_{label}"[:120], values=values))
    for point in points:
        point_config(base, point)
    return points


def point_config(base: dict[str, Any], point: Point) -> FedftConfig:
    raw = apply_overrides(copy.deepcopy(base), point.overrides)
    if raw.get("name") == base.get("name"):
        raw["name"] = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{base.get('name', 'fedft')}-{point.name}")  # a plain file name
    try:
        return load_config(raw)
    except FedftError as exc:
        raise FedftError(f"sweep point {point.name}: {exc.field}", exc.problem, exc.fix) from None


def prepare_points(raw: dict[str, Any]) -> dict[str, FedftConfig]:
    """Every point's config, each through `fedft.jobs.run.prepare` (data, partitions, privacy
    calibration): a sweep that would fail at point 7 fails here, before anything runs."""
    base, _ = split_sweep(raw)
    configs = {p.name: point_config(base, p) for p in expand_grid(raw)}
    for name, cfg in configs.items():
        try:
            prepare(cfg)
        except FedftError as exc:
            raise FedftError(f"sweep point {name}: {exc.field}", exc.problem, exc.fix) from None
    return configs


def _g(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def point_done(folder: Path) -> bool:
    return (read_summary(folder) or {}).get("status") == "completed"


def _describe(summary: dict[str, Any]) -> str:
    return (f"{summary.get('status', 'failed')}, accuracy {_g(summary.get('final_accuracy'))}, ε {_g(summary.get('epsilon'))}, "
            f"MIA AUC {_g(summary.get('mia_auc'))}, ε lower bound {_g(summary.get('epsilon_lower_bound'))}")


@dataclass(frozen=True)
class SweepResult:
    sweep_dir: Path
    points: list[Point]
    ran: list[str]  # points run by this call (the others were already complete)
    table: str  # sweep.md
    interrupted: bool = False  # stopped by Ctrl-C/SIGTERM; `fedft sweep SWEEP_DIR` resumes


def sweep(config: str | Path | dict, overrides: list[str] | None = None, out: str | Path | None = None, quiet: bool = False, verbose: bool = False, parallel: int = 1) -> SweepResult:
    """Validate every point, then run the missing ones into the sweep folder and write the report.
    `config` may be a sweep folder: it resumes there with the sweep.toml it holds."""
    import tomli_w
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if parallel < 1:
        raise FedftError("--parallel", f"is {parallel}.", "give the number of points to run at once, 1 or more.")
    if isinstance(config, (str, Path)) and Path(config).is_dir():
        if out is not None and Path(out).resolve() != Path(config).resolve():
            raise FedftError("--out", "cannot differ from the sweep folder being resumed.", "drop --out.")
        out, config = Path(config), Path(config) / SWEEP_TOML
    raw = apply_overrides(read_toml(config) if isinstance(config, (str, Path)) else copy.deepcopy(config), overrides)
    points = expand_grid(raw)
    base, _ = split_sweep(raw)
    configs = prepare_points(raw)
    base_cfg = load_config(copy.deepcopy(base))
    out_path = None if out is None else Path(out)
    resuming = out_path is not None and (out_path / SWEEP_TOML).exists()
    todo = [p for p in points if not (out_path is not None and resuming and point_done(out_path / p.name))]
    parallel = min(parallel, max(1, len(todo)))  # CPUs are split among the points that will run
    ray_num_cpus = 0
    if parallel > 1:
        ray_num_cpus = cpus_per_point([configs[p.name] for p in todo], parallel, machine_cpus())
    if resuming:
        assert out_path is not None
        sweep_dir = out_path
        import tomllib

        if read_toml(sweep_dir / SWEEP_TOML) != tomllib.loads(tomli_w.dumps(raw)):
            raise FedftError("--out", f"'{sweep_dir}' holds a different sweep.", "resume it with `fedft sweep SWEEP_DIR`, or choose a new folder.")
    else:
        sweep_dir = new_run_dir(base_cfg, out)
        atomic_write(sweep_dir / SWEEP_TOML, tomli_w.dumps(raw))
    atomic_write(sweep_dir / POINTS_JSON, json.dumps([{"name": p.name, "values": p.values} for p in points], indent=2) + "\n")

    console = Console(highlight=False, quiet=quiet)
    console.print(f"fedft sweep: {base_cfg.name}: {len(points)} points, {len(points) - len(todo)} already complete -> {sweep_dir}")
    ran: list[str] = []
    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("points"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[point]}"))
    with Progress(*columns, console=console, transient=False, disable=quiet) as progress:
        task = progress.add_task("sweep", total=len(points), completed=len(points) - len(todo), point="")
        for point in todo:
            if (sweep_dir / point.name).exists():
                shutil.rmtree(sweep_dir / point.name)  # half-written, failed or interrupted: redo from scratch
        runner = _run_side_by_side if parallel > 1 else _run_one_by_one
        interrupted = runner(todo, configs, sweep_dir, progress, task, ran, verbose=verbose, parallel=parallel, ray_num_cpus=ray_num_cpus)
    if interrupted:
        console.print(f"fedft sweep: interrupted; resume with: fedft sweep {sweep_dir}", soft_wrap=True)
    table = write_report(sweep_dir)
    if not quiet:
        print()
        print(table, end="")
        print(f"\nwrote {sweep_dir / 'sweep.csv'}, sweep.md, sweep.png, sweep.pdf")
    return SweepResult(sweep_dir, points, ran, table, interrupted)


def _run_one_by_one(todo: list[Point], configs: dict[str, FedftConfig], sweep_dir: Path, progress: Any, task: Any, ran: list[str], *,
                    verbose: bool, **_: Any) -> bool:
    """Each point in this process with `fedft.run`; True if one was interrupted (the sweep stops there).
    A point that raises is reported and the sweep goes on (the next resume redoes it)."""

    def started(_: int, name: str) -> None:
        progress.update(task, point=name)
        ran.append(name)

    def finished(result: FinishedRun) -> None:
        if result.error is not None:
            progress.console.print(f"  {result.name}: failed: {type(result.error).__name__}: {result.error}")
        else:
            progress.console.print(f"  {result.name}: {_describe(result.summary)}, {result.seconds:.0f}s")
        if not result.interrupted:
            progress.advance(task)

    results = run_each(((p.name, configs[p.name]) for p in todo), sweep_dir, quiet=True, verbose=verbose,
                       on_start=started, on_finish=finished, keep_going_on_error=True, stop_on_interrupt=True)
    return any(result.interrupted for result in results)


def _run_side_by_side(todo: list[Point], configs: dict[str, FedftConfig], sweep_dir: Path, progress: Any, task: Any, ran: list[str], *,
                      verbose: bool, parallel: int, ray_num_cpus: int) -> bool:
    """`parallel` points at once, each a child process (fedft.jobs.parallel); True on Ctrl-C."""
    started = time.perf_counter()

    def done(name: str, code: int, last_line: str) -> None:
        ran.append(name)
        detail = "" if code == 0 else f" (exit {code}: {last_line})"
        progress.console.print(f"  {name}: {_describe(read_summary(sweep_dir / name) or {})}{detail}, {time.perf_counter() - started:.0f}s into the sweep")
        progress.advance(task)

    progress.update(task, point=f"{min(parallel, len(todo))} at a time")
    try:
        run_in_children([(p.name, configs[p.name], sweep_dir / p.name) for p in todo], parallel, ray_num_cpus, done, verbose)
    except KeyboardInterrupt:
        return True
    return False
