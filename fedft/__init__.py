"""fedft: federated fine-tuning simulations with Flower, PyTorch and Opacus.

Layout, in the order data flows: `data` -> `models` -> `training` (local loops)
-> `client` (ClientApp) <-> `server` (ServerApp, round loop) + `strategies` ->
`results`. `config` validates the TOML that drives it all; `engine` is the one
module that starts Flower's simulation engine.
"""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """See :func:`fedft.api.run`."""
    from fedft.api import run as _run

    return _run(*args, **kwargs)


__all__ = ["__version__", "run"]
