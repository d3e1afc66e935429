"""Tune results as rich renderables: the trials table, the chart, the verdict (pure functions)."""

from __future__ import annotations

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from llmctl.core.slo import LATENCIES, SLO
from llmctl.tune.report import TrialReport, TuneReport, TuneSettings, format_ms

_EIGHTHS = " ▏▎▍▌▋▊▉█"
BAR_WIDTH = 22


def bar(value: float | None, scale: float, width: int = BAR_WIDTH) -> str:
    """A left-aligned block bar of `value / scale` of `width` cells, in eighths of a cell."""
    if value is None or scale <= 0:
        return ""
    eighths = round(max(0.0, min(value / scale, 1.0)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def slo_text(settings: TuneSettings) -> str:
    """What a passing trial must meet, e.g. 'p95 TTFT ≤ 2 s, errors ≤ 1 %'."""
    slo = settings.slo
    parts = [
        f"p95 {name.upper()} ≤ {format_ms(limit * 1000)}"
        for name in LATENCIES
        if (limit := slo.target(name)) is not None
    ]
    if settings.max_preemptions_per_s is not None:
        parts.append(f"preemptions ≤ {settings.max_preemptions_per_s:g}/s")
    parts.append(f"errors ≤ {settings.max_error_rate * 100:g} %")
    return ", ".join(parts)


def _ms(value: float | None) -> str:
    return "-" if value is None else format_ms(value)


def _verdict(trial: TrialReport) -> Text:
    if trial.passed:
        return Text("pass", style="green")
    return Text("fail: " + "; ".join(str(v) for v in trial.violations), style="red")


def _num_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def trials_table(trials: list[TrialReport], recommended: int | None = None) -> Table:
    """One row per trial, in the order they ran; latencies in ms, of admitted requests."""
    table = Table(
        title="Trials (p95 of admitted requests, ms; load = clients)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = ("MAX_ACTIVE", "load", "tok/s", "TTFT", "ITL", "E2E", "pre/s", "KV")
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("SLO", no_wrap=True)
    for t in trials:
        kv = "-" if t.peak_kv_cache_usage is None else f"{t.peak_kv_cache_usage * 100:.0f}%"
        pre = "-" if t.preemptions_per_s is None else f"{t.preemptions_per_s:.2g}"
        mark = "bold" if t.max_active == recommended else ""
        table.add_row(
            Text(str(t.max_active), style=mark),
            str(t.concurrency),
            f"{t.output_throughput:.0f}",
            _num_ms(t.p95_ttft_ms),
            _num_ms(t.p95_itl_ms),
            _num_ms(t.p95_e2e_ms),
            pre,
            kv,
            Text("pass", style="green") if t.passed else Text("fail", style="red"),
        )
    return table


def _charted_latency(slo: SLO) -> tuple[str, str, float | None]:
    """The latency to chart (label, trial field, SLO in ms): the first one with a target (TTFT,
    ITL, E2E), else TTFT."""
    for name in LATENCIES:
        limit = slo.target(name)
        if limit is not None:
            return name.upper(), f"p95_{name}_ms", limit * 1000
    return "TTFT", "p95_ttft_ms", None


def chart(report: TuneReport) -> Table:
    """Throughput and p95 latency against MAX_ACTIVE as block bars, sorted by MAX_ACTIVE; a │
    in the latency bars marks the SLO."""
    trials = sorted(report.trials, key=lambda t: t.max_active)
    label, field, limit = _charted_latency(report.settings.slo)
    latencies = [getattr(t, field) for t in trials]
    top_tput = max((t.output_throughput for t in trials), default=0.0)
    top_lat = max([v for v in latencies if v is not None] + [limit or 0.0])
    slo_note = f", SLO {format_ms(limit)} = │" if limit is not None else ""
    table = Table(
        title=f"Output tok/s and p95 {label} (ms{slo_note}) by MAX_ACTIVE",
        title_justify="left",
        box=None,
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("MAX_ACTIVE", "right"),
        ("tok/s", "right"),
        ("", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column(f"p95 {label}", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    slo_cell = round(limit / top_lat * BAR_WIDTH) if limit and top_lat else None
    for t, lat in zip(trials, latencies, strict=True):
        lat_bar = bar(lat, top_lat).ljust(BAR_WIDTH)
        if slo_cell is not None and 0 < slo_cell <= BAR_WIDTH:
            lat_bar = lat_bar[: slo_cell - 1] + "│" + lat_bar[slo_cell:]
        table.add_row(
            str(t.max_active),
            f"{t.output_throughput:.4g}",
            Text(bar(t.output_throughput, top_tput).ljust(BAR_WIDTH), style="cyan"),
            _num_ms(lat),
            Text(lat_bar, style="green" if t.passed else "red"),
        )
    return table


def render_report(report: TuneReport) -> RenderableType:
    rec = report.recommendation
    if rec.max_active is None:
        verdict = Text("No MAX_ACTIVE meets the SLO. ", style="bold red") + Text(rec.reason)
    else:
        verdict = Text(f"Recommended MAX_ACTIVE = {rec.max_active}", style="bold green")
        verdict += Text(f": {rec.reason}")
        if rec.adaptive_min is not None and rec.adaptive_max is not None:
            verdict += Text(
                f"\nFor adaptive mode: adaptive_min = {rec.adaptive_min}, "
                f"adaptive_max = {rec.adaptive_max}."
            )
    original = report.original_limits.max_active
    if report.applied:
        where = f" and written to {report.applied_to}" if report.applied_to else ""
        after = Text(f"Applied: MAX_ACTIVE {rec.max_active} is live{where}.")
    elif report.apply_error:
        after = Text(
            f"Not applied ({report.apply_error}): MAX_ACTIVE restored to {original}, "
            "the stack file unchanged.",
            style="red",
        )
    else:
        again = ", adaptive again" if report.original_limits.limit_mode == "adaptive" else ""
        after = Text(
            f"MAX_ACTIVE restored to {original}{again} (use --apply to keep the recommendation)."
        )
    parts: list[RenderableType] = [trials_table(report.trials, rec.max_active)]
    parts += [
        Text(f"MAX_ACTIVE {t.max_active} fails: " + "; ".join(map(str, t.violations)), style="red")
        for t in report.trials
        if not t.passed
    ]
    if report.trials:
        parts.append(chart(report))
    return Group(*parts, verdict, after)


def trial_line(label: str, trial: TrialReport) -> Text:
    """The line printed when a trial ends: throughput, p95 TTFT and the verdict."""
    line = Text(f"{label}: {trial.output_throughput:.4g} tok/s, p95 TTFT ")
    return line + Text(f"{_ms(trial.p95_ttft_ms)} → ") + _verdict(trial)
