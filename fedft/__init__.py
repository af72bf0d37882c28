"""fedft: federated fine-tuning simulations with Flower, PyTorch and Opacus.

Layers, lowest first; each imports only from the ones before it (tests/test_layers.py):
`config` (the TOML schema) -> `state` (files on disk) -> `ml` (data, models, local
training) -> `privacy` (DP-SGD, central DP, accounting) -> `strategies` (top-level
package) -> `fl` (ClientApp <-> ServerApp) -> `runtime` (the simulation engine) ->
`jobs` (run, resume, compare, sweep, report, pretrain, check) -> `deploy` (SuperLink
and SuperNodes) -> `api` and `cli`. docs/architecture.md "Layout" has the table.
"""

__version__ = "0.1.0"


_API = ("ComparisonResult", "RunResult", "SweepResult", "compare", "load_config", "prepare", "run", "sweep")


def __getattr__(name: str):
    """`fedft.run`, `fedft.sweep`, `fedft.compare`, ...: see :mod:`fedft.api`, loaded on first use."""
    if name in _API:
        import fedft.api

        return getattr(fedft.api, name)
    raise AttributeError(f"module 'fedft' has no attribute {name!r}")


__all__ = ["__version__", *_API]
