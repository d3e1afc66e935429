"""`llmctl top`: the live terminal view (thin: find addresses, build a sampler, render)."""

from __future__ import annotations

from typing import Literal

import typer

from llmctl.cli.console import console, interactive
from llmctl.cli.output import FormatOpt, chosen, emit
from llmctl.core.errors import TargetError, UsageError
from llmctl.observe.direct import DirectSource
from llmctl.observe.live import Sampler, run_live
from llmctl.observe.prometheus import PrometheusSource
from llmctl.observe.queries import MIN_WINDOW_S
from llmctl.observe.view import render
from llmctl.stack.endpoints import resolve


def top(
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Prometheus URL.", show_default="the stack's"
    ),
    gateway: str | None = typer.Option(
        None,
        "--gateway",
        help="Gateway URL, read directly when Prometheus is unreachable.",
        show_default="the stack's",
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="Engine URL, read directly when Prometheus is unreachable.",
        show_default="the stack's",
    ),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
    window: float | None = typer.Option(
        None,
        "--window",
        min=1.0,
        help="Seconds that rates and percentiles cover.",
        show_default="10, or five scrapes of the gateway when Prometheus scrapes less often",
    ),
    source: Literal["auto", "prometheus", "direct"] = typer.Option(
        "auto",
        "--source",
        help="Where numbers come from: prometheus, direct (the gateway's and engine's /metrics), "
        "or auto (Prometheus when it answers, else direct).",
    ),
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    form: FormatOpt = "table",
) -> None:
    """Live view of the stack: slots, queue, traffic, latency, engine and GPUs (q quits).

    Piped or redirected, or with --once or a --format other than table, it prints one snapshot
    and exits: 0, or 1 when nothing answered (neither Prometheus nor the gateway or engine)."""
    urls = resolve().urls
    # A stack without Prometheus, or (docker) without a published engine, has no such address:
    # top then reads the gateway directly and shows the engine's fields as missing.
    prometheus = prometheus or urls.get("prometheus")
    if source == "prometheus" and not prometheus:
        raise UsageError("--source prometheus: the stack has no Prometheus; pass --prometheus URL")
    use_prometheus = prometheus if source != "direct" else None
    form = chosen(form, as_json)
    one_shot = once or form != "table" or not interactive(console)
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
        if one_shot:
            # Piped or redirected: a full-screen view would only fill the file with frames.
            snap = sampler.sample()
            emit(render(snap, stacked=True), form, lambda: snap.model_dump_json(indent=2))
            if not snap.reached:
                raise TargetError(
                    f"nothing answered ({snap.note or snap.source_url})",
                    hint="is the stack up? `llmctl status` shows its services; "
                    "--prometheus, --gateway and --engine name other addresses",
                )
        else:
            run_live(sampler, interval=interval, console=console)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user leaves; Live and the key reader have restored the terminal
    finally:
        sampler.close()


def register(app: typer.Typer) -> None:
    """Add `top` to the top-level app."""
    app.command("top")(top)
