"""Differential privacy: accounting (`accounting`: pure (ε, δ) math through Opacus'
accountants), local DP-SGD on a client (`dp_sgd`), central DP-FedAvg with Flower's
wrappers (`central`), the server's per-round bookkeeping (`tracker`), config-time
checks (`checks`) and an empirical membership-inference audit (`audit`).

May import config, errors, fl.protocol, state and ml; never the round loop (`fedft.fl`)
or anything above it. See docs/privacy.md.
"""
