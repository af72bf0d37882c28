"""Differential privacy for fedft: local (Opacus DP-SGD on clients) and central
(DP-FedAvg with Flower's wrappers), with the (ε, δ) accounting behind both. See README,
"Differential privacy"."""
