"""The two consoles every command prints through (stdout for results, stderr for progress notes
and errors), made by one factory that honours NO_COLOR, TERM=dumb and COLUMNS.

NO_COLOR (any non-empty value) and TERM=dumb: no colours and no text styles, so no SGR escape is
written. Not a terminal, or TERM=dumb: no live redraws either (see `interactive`); progress becomes
plain lines. COLUMNS: the width tables and help are laid out for (rich's own rule).
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape


def _plain_style() -> bool:
    return os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM", "") == "dumb"


def _settings() -> dict[str, object]:
    plain = _plain_style()
    # color_system None: rich writes text without any style escape (no_color alone keeps bold).
    return {"no_color": plain, "color_system": None if plain else "auto", "highlight": False}


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) as the environment asks now."""
    return Console(stderr=stderr, **_settings())  # type: ignore[arg-type]


console = make_console()
err_console = make_console(stderr=True)


def configure() -> None:
    """Re-read the environment into both consoles (each `main()` call, so a process that runs
    several commands, as the tests do, gets each one's NO_COLOR and COLUMNS)."""
    Console.__init__(console, **_settings())  # type: ignore[arg-type]
    Console.__init__(err_console, stderr=True, **_settings())  # type: ignore[arg-type]


def interactive(target: Console | None = None) -> bool:
    """Whether `target` (stdout's console) may redraw in place: a terminal that is not dumb."""
    c = target or console
    return c.is_terminal and not c.is_dumb_terminal


def fail(message: str, hint: str | None = None) -> None:
    """The one error style: a red `error:` line on stderr, then an optional `hint:` line (callers
    then exit non-zero)."""
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/dim] {escape(hint)}", soft_wrap=True)


def note(message: str) -> None:
    """A yellow `note:` line on stderr: something the user should know, not an error."""
    err_console.print(f"[yellow]note:[/yellow] {escape(message)}", soft_wrap=True)
