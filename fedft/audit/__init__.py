"""Empirical privacy audits of a trained model (membership inference)."""
