"""Bench results as rich renderables (pure): progress lines, the run's header, the compact and full
level tables with their legends, and the server-side table."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from llmctl.bench.catalog import SECTIONS, Number, failure_numbers, fmt, value
from llmctl.bench.compare import Comparison
from llmctl.bench.export import change_text, number_text
from llmctl.bench.progress import LevelProgress
from llmctl.bench.report import BenchReport, LevelNumbers, LevelReport
from llmctl.bench.strategies import MixStrategy
from llmctl.core.slo import format_duration


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    digits: int | None = 1


@dataclass(frozen=True)
class Term:
    """One entry of a legend: what its columns mean (each header is explained exactly once)."""

    meaning: str
    columns: tuple[Column, ...]


_LEVEL = Term(
    "the load: `conc N` keeps N requests in flight (closed loop), `R/s` starts R requests a "
    "second (open loop)",
    (Column("level", "label"),),
)
COMPACT: tuple[Term, ...] = (
    _LEVEL,
    Term("seconds measured (warm-up excluded)", (Column("s", "duration"),)),
    Term("requests that succeeded", (Column("ok", "completed", 0),)),
    Term("requests that failed, with counts by class (429, 503, ...)", (Column("fail", "failed"),)),
    Term("requests finished per second", (Column("req/s", "request_throughput", 2),)),
    Term("output tokens per second", (Column("out\ntok/s", "output_throughput"),)),
    Term(
        "time to first token (send to first token), median and 99th percentile, ms",
        (Column("TTFT\np50", "median_ttft_ms"), Column("TTFT\np99", "p99_ttft_ms")),
    ),
    Term(
        "time per output token after the first, per request, median, ms",
        (Column("TPOT\np50", "median_tpot_ms"),),
    ),
    Term(
        "inter-token latency (every gap between tokens), 99th percentile, ms",
        (Column("ITL\np99", "p99_itl_ms"),),
    ),
    Term(
        "end-to-end latency (send to last byte), 99th percentile, ms",
        (Column("E2E\np99", "p99_e2el_ms"),),
    ),
    Term(
        "the most requests in flight at once, as this client saw them",
        (Column("conc", "max_concurrent_requests", 0),),
    ),
    Term(
        "send lag, 99th percentile, ms: how late this client sent against plan; when it grows to "
        "milliseconds the client, not the server, is the limit",
        (Column("lag\np99", "p99_sched_lag_ms", 2),),
    ),
)
SERVER: tuple[Term, ...] = (
    _LEVEL,
    Term(
        "peak vllm:kv_cache_usage_perc sampled (100% = the whole KV cache)",
        (Column("KV\npeak", "server.peak_kv_cache_usage_perc"),),
    ),
    Term(
        "increase of vllm:num_preemptions_total (a counter: never missed)",
        (Column("preempt", "server.preemptions", None),),
    ),
    Term(
        "engine requests running / waiting: peak sampled, and time average from vLLM's "
        "prefill+decode / queue time histograms (Little's law: never missed)",
        (
            Column("run\npeak", "server.peak_num_requests_running", None),
            Column("run\nmean", "server.mean_num_requests_running", 2),
            Column("wait\npeak", "server.peak_num_requests_waiting", None),
            Column("wait\nmean", "server.mean_num_requests_waiting", 2),
        ),
    ),
    Term(
        "the llmctl gateway's queue depth and active requests, peak sampled",
        (
            Column("gw queue\npeak", "server.peak_gateway_queue_depth", None),
            Column("gw active\npeak", "server.peak_gateway_active_requests", None),
        ),
    ),
    Term(
        "gateway queue wait of served requests (X-Queue-Wait-Ms), 99th percentile, ms",
        (Column("queue wait\np99", "p99_queue_wait_ms"),),
    ),
    Term(
        "samples of /metrics and the longest gap between two, s (a gauge spike shorter than the "
        "gap can be missed)",
        (Column("samples", "server.samples", 0), Column("gap", "server.max_sample_gap_s", 2)),
    ),
)


STREAMS: tuple[Term, ...] = (
    Term(
        "a mix level (--mix) and its streams, each measured on its own over the level's window",
        (Column("level", "label"), Column("stream", "name")),
    ),
    Term(
        "the stream's X-Llmctl-Class header and its load",
        (Column("class", "class"), Column("load", "load")),
    ),
    *COMPACT[2:],
    Term(
        "gateway queue wait of the stream's served requests (X-Queue-Wait-Ms), mean and 99th "
        "percentile, ms",
        (
            Column("queue wait\nmean", "mean_queue_wait_ms"),
            Column("queue wait\np99", "p99_queue_wait_ms"),
        ),
    ),
)


def progress_view(p: LevelProgress) -> RenderableType:
    """One line per running level: phase, bar, live counts."""
    fraction = p.fraction
    width = 16
    filled = round(width * fraction) if fraction is not None else 0
    bar = "█" * filled + "░" * (width - filled) if fraction is not None else "…"
    phase_style = {"warmup": "yellow", "measure": "green", "drain": "cyan"}[p.phase]
    return Text.assemble(
        (f"[{p.index + 1}/{p.total}] ", "bold"),
        (f"{p.strategy.label:<18}", ""),
        (f"{p.phase:<8}", phase_style),
        f"{bar} {p.elapsed_s:5.1f}s ",
        f"ok {p.completed} ",
        (f"fail {p.failed}", "red" if p.failed else ""),
        f" inflight {p.in_flight} tok {p.output_tokens}",
    )


def progress_line(p: LevelProgress) -> str:
    """The same as plain text, for a log: no bar, no redraw."""
    planned = f"/{p.planned_s:.0f}s" if p.planned_s else "s"
    rate = p.output_tokens / p.elapsed_s if p.elapsed_s > 0 else 0.0
    return (
        f"[{p.index + 1}/{p.total}] {p.strategy.label} {p.phase} {p.elapsed_s:.1f}{planned} "
        f"ok {p.completed} fail {p.failed} inflight {p.in_flight} tok {p.output_tokens} "
        f"({rate:.1f} tok/s)"
    )


def level_line(level: LevelReport, elapsed_s: float | None = None) -> Text:
    """The one-line summary printed when a level ends (`elapsed_s`: its wall time, warm-up and
    drain included)."""
    took = f" in {elapsed_s:.1f}s" if elapsed_s is not None else ""
    return Text.assemble(
        ("done ", "green"),
        (f"{level.label}{took}: ", "bold"),
        f"{level.completed} ok, ",
        (f"{level.failed} failed", "red" if level.failed else "dim"),
        f", {fmt(level.request_throughput)} req/s, {fmt(level.output_throughput, 1)} out tok/s, ",
        f"TTFT p50 {fmt(level.median_ttft_ms, 1)} ms, ITL p50 {fmt(level.median_itl_ms, 1)} ms",
    )


def run_header(report: BenchReport) -> Text:
    """Who was measured and how: target, model, label, metadata, the target's limits, the SLO."""
    lines = [
        f"llmctl bench · {report.target} · model {report.model} · llmctl {report.llmctl_version}"
    ]
    if report.label:
        lines.append(f"label: {report.label}")
    if report.metadata:
        lines.append("metadata: " + ", ".join(f"{k}={v}" for k, v in report.metadata.items()))
    lines.append(f"target limits: {limits_text(report)}")
    if not report.config.slo.empty:
        lines.append(
            f"goodput SLO: {report.config.slo.text()} (per request; ITL judged by its TPOT)"
        )
    return Text("\n".join(lines))


def limits_text(report: BenchReport) -> str:
    limits = report.limits
    if limits is None:
        return "none published (not an llmctl gateway, or its /metrics could not be read)"
    timeout = limits.queue_timeout_s
    return (
        f"MAX_ACTIVE {fmt(limits.max_active)}, queue max {fmt(limits.queue_max)}, queue timeout "
        f"{'-' if timeout is None else format_duration(timeout)}, queue mode "
        f"{limits.queue_mode or 'not published'} (from the gateway's /metrics)"
    )


def _table(title: str | None = None) -> Table:
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
        show_edge=False,
    )


def _cell(level: LevelNumbers, column: Column) -> str | Text:
    if column.field == "failed":
        classes = ", ".join(
            f"{k.removeprefix('http_')}:{v}" for k, v in level.failures.items() if v
        )
        text = str(level.failed) + (f" ({classes})" if classes else "")
        return Text(text, "red") if level.failed else Text(text)
    if column.field == "server.peak_kv_cache_usage_perc":
        kv = value(level, column.field)
        return "-" if not isinstance(kv, float) else f"{kv:.0%}"
    return fmt(value(level, column.field), column.digits)


def _terms_table(terms: tuple[Term, ...], levels: list[LevelReport], title: str) -> Table:
    table = _table(title)
    for term in terms:
        for column in term.columns:
            if column.field == "label":
                table.add_column(column.header, no_wrap=True)
            else:
                # fold, never ellipsis: in a narrow terminal a number wraps, keeping its digits
                table.add_column(column.header, justify="right", overflow="fold")
    for level in levels:
        table.add_row(*(_cell(level, c) for term in terms for c in term.columns))
    return table


def legend(terms: tuple[Term, ...]) -> Text:
    """Each column header once, with what it means (lines of text: nothing to pad or cut)."""
    width = min(18, max(len(_terms(term)) for term in terms))
    lines: list[str] = []
    for term in terms:
        headers = _terms(term)
        if len(headers) > width:  # the meaning goes under it, still in the meanings' column
            lines += [headers, f"{'':<{width}}  {term.meaning}"]
        else:
            lines.append(f"{headers:<{width}}  {term.meaning}")
    return Text("\n".join(lines), "dim")


def _terms(term: Term) -> str:
    return ", ".join(c.header.replace("\n", " ") for c in term.columns)


def compact_terms(report: BenchReport) -> tuple[Term, ...]:
    if report.config.slo.empty:
        return COMPACT
    goodput = Term(
        f"requests per second that met the SLO {report.config.slo.text()}",
        (Column("goodput", "request_goodput", 2),),
    )
    return (*COMPACT, goodput)


def levels_table(report: BenchReport) -> Table:
    """The default table: one row per level, the headline numbers."""
    return _terms_table(compact_terms(report), report.levels, "per level")


def stream_terms(report: BenchReport) -> tuple[Term, ...]:
    goodput = compact_terms(report)[len(COMPACT) :]
    return (*STREAMS, *goodput)


def streams_table(report: BenchReport) -> Table | None:
    """Each mix level's streams, a row each with the headline numbers and the queue wait."""
    mixes = [
        (lv, lv.strategy)
        for lv in report.levels
        if lv.streams and isinstance(lv.strategy, MixStrategy)
    ]
    if not mixes:
        return None
    terms = stream_terms(report)
    columns = [c for term in terms for c in term.columns]
    table = _table("per stream (mix levels)")
    for column in columns:
        if column.field in ("label", "name", "class", "load"):
            table.add_column(column.header, no_wrap=True)
        else:
            table.add_column(column.header, justify="right", overflow="fold")
    for level, mix in mixes:
        specs = {spec.name: spec for spec in mix.streams}
        for i, stream in enumerate(level.streams):
            spec = specs.get(stream.name)
            words = {
                "label": level.label if i == 0 else "",
                "name": stream.name,
                "class": (spec.class_name if spec else None) or "-",
                "load": spec.load.label if spec else "-",
            }
            table.add_row(
                *(words[c.field] if c.field in words else _cell(stream, c) for c in columns),
                end_section=i == len(level.streams) - 1,
            )
    return table


def server_table(report: BenchReport) -> Table | None:
    """Server-side numbers per level, when any endpoint could be sampled."""
    levels = [lv for lv in report.levels if lv.server and lv.server.samples]
    if not levels:
        return None
    return _terms_table(SERVER, levels, "server side, from /metrics (warm-up included)")


def _full_columns(report: BenchReport) -> list[tuple[str, LevelNumbers]]:
    """A column per level, and after a mix level one per stream (`mix NAME / STREAM`)."""
    columns: list[tuple[str, LevelNumbers]] = []
    for level in report.levels:
        columns.append((level.label, level))
        columns += [(f"{level.label} / {s.name}", s) for s in level.streams]
    return columns


def full_table(report: BenchReport) -> Table:
    """`--verbose`: every number of every level (and mix stream), a row each, named as in the
    JSON."""
    columns = _full_columns(report)
    levels = [numbers for _, numbers in columns]
    table = _table("every number per level (JSON field names as in `vllm bench serve`)")
    table.add_column("number", no_wrap=True)
    table.add_column("JSON field", style="dim", no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", overflow="fold")
    slo = report.config.slo
    for section in SECTIONS:
        numbers = list(section.numbers)
        if section.title == "Requests":
            numbers[3:3] = failure_numbers(levels)
        rows = [n for n in numbers if any(value(lv, n.field) is not None for lv in levels)]
        if not rows:
            continue
        table.add_row(Text(section.title, "bold"), "", *("" for _ in levels))
        for number in rows:
            label = number.label
            if number.field == "request_goodput":
                label += f", SLO {slo.text()}"
            table.add_row(label, number.field, *_cells(number, levels))
    return table


def _cells(number: Number, levels: list[LevelNumbers]) -> list[str]:
    return [fmt(value(level, number.field), number.digits) for level in levels]


def report_view(report: BenchReport, *, verbose: bool = False) -> RenderableType:
    """What `llmctl bench` prints after a run: header, tables and legends."""
    parts: list[RenderableType] = [run_header(report), Text("")]
    if verbose:
        parts.append(full_table(report))
    parts += [levels_table(report), legend(compact_terms(report))]
    sources = sorted({level.token_source for level in report.levels} - {"none"})
    if sources:
        parts.append(Text(f"token counts from: {', '.join(sources)}", "dim"))
    streams = streams_table(report)
    if streams is not None:
        parts += [Text(""), streams, legend(stream_terms(report)[:2] + STREAMS[-1:])]
    server = server_table(report)
    if server is not None:
        parts += [Text(""), server, legend(SERVER[1:])]
    return Group(*parts)


def compare_view(c: Comparison) -> RenderableType:
    """The settings that differ, then the headline numbers grouped by level, the change coloured
    (green better, red worse) and said in words, so it survives a pipe."""
    title = Text.assemble((c.a_name, "bold"), " (A) vs ", (c.b_name, "bold"), " (B)")
    if c.settings:
        settings = Table.grid(padding=(0, 1))
        settings.add_column(no_wrap=True)
        for column in range(3):
            settings.add_column(overflow="fold", justify="right" if column == 1 else "left")
        for s in c.settings:
            settings.add_row(s.name, s.a, "->", s.b)
        head: RenderableType = Group(Text("settings that differ:"), settings)
    else:
        head = Text("same settings", "dim")
    table = _table()
    for name in ("level", "metric", "A", "B", "change", ""):
        right = name in ("A", "B", "change")
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for level in c.levels:
        rows = [r for r in c.rows if r.level == level]
        for i, r in enumerate(rows):
            style = {True: "green", False: "red", None: ""}[r.better]
            table.add_row(
                Text(level, "bold") if i == 0 else "",
                r.label,
                number_text(r, r.a),
                number_text(r, r.b),
                Text(change_text(r), style),
                Text(r.verdict, style),
                end_section=i == len(rows) - 1,
            )
    parts: list[RenderableType] = [title, head, Text(""), table]
    if c.unmatched:
        parts.append(Text(f"levels only in one report: {', '.join(c.unmatched)}", "yellow"))
    return Group(*parts)
