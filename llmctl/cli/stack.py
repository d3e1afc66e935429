"""Stack commands: init, config, render, up, down, status, logs, doctor."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the stack commands to the top-level app."""
