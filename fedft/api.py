"""`fedft.run(...)` and friends: the Python entry points; the CLI is a thin layer over them.

`import fedft` stays cheap: `fedft.run`, `fedft.sweep`, `fedft.compare`, ... load this
module on first use (fedft/__init__.py)."""

from fedft.jobs.compare import ComparisonResult, compare
from fedft.jobs.run import RunResult, prepare, run
from fedft.jobs.sweep import SweepResult, sweep
from fedft.jobs.validate import load_config

__all__ = ["ComparisonResult", "RunResult", "SweepResult", "compare", "load_config", "prepare", "run", "sweep"]
