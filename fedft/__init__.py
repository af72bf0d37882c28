"""fedft: federated fine-tuning simulations with Flower, PyTorch and Opacus.

Layers, lowest first; each imports only from the ones before it (tests/test_layers.py):
`config` (the TOML schema) -> `state` (files on disk) -> `ml` (data, models, local
training) -> `privacy` (DP-SGD, central DP, accounting) -> `strategies` (top-level
package) -> `fl` (ClientApp <-> ServerApp) -> `runtime` (the simulation engine) ->
`jobs` (run, resume, compare, sweep, report, pretrain, check) -> `deploy` (SuperLink
and SuperNodes) -> `api` and `cli`. README "Layout" has the table.
"""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """See :func:`fedft.api.run`."""
    from fedft.api import run as _run

    return _run(*args, **kwargs)


__all__ = ["__version__", "run"]
