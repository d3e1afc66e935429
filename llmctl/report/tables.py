"""The raw numbers beneath the figures, as plain tables of text: per level, per trial, per run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from llmctl.report.comparison import settings_that_differ
from llmctl.report.model import (
    LATENCY_METRICS,
    LATENCY_STATS,
    METRIC_TEXT,
    SERVER_OTHERS,
    SERVER_PEAKS,
    BenchRun,
    LevelStats,
    Run,
    Trial,
    TuneRun,
)

T = TypeVar("T")

DASH = "–"


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def raw(value: float | int | None, decimals: int = 2) -> str:
    """A number as the table shows it: thousands separated, a dash for no sample."""
    if value is None:
        return DASH
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{decimals}f}"


def _columns(
    spec: Sequence[tuple[str, Callable[[T], str]]], items: Sequence[T]
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """A table's header and rows from (column, cell of an item) pairs."""
    header = tuple(name for name, _ in spec)
    return header, tuple(tuple(cell(item) for _, cell in spec) for item in items)


_LEVEL_COLUMNS: tuple[tuple[str, Callable[[LevelStats], str]], ...] = (
    ("level", lambda lv: lv.label),
    ("seconds", lambda lv: raw(lv.duration_s)),
    ("ok", lambda lv: raw(lv.completed)),
    ("failed", lambda lv: raw(lv.failed)),
    ("req/s", lambda lv: raw(lv.request_throughput)),
    ("goodput req/s", lambda lv: raw(lv.request_goodput)),
    ("output tok/s", lambda lv: raw(lv.output_throughput)),
    ("peak output tok/s", lambda lv: raw(lv.max_output_tokens_per_s)),
    ("total tok/s", lambda lv: raw(lv.total_token_throughput)),
    ("input tokens", lambda lv: raw(lv.total_input_tokens)),
    ("output tokens", lambda lv: raw(lv.total_output_tokens)),
    ("tokens from", lambda lv: lv.token_source or DASH),
    ("peak in flight", lambda lv: raw(lv.max_concurrent_requests)),
)

_TRIAL_COLUMNS: tuple[tuple[str, Callable[[Trial], str]], ...] = (
    ("#", lambda t: str(t.order)),
    ("MAX_ACTIVE", lambda t: str(t.max_active)),
    ("SLO", lambda t: "pass" if t.passed else "fail"),
    ("clients", lambda t: str(t.concurrency)),
    ("ok", lambda t: raw(t.completed)),
    ("failed", lambda t: raw(t.failed)),
    ("output tok/s", lambda t: raw(t.output_throughput, 1)),
    ("req/s", lambda t: raw(t.request_throughput)),
    ("p95 TTFT ms", lambda t: raw(t.p95.get("ttft"))),
    ("p95 ITL ms", lambda t: raw(t.p95.get("itl"))),
    ("p95 E2E ms", lambda t: raw(t.p95.get("e2e"))),
    ("p95 queue wait ms", lambda t: raw(t.p95.get("queue_wait"))),
    ("preemptions/s", lambda t: raw(t.preemptions_per_s)),
    ("peak KV %", lambda t: raw(t.peak_kv_cache, 1)),
    ("peak running", lambda t: raw(t.peak_running, 0)),
    ("broken", lambda t: "; ".join(t.violations)),
)


def bench_tables(run: BenchRun) -> list[Table]:
    levels = run.levels
    tables = [
        Table("Levels", *_columns(_LEVEL_COLUMNS, levels)),
        Table(
            "Latency (ms)",
            ("level", "metric", *LATENCY_STATS),
            tuple(
                (lv.label, METRIC_TEXT[m], *(raw(lv.ms(m, s)) for s in LATENCY_STATS))
                for lv in levels
                for m in LATENCY_METRICS
                if any(lv.ms(m, s) is not None for s in LATENCY_STATS)
            ),
            note="TTFT and E2E from when the request was sent; ITL pools every gap between "
            "chunks; TPOT is per request; queue wait is the gateway's X-Queue-Wait-Ms, and "
            "from admission that wait is taken off each request; send lag is how late this "
            "client sent against plan (high: the client was the limit); std is the "
            "population's (schema 2).",
        ),
    ]
    failures = tuple(
        (lv.label, name, raw(count), lv.error_samples.get(name, ""))
        for lv in levels
        for name, count in lv.failures.items()
        if count
    )
    if failures:
        tables.append(Table("Failures", ("level", "class", "count", "first message"), failures))
    if any(v is not None for lv in levels for v in lv.server.values()):
        columns = [
            (f"{text} {unit}" if unit in ("%", "s") else text, key, unit)
            for key, text, unit in (*SERVER_PEAKS, *SERVER_OTHERS)
        ]
        tables.append(
            Table(
                "Server side (from /metrics)",
                ("level", *(text for text, _, _ in columns)),
                tuple(
                    (lv.label, *(_server_cell(lv.server.get(k), unit) for _, k, unit in columns))
                    for lv in levels
                ),
                note="Engine running, waiting, gateway queue and active, and KV cache are "
                "peaks of the samples (warm-up included); preemptions count the engine's "
                "counter over the level; the means are time averages from the engine's "
                "histograms (schema 2).",
            )
        )
    return tables


def _server_cell(value: float | None, unit: str) -> str:
    """Counts of requests or samples whole, a percentage to 0.1, seconds to the millisecond."""
    if unit in ("requests", "count") and value is not None and value.is_integer():
        return raw(int(value))
    return raw(value, {"%": 1, "s": 3}.get(unit, 2))


def tune_tables(run: TuneRun) -> list[Table]:
    return [
        Table(
            "Trials, in the order they ran",
            *_columns(_TRIAL_COLUMNS, run.trials),
            note="Latencies of admitted requests (the gateway's queue wait taken off, shown on "
            "its own); clients = the closed-loop load that drove the trial.",
        )
    ]


def runs_table(runs: Sequence[Run]) -> Table:
    return Table(
        "Runs",
        ("run", "tool", "file", "schema", "llmctl", "started"),
        tuple(
            (
                r.info.name,
                r.info.tool,
                r.info.path,
                str(r.info.schema_version),
                r.info.llmctl_version or DASH,
                r.info.started_at or DASH,
            )
            for r in runs
        ),
    )


def differences_table(runs: Sequence[Run]) -> Table:
    rows = tuple((key, *values) for key, values in settings_that_differ([r.info for r in runs]))
    unrecorded: list[str] = []
    for run in runs:
        unrecorded.extend(u for u in run.info.unrecorded if u not in unrecorded)
    note = (
        "Addresses are left out." if rows else "No recorded setting differs (addresses left out)."
    )
    if unrecorded:
        note += f" Not recorded in every run, so not compared: {'; '.join(unrecorded)}."
    return Table("Settings that differ", ("setting", *(r.info.name for r in runs)), rows, note)


def side_by_side(runs: Sequence[BenchRun]) -> Table:
    """Key numbers of each level, one column per run; levels matched by their label."""
    labels: list[str] = []
    for run in runs:
        labels.extend(lv.label for lv in run.levels if lv.label not in labels)
    metrics: tuple[tuple[str, Callable[[LevelStats], float | None]], ...] = (
        ("req/s", lambda lv: lv.request_throughput),
        ("output tok/s", lambda lv: lv.output_throughput),
        ("goodput req/s", lambda lv: lv.request_goodput),
        ("p50 TTFT ms", lambda lv: lv.ms("ttft", "p50")),
        ("p95 TTFT ms", lambda lv: lv.ms("ttft", "p95")),
        ("p95 ITL ms", lambda lv: lv.ms("itl", "p95")),
        ("p95 E2E ms", lambda lv: lv.ms("e2e", "p95")),
        ("failed", lambda lv: lv.failed),
    )
    rows = []
    for label in labels:
        found = [next((lv for lv in run.levels if lv.label == label), None) for run in runs]
        for name, pick in metrics:
            values = [None if lv is None else pick(lv) for lv in found]
            if any(v is not None for v in values):
                rows.append((label, name, *(raw(v) for v in values)))
    return Table("Side by side", ("level", "metric", *(r.info.name for r in runs)), tuple(rows))
