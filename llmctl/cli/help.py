"""Help that reads well in any width: every command's `--help` (and `-h`), laid out here.

Each option is one row: its flags and a conventional metavar (INTEGER, FLOAT, TEXT, PATH, a
choice list; none on a plain flag), then its help wrapped beside it, ending in one bracket of
notes, always in the same order and words: `[env: VAR; default: X; at least N]`. Flags are
never cut: a row whose flags are too wide for the column puts its help on the next line. The
environment variable and a default the code cannot know (`the stack's`) are written into the
help text as `[env: VAR]` / `[default: ...]`; they are gathered into that one bracket.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import PurePath
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import CommandFunctionType

from llmctl.cli.console import console

HELP_OPTIONS = ["-h", "--help"]
MAX_WIDTH = 100  # beyond this, prose is harder to read, not easier
TERM_COLUMN = 30  # flags wider than this put their help on the next line
_NOTE = re.compile(r"\s*\[(env|default): ([^\]]*)\]")
_METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: None}


def help_width() -> int:
    """The width help is laid out for: the terminal's (or COLUMNS), at most MAX_WIDTH."""
    return max(40, min(console.width, MAX_WIDTH))


def env_note(var: str) -> str:
    """The text that names an option's environment variable in its help."""
    return f" [env: {var}]"


def _annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "annotation", None)


def choices(param: Any) -> tuple[str, ...]:
    """The values a parameter accepts, when it names them (a Literal or an Enum)."""
    descriptor = getattr(param, "type_descriptor", None)
    found = getattr(descriptor, "choices", None) or ()
    return tuple(str(c.value if isinstance(c, Enum) else c) for c in found)


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False)) or _annotation(param) is bool


def metavar(param: Any) -> str | None:
    """INTEGER, FLOAT, TEXT, PATH or `[a|b|c]`; None for a plain flag."""
    if param.metavar:
        return str(param.metavar)
    if _is_flag(param):
        return None
    allowed = choices(param)
    if allowed:
        return "[" + "|".join(allowed) + "]"
    annotation = _annotation(param)
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if args and getattr(annotation, "__origin__", None) is list:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "PATH"
    return _METAVARS.get(annotation, "TEXT")


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value)
    return str(value)


def default_text(param: Any) -> str | None:
    """The default as help shows it, or None when there is nothing worth showing."""
    if isinstance(param.show_default, str):
        return param.show_default
    if param.show_default is False or callable(param.default):
        return None
    default = param.default
    if _is_flag(param):
        if not param.secondary_opts:
            return None  # a plain flag is off unless given
        chosen = param.opts if default else param.secondary_opts
        return str(chosen[0]).lstrip("-")
    if default is None or default == [] or default == ():
        return None
    return _shown(default)


def _range(param: Any) -> str | None:
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if low is not None and high is not None:
        return f"{_shown(low)} to {_shown(high)}"
    if low is not None:
        return f"at least {_shown(low)}"
    if high is not None:
        return f"at most {_shown(high)}"
    return None


def _notes(param: Any, text: str) -> tuple[str, str]:
    """The help text without its `[env: ...]`/`[default: ...]` notes, and the one bracket that
    holds them with the computed ones."""
    found = dict((m.group(1), m.group(2)) for m in _NOTE.finditer(text))
    text = _NOTE.sub("", text).strip()
    notes = []
    if "env" in found:
        notes.append(f"env: {found['env']}")
    default = found.get("default") or default_text(param)
    if default:
        notes.append(f"default: {default}")
    if (bounds := _range(param)) is not None:
        notes.append(bounds)
    if param.required and not isinstance(param, TyperArgument):
        notes.append("required")  # an argument's place in the usage line says so already
    return text, f"[{'; '.join(notes)}]" if notes else ""


def _term(param: Any) -> str:
    if isinstance(param, TyperArgument):
        return _argument_name(param)
    shorts = [o for o in param.opts if not o.startswith("--")]
    longs = [o for o in param.opts if o.startswith("--")]
    names = ", ".join(shorts + longs) if shorts else "    " + ", ".join(longs)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    var = metavar(param)
    return f"{names} {var}" if var else names


def _argument_name(param: Any) -> str:
    name = str(param.metavar or param.name).upper()
    return name + "..." if param.nargs == -1 else name


def _wrap(text: str, notes: str, room: int) -> list[str]:
    """`text` wrapped to `room`, its notes bracket kept whole: on the last line if it fits."""
    lines = textwrap.wrap(text, room, break_on_hyphens=False)
    if not notes:
        return lines or [""]
    if lines and len(lines[-1]) + 1 + len(notes) <= room:
        return [*lines[:-1], f"{lines[-1]} {notes}"]
    return lines + textwrap.wrap(notes, room, break_on_hyphens=False)


def _rows(rows: Sequence[tuple[str, str, str]], width: int) -> list[str]:
    """A two-column list: terms on the left, text (and notes) wrapped on the right (click's
    layout, with terms never cut and the text column at most TERM_COLUMN + 4 from the left)."""
    if not rows:
        return []
    column = min(max(len(term) for term, _, _ in rows), TERM_COLUMN) + 4
    room = max(width - column, 20)
    lines: list[str] = []
    for term, text, notes in rows:
        wrapped = _wrap(text, notes, room)
        if len(term) + 4 <= column:
            lines.append(f"  {term:<{column - 4}}  {wrapped[0]}".rstrip())
            rest = wrapped[1:]
        else:
            lines.append(f"  {term}")
            rest = wrapped
        lines += [" " * column + line for line in rest]
    return lines


def _paragraphs(text: str, width: int) -> list[str]:
    """A docstring's paragraphs (up to a form feed), each re-wrapped to `width`, indented 2."""
    lines: list[str] = []
    for paragraph in inspect.cleandoc(text).partition("\f")[0].split("\n\n"):
        if lines:
            lines.append("")
        flowed = " ".join(paragraph.split())
        lines += textwrap.wrap(
            flowed, width, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
        )
    return lines


def usage(command: Any, ctx: Any) -> str:
    """`Usage: llmctl bench compare [OPTIONS] A B` (optional arguments in brackets)."""
    pieces = [ctx.command_path]
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    if any(not isinstance(p, TyperArgument) for p in params):
        pieces.append("[OPTIONS]")
    for p in params:
        if isinstance(p, TyperArgument):
            name = _argument_name(p)
            pieces.append(name if p.required else f"[{name}]")
    if isinstance(command, TyperGroup):
        pieces.append("COMMAND [ARGS]...")
    return "Usage: " + " ".join(pieces)


def _first_paragraph(text: str | None) -> str:
    return " ".join(inspect.cleandoc(text or "").partition("\f")[0].split("\n\n")[0].split())


def render_help(command: Any, ctx: Any) -> str:
    """The whole help page of `command`."""
    width = help_width()
    lines = [usage(command, ctx), ""]
    if command.help:
        lines += [*_paragraphs(command.help, width), ""]
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    arguments = [p for p in params if isinstance(p, TyperArgument)]
    options = [p for p in params if not isinstance(p, TyperArgument)]
    for title, group in (("Arguments", arguments), ("Options", options)):
        rows = []
        for param in group:
            text, notes = _notes(param, getattr(param, "help", None) or "")
            rows.append((_term(param), text, notes))
        if rows:
            lines += [f"{title}:", *_rows(rows, width), ""]
    if isinstance(command, TyperGroup):
        rows = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                rows.append((name, _first_paragraph(sub.short_help or sub.help), ""))
        if rows:
            lines += ["Commands:", *_rows(rows, width), ""]
    return "\n".join(lines).rstrip() + "\n"


class Command(TyperCommand):
    """A command whose help is laid out by `render_help`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))

    def get_usage(self, ctx: Any) -> str:
        return usage(self, ctx)


class Group(TyperGroup):
    """A group of commands whose help is laid out by `render_help`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))

    def get_usage(self, ctx: Any) -> str:
        return usage(self, ctx)


class App(typer.Typer):
    """typer.Typer whose groups and commands use llmctl's help, with `-h` as well as `--help`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("context_settings", {"help_option_names": HELP_OPTIONS})
        super().__init__(**kwargs)

    def command(
        self, *args: Any, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", Command)
        kwargs.setdefault("context_settings", {"help_option_names": HELP_OPTIONS})
        return super().command(*args, **kwargs)
