"""Shared core: configuration models, errors, metric names."""
