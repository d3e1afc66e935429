"""`llmctl top`: the live terminal view."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `top` to the top-level app."""
