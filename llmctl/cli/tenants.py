"""`llmctl tenants` commands: add tenants and keys to the tenants file, list them."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from llmctl.cli.console import console
from llmctl.cli.help import App
from llmctl.cli.output import print_whole
from llmctl.core.errors import UsageError
from llmctl.core.validation import first_problem
from llmctl.gateway.tenants import TenantSpec, add_key, add_tenant, load_tenants

app = App(
    help="The gateway's tenants file: tenants, their classes, keys and limits.",
    no_args_is_help=True,
)

# TenantSpec field -> the flag that sets it.
_FLAGS = {
    "name": "NAME",
    "class": "--class",
    "weight": "--weight",
    "requests_per_minute": "--rpm",
    "tokens_per_minute": "--tpm",
    "max_concurrent": "--max-concurrent",
    "default_max_tokens": "--default-max-tokens",
}
FileOpt = typer.Option(
    Path("tenants.toml"), "--file", "-f", help="The tenants file (made if missing)."
)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Tenant name (a metric label: letters, digits, . _ -)."),
    file: Path = FileOpt,
    class_name: str = typer.Option("interactive", "--class", help="Its priority class."),
    weight: float = typer.Option(1.0, "--weight", help="Its share within the class."),
    requests_per_minute: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    tokens_per_minute: int | None = typer.Option(
        None, "--tpm", help="Prompt + output tokens per minute."
    ),
    max_concurrent: int | None = typer.Option(
        None, "--max-concurrent", help="Requests it may have at the engines at once."
    ),
    default_max_tokens: int | None = typer.Option(
        None, "--default-max-tokens", help="Output estimate of a request without max_tokens."
    ),
) -> None:
    """Add a tenant (without keys: `llmctl tenants add-key` makes them)."""
    limits = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "max_concurrent": max_concurrent,
        "default_max_tokens": default_max_tokens,
    }
    given = {k: v for k, v in limits.items() if v is not None}
    try:  # checked here too, so a bad value is named by its flag, not its key in the file
        TenantSpec.model_validate({"name": name, "class": class_name, "weight": weight, **given})
    except ValidationError as exc:
        raise UsageError(first_problem(exc, names=_FLAGS)) from None
    add_tenant(
        file,
        name,
        class_name=class_name,
        weight=weight,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        max_concurrent=max_concurrent,
        default_max_tokens=default_max_tokens,
    )
    console.print(f"added tenant [bold]{name}[/bold] ({class_name}) to {file}", highlight=False)


@app.command("add-key")
def add_key_command(
    name: str = typer.Argument(..., help="The tenant the key is for."),
    file: Path = FileOpt,
) -> None:
    """Make a key for a tenant: its SHA-256 goes into the file, the key is printed once."""
    key = add_key(file, name)
    console.print(key, highlight=False, markup=False)
    console.print(
        f"[dim]stored as its hash in {file}; this is the only time the key is shown[/dim]",
        highlight=False,
    )


@app.command("list")
def list_tenants(file: Path = FileOpt) -> None:
    """The tenants, their classes, weights, limits and how many keys each has."""
    spec = load_tenants(file)
    table = Table(title=f"tenants in {file}", title_justify="left")
    for column in ("tenant", "class", "weight", "keys", "req/min", "tok/min", "concurrent"):
        table.add_column(column, justify="left" if column in ("tenant", "class") else "right")

    def shown(value: int | None) -> str:
        return "-" if value is None else str(value)

    for t in spec.tenants:
        table.add_row(
            t.name,
            t.class_,
            f"{t.weight:g}",
            str(len(t.keys)),
            shown(t.requests_per_minute),
            shown(t.tokens_per_minute),
            shown(t.max_concurrent),
        )
    print_whole(table)
