"""The `llmctl` command line: thin wrappers that parse, call, render and pick an exit code."""

from __future__ import annotations

from collections.abc import Sequence

import typer
from typer._click import exceptions as click_errors

from llmctl import __version__
from llmctl.cli import bench, chat, gateway, models, report, sim, stack, tenants, top, tune
from llmctl.cli.console import configure, console, fail
from llmctl.cli.errors import explain_usage, help_page
from llmctl.cli.help import App
from llmctl.core.errors import LlmctlError, UsageError

app = App(
    name="llmctl",
    help="Run an LLM on one GPU under control: gateway, stack, live view, load tests, tuning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"llmctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run an LLM on one GPU under control: gateway, stack, live view, load tests, tuning."""


app.add_typer(sim.app, name="sim")
app.add_typer(gateway.app, name="gateway")
app.add_typer(bench.app, name="bench")
app.add_typer(tune.app, name="tune")
app.add_typer(models.app, name="models")
app.add_typer(tenants.app, name="tenants")
stack.register(app)
chat.register(app)
top.register(app)
report.register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit: 0 on success, 1 when something failed (a red `error:` line on
    stderr, maybe a `hint:` line), 2 for a mistake in the command line, 130 on Ctrl-C."""
    configure()
    args = list(argv) if argv is not None else None
    try:
        code = app(args=args, prog_name="llmctl", standalone_mode=False)
    except LlmctlError as exc:
        fail(str(exc), exc.hint)
        raise SystemExit(exc.exit_code) from None
    except click_errors.NoArgsIsHelpError as exc:
        typer.echo(help_page(exc))
        raise SystemExit(UsageError.exit_code) from None
    except click_errors.ClickException as exc:
        text, hint = explain_usage(exc)
        fail(text, hint)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        fail("aborted")
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
