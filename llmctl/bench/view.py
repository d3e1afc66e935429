"""Bench results as rich renderables: the progress line, the level tables, the compare table (pure)."""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from llmctl.bench.compare import Comparison
from llmctl.bench.progress import LevelProgress
from llmctl.bench.report import BenchReport, LevelReport


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def progress_view(p: LevelProgress) -> RenderableType:
    """One line per running level: phase, bar, live counts."""
    fraction = p.fraction
    width = 16
    filled = round(width * fraction) if fraction is not None else 0
    bar = "█" * filled + "░" * (width - filled) if fraction is not None else "…"
    phase_style = {"warmup": "yellow", "measure": "green", "drain": "cyan"}[p.phase]
    line = Text.assemble(
        (f"[{p.index + 1}/{p.total}] ", "bold"),
        (f"{p.strategy.label:<18}", ""),
        (f"{p.phase:<8}", phase_style),
        f"{bar} {p.elapsed_s:5.1f}s ",
        f"ok {p.completed} ",
        (f"fail {p.failed}", "red" if p.failed else ""),
        f" inflight {p.in_flight} tok {p.output_tokens:,}",
    )
    return line


def level_line(level: LevelReport) -> Text:
    """The one-line summary printed when a level ends."""
    return Text.assemble(
        ("✓ ", "green"),
        (f"{level.label:<18}", "bold"),
        f"{level.request_throughput:7.2f} req/s {level.output_throughput:8,.0f} tok/s ",
        f"TTFT {_ms(level.median_ttft_ms)} ITL {_ms(level.median_itl_ms)} ms  ",
        (f"fail {level.failed}", "red" if level.failed else "dim"),
    )


def levels_table(report: BenchReport) -> Table:
    """The final table: one row per level."""
    table = Table(
        title=f"llmctl bench · {report.target} · {report.model}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
        show_edge=False,
    )
    for name in ("level", "ok", "fail", "req/s", "tok/s", "TTFT\np50", "TTFT\np99",
                 "ITL\np50", "ITL\np99", "E2E\np99", "conc", "lag\np99"):  # fmt: skip
        if name == "level":
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, justify="right")
    has_goodput = any(level.request_goodput is not None for level in report.levels)
    if has_goodput:
        table.add_column("good-\nput", justify="right")
    for level in report.levels:
        failures = ", ".join(
            f"{k.removeprefix('http_')}:{v}" for k, v in level.failures.items() if v
        )
        cells: list[str | Text] = [
            level.label,
            str(level.completed),
            Text(f"{level.failed}" + (f" ({failures})" if failures else ""), "red")
            if level.failed
            else Text("0"),
            f"{level.request_throughput:.2f}",
            f"{level.output_throughput:,.0f}",
            _ms(level.median_ttft_ms),
            _ms(level.p99_ttft_ms),
            _ms(level.median_itl_ms),
            _ms(level.p99_itl_ms),
            _ms(level.p99_e2el_ms),
            str(level.max_concurrency),
            _ms(level.p99_sched_lag_ms),
        ]
        if has_goodput:
            cells.append("-" if level.request_goodput is None else f"{level.request_goodput:.2f}")
        table.add_row(*cells)
    table.caption = "ms; conc = most in flight; lag = client send lag (high: client-bound)"
    return table


def server_table(report: BenchReport) -> Table | None:
    """Server-side peaks per level, when any endpoint could be sampled."""
    rows = [(lv, lv.server) for lv in report.levels if lv.server and lv.server.samples]
    if not rows:
        return None
    table = Table(
        title="server side: peaks sampled from /metrics",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("level", "KV\npeak", "preempt", "running\npeak", "waiting\npeak",
                 "gw queue\npeak", "gw active\npeak", "queue wait\np99 ms"):  # fmt: skip
        table.add_column(name, justify="left" if name == "level" else "right")

    def num(value: float | None, fmt: str = "{:g}") -> str:
        return "-" if value is None else fmt.format(value)

    for level, server in rows:
        assert server is not None
        table.add_row(
            level.label,
            num(server.peak_kv_cache_usage_perc, "{:.0%}"),
            num(server.preemptions),
            num(server.peak_num_requests_running),
            num(server.peak_num_requests_waiting),
            num(server.peak_gateway_queue_depth),
            num(server.peak_gateway_active_requests),
            _ms(level.p99_queue_wait_ms),
        )
    return table


def compare_table(comparison: Comparison) -> Table:
    table = Table(
        title=f"{comparison.a_name} (A) vs {comparison.b_name} (B)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for name in ("level", "metric", "A", "B", "B/A"):
        table.add_column(name, justify="left" if name in ("level", "metric") else "right")
    for row in comparison.rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        style = ""
        if row.ratio is not None and row.better is not None:
            style = "green" if row.better else "red"
        table.add_row(row.level, row.metric, _ms(row.a), _ms(row.b), Text(ratio, style))
    return table
