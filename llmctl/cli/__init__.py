"""The `llmctl` command line: thin wrappers that parse, call, render and pick an exit code."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from llmctl import __version__
from llmctl.cli import bench, gateway, models, report, sim, stack, tenants, top, tune
from llmctl.cli.console import console, fail
from llmctl.core.errors import LlmctlError

app = typer.Typer(
    name="llmctl",
    help="Run an LLM on one GPU under control: gateway, stack, live view, load tests, tuning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
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
top.register(app)
report.register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; user-facing errors become a red message and a non-zero exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="llmctl")
    except LlmctlError as exc:
        fail(str(exc))
        raise SystemExit(exc.exit_code) from None
