"""The two consoles every command prints through (stdout for results, stderr for errors)."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """Print a red error line to stderr (callers then exit non-zero)."""
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
