"""`llmctl tune` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="(not yet implemented)", no_args_is_help=True)
