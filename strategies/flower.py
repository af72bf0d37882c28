"""Flower's own Message-API strategies, registered under their lower-case names.

Each is used as Flower ships it; see the class docstrings for the papers.
"""

from __future__ import annotations

from flwr.serverapp import strategy as fs

from strategies.registry import register_strategy

register_strategy("fedavg")(fs.FedAvg)  # McMahan et al. 2017
