"""Observing a running stack: snapshots from Prometheus or /metrics, and `top`."""
