"""Stacks: config, rendering and runtimes (docker, local)."""
