"""Command-line mistakes caught by the parser (unknown option, missing argument, bad value) said
the way llmctl says every error: one red line in the user's terms, a hint, exit code 2.

The parser's own wording leaks internals ("Input should be a valid integer, unable to parse string
as an integer", a lower-case parameter name); values it rejects are re-said through
`core.validation.message`, the words every other input gets.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

# typer vendors click (>= 0.29); its exceptions are not re-exported.
from typer._click import exceptions as click_errors

from llmctl.cli.help import choices, render_help, usage
from llmctl.core.validation import message


def _name(param: Any) -> str:
    """How the user writes a parameter: its longest flag, or an argument's NAME."""
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.metavar or param.name).upper()
    opts = sorted(getattr(param, "opts", []) or [], key=len)
    return str(opts[-1]) if opts else str(param.name)


def _help_hint(ctx: Any, *, with_usage: bool = False) -> str | None:
    if ctx is None:
        return None
    see = f"see `{ctx.command_path} --help`"
    shown = usage(ctx.command, ctx).replace("Usage: ", "usage: ", 1)
    return f"{shown}; {see}" if with_usage else see


def _bad_value(exc: click_errors.BadParameter) -> str:
    cause = exc.__cause__
    errors = cause.errors() if isinstance(cause, ValidationError) else []
    allowed = choices(exc.param)
    if allowed:
        given = f" (got {errors[0]['input']!r})" if errors else ""
        return f"must be one of {', '.join(allowed)}{given}"
    if errors:
        return message(errors[0])
    return exc.message.removeprefix("Value error, ")


def explain_usage(exc: click_errors.ClickException) -> tuple[str, str | None]:
    """The message and the hint for a parser error."""
    ctx = getattr(exc, "ctx", None)
    hint = _help_hint(ctx, with_usage=True)
    if isinstance(exc, click_errors.MissingParameter) and exc.param is not None:
        kind = "argument" if exc.param.param_type_name == "argument" else "option"
        return f"missing {kind} {_name(exc.param)}", hint
    if isinstance(exc, click_errors.BadParameter) and exc.param is not None:
        return f"{_name(exc.param)}: {_bad_value(exc)}", _help_hint(ctx)
    if isinstance(exc, click_errors.NoSuchOption):
        known = [o for p in ctx.command.params for o in p.opts + p.secondary_opts] if ctx else []
        close = difflib.get_close_matches(exc.option_name, known, n=1, cutoff=0.7)
        if close:
            hint = f"did you mean {close[0]}? " + (hint or "")
        return f"no such option {exc.option_name}", hint
    if isinstance(exc, click_errors.UsageError):
        text, _, guess = exc.format_message().partition(" Did you mean ")
        if guess:
            hint = f"did you mean {guess.rstrip('?')}? " + (hint or "")
        return text[:1].lower() + text[1:].rstrip("."), hint
    return exc.format_message(), None


def help_page(exc: click_errors.NoArgsIsHelpError) -> str:
    """A group called without a command answers with its help."""
    return render_help(exc.ctx.command, exc.ctx) if exc.ctx is not None else exc.format_message()
