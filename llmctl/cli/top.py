"""`llmctl top`: the live terminal view (thin: find addresses, build a sampler, render)."""

from __future__ import annotations

import typer

from llmctl.cli.console import console
from llmctl.observe.direct import DirectSource
from llmctl.observe.live import Sampler, run_live
from llmctl.observe.prometheus import PrometheusSource
from llmctl.observe.view import render
from llmctl.stack.endpoints import resolve


def top(
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Prometheus URL. Default: the stack's."
    ),
    gateway: str | None = typer.Option(
        None, "--gateway", help="Gateway URL, read directly when Prometheus is unreachable."
    ),
    engine: str | None = typer.Option(
        None, "--engine", help="Engine URL, read directly when Prometheus is unreachable."
    ),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print one snapshot as JSON and exit."),
) -> None:
    """Live view of the stack: slots, queue, traffic, latency, engine and GPUs ([bold]q[/] quits)."""
    urls = resolve().urls
    # A stack without Prometheus, or (docker) without a published engine, has no such address:
    # top then reads the gateway directly and shows the engine's fields as missing.
    prometheus = prometheus or urls.get("prometheus")
    sampler = Sampler(
        PrometheusSource(prometheus) if prometheus else None,
        DirectSource(gateway or urls["gateway"], engine or urls.get("engine")),
    )
    try:
        if as_json:
            typer.echo(sampler.sample().model_dump_json(indent=2))
        elif once or not console.is_terminal:
            # Piped or redirected: a full-screen view would only fill the file with frames.
            console.print(render(sampler.sample()))
        else:
            run_live(sampler, interval=interval, console=console)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user leaves; Live and the key reader have restored the terminal
    finally:
        sampler.close()


def register(app: typer.Typer) -> None:
    """Add `top` to the top-level app."""
    app.command("top")(top)
