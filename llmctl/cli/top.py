"""`llmctl top`: the live terminal view (thin: find addresses, build a sampler, render)."""

from __future__ import annotations

import typer

from llmctl.cli.console import console
from llmctl.core.errors import UsageError
from llmctl.observe.direct import DirectSource
from llmctl.observe.live import Sampler, run_live
from llmctl.observe.prometheus import PrometheusSource
from llmctl.observe.queries import MIN_WINDOW_S
from llmctl.observe.view import render
from llmctl.stack.endpoints import resolve

SOURCES = ("auto", "prometheus", "direct")


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
    window: float | None = typer.Option(
        None,
        "--window",
        min=1.0,
        help="Seconds that rates and percentiles cover. Default: 10, or five scrapes of the "
        "gateway when Prometheus scrapes less often.",
    ),
    source: str = typer.Option(
        "auto",
        "--source",
        help="Where numbers come from: prometheus, direct (the gateway's and engine's /metrics), "
        "or auto (Prometheus when it answers, else direct).",
    ),
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print one snapshot as JSON and exit."),
) -> None:
    """Live view of the stack: slots, queue, traffic, latency, engine and GPUs ([bold]q[/] quits)."""
    urls = resolve().urls
    # A stack without Prometheus, or (docker) without a published engine, has no such address:
    # top then reads the gateway directly and shows the engine's fields as missing.
    if source not in SOURCES:
        raise UsageError(f"--source must be one of {', '.join(SOURCES)} (got {source!r})")
    prometheus = prometheus or urls.get("prometheus")
    if source == "prometheus" and not prometheus:
        raise UsageError("--source prometheus: the stack has no Prometheus; pass --prometheus URL")
    use_prometheus = prometheus if source != "direct" else None
    one_shot = as_json or once or not console.is_terminal
    direct_window = window or MIN_WINDOW_S
    sampler = Sampler(
        PrometheusSource(use_prometheus, window_s=window) if use_prometheus else None,
        DirectSource(
            gateway or urls["gateway"],
            engine or urls.get("engine"),
            window_s=direct_window,
            # One snapshot read directly covers the whole window; a live view starts at once.
            warmup_s=direct_window if one_shot else 1.0,
        ),
        fallback=source == "auto",
        why_direct="--source direct" if source == "direct" else "Prometheus not configured",
    )
    try:
        if as_json:
            typer.echo(sampler.sample().model_dump_json(indent=2))
        elif one_shot:
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
