"""`fedft.run(...)` and friends: the Python entry points; the CLI is a thin layer over them."""

from fedft.jobs.run import RunResult, prepare, run
from fedft.jobs.validate import load_config

__all__ = ["RunResult", "load_config", "prepare", "run"]
