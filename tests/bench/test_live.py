"""Rich views render the key cells and explain every header; progress is a Live line on a terminal
and plain lines anywhere else."""

from __future__ import annotations

import io
import re
import typing
from datetime import UTC, datetime

from rich.console import Console

from llmctl.bench.catalog import BY_FIELD, fmt
from llmctl.bench.compare import compare_reports
from llmctl.bench.config import BenchConfig
from llmctl.bench.live import ConsoleProgress
from llmctl.bench.metrics import Window, level_report
from llmctl.bench.progress import LevelProgress
from llmctl.bench.record import RequestRecord
from llmctl.bench.report import BenchReport, LevelReport, ServerReport, TargetLimits
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from llmctl.bench.view import (
    SERVER,
    compact_terms,
    compare_view,
    full_table,
    legend,
    levels_table,
    progress_view,
    report_view,
    server_table,
)
from llmctl.cli.output import natural_width
from llmctl.core.slo import SLO


def _report(ttft: float, failures: int = 0, max_active: int = 4) -> BenchReport:
    levels = []
    for strategy in (ConcurrentStrategy(concurrency=4), RateStrategy(rate=2.5)):
        records = []
        for i in range(10):
            r = RequestRecord(planned=i * 0.1, sent=i * 0.1)
            r.first_token = r.sent + ttft
            r.token_times = [r.first_token + k * 0.02 for k in range(8)]
            r.end = r.token_times[-1]
            r.queue_wait_ms = 3.0
            records.append(r)
        for i in range(failures):
            bad = RequestRecord(planned=0.5, sent=0.5, end=0.51, status=429, failure="http_429")
            bad.error = f"queue_full {i}"
            records.append(bad)
        server = ServerReport(
            samples=3, span_s=2.0, max_sample_gap_s=0.1, peak_kv_cache_usage_perc=0.42,
            preemptions=2.0, peak_num_requests_running=4.0, mean_num_requests_running=3.25,
        )  # fmt: skip
        levels.append(
            level_report(
                strategy,
                records,
                records,
                Window(0.0, 2.0),
                slo=SLO(ttft_s=0.15),
                max_concurrent_requests=4,
                server=server,
            )
        )
    config = BenchConfig(
        target="http://t", levels=[lv.strategy for lv in levels], requests=10, slo=SLO(ttft_s=0.15)
    )
    return BenchReport(
        llmctl_version="0", started_at=datetime.now(UTC), target="http://t", model="m",
        config=config, levels=levels, limits=TargetLimits(max_active=max_active, queue_max=64),
    )  # fmt: skip


def _text(renderable: object, width: int = 120, **options: typing.Any) -> str:
    out = io.StringIO()
    Console(file=out, width=width, **options).print(renderable)
    return out.getvalue()


def test_levels_and_server_tables_show_key_cells() -> None:
    text = _text(levels_table(_report(0.1, failures=3)))
    assert "conc 4" in text
    assert "2.5/s poisson" in text
    assert "3 (429:3)" in text  # failures by class, apart from latencies
    assert "100.0" in text  # TTFT p50 in ms
    server = _text(server_table(_report(0.1)))
    assert "42%" in server
    assert "3.25" in server  # engine running, time-averaged from histograms


def test_every_header_is_explained_once() -> None:
    report = _report(0.1)
    for terms in (compact_terms(report), SERVER[1:]):
        lines = _text(legend(terms), width=400).splitlines()
        named = [line.split("  ")[0].split(", ") for line in lines if not line.startswith(" ")]
        for term in terms:
            for column in term.columns:
                header = column.header.replace("\n", " ")
                assert sum(header in headers for headers in named) == 1, header
    assert "ttft=150ms" in _text(legend(compact_terms(report)), width=400)  # goodput's SLO


def _numbers(level: LevelReport) -> dict[str, float | int]:
    """Every number of a level, by its catalog field name."""
    data = level.model_dump(exclude={"strategy", "error_samples"})
    flat: dict[str, float | int] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, number in value.items():
                if isinstance(number, int | float) and not isinstance(number, bool):
                    flat[f"{key}.{sub}"] = number
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[key] = value
    return flat


def test_numbers_are_printed_whole() -> None:
    assert fmt(1234567.0, None) == "1234567"
    assert fmt(0.2, None) == "0.2"
    assert fmt(0.123456789, None) == "0.123456789"
    assert fmt(12.345, 2) == "12.35"
    assert fmt(7, 2) == "7"
    assert fmt(None) == "-"


def test_the_catalog_names_every_number_of_a_level() -> None:
    level = _report(0.1, failures=1).levels[0]
    missing = [name for name in _numbers(level) if name not in BY_FIELD]
    assert [n for n in missing if not n.startswith("failures.")] == []


def assert_whole(text: str, report: BenchReport) -> None:
    """Every non-zero number of every level is in `text`, formatted as the catalog says, whole."""
    for level in report.levels:
        for name, number in _numbers(level).items():
            if name.startswith("failures.") and number == 0:
                continue  # classes that never happened have no row
            digits = BY_FIELD[name].digits if name in BY_FIELD else 0
            cell = re.escape(fmt(number, digits))
            assert re.search(rf"(?<![\w.]){cell}(?![\w.])", text), (name, fmt(number, digits))


def test_the_full_table_prints_every_number_whole() -> None:
    report = _report(0.1, failures=2)
    table = full_table(report)
    text = _text(table, width=natural_width(table))
    assert_whole(text, report)
    assert "…" not in text
    assert "Request goodput (req/s), SLO ttft=150ms" in text
    assert "failed: http_429" in text


def test_the_run_view_names_the_limits_and_the_slo() -> None:
    report = _report(0.1).model_copy(update={"label": "base", "metadata": {"gpu": "h100"}})
    text = _text(report_view(report), width=400)
    assert "MAX_ACTIVE 4, queue max 64" in text
    assert "queue mode not published" in text
    assert "label: base" in text
    assert "metadata: gpu=h100" in text
    assert "goodput SLO: ttft=150ms" in text


def test_compare_view_shows_what_changed_and_colours_it() -> None:
    comparison = compare_reports(_report(0.1), _report(0.2, max_active=16), "a.json", "b.json")
    text = _text(compare_view(comparison))
    assert "a.json (A) vs b.json (B)" in text
    assert re.search(r"MAX_ACTIVE\s+4\s+->\s+16", text)
    ttft = next(line for line in text.splitlines() if "Median TTFT (ms)" in line)
    assert "+100.0%" in ttft
    assert "worse" in ttft
    coloured = _text(compare_view(comparison), force_terminal=True, color_system="standard")
    ttft = next(line for line in coloured.splitlines() if "Median TTFT (ms)" in line)
    assert "\x1b[31m" in ttft  # red: worse


def _snapshot(elapsed: float) -> LevelProgress:
    return LevelProgress(
        index=0, total=2, strategy=ConcurrentStrategy(concurrency=4), phase="measure",
        elapsed_s=elapsed, planned_s=6.0, requests_target=None, sent=20, completed=15, failed=1,
        in_flight=4, output_tokens=960,
    )  # fmt: skip


def test_console_progress_on_a_terminal_is_a_live_line() -> None:
    screen = io.StringIO()
    console = Console(file=screen, width=120, force_terminal=True)
    progress = ConsoleProgress(console)
    snapshot = _snapshot(3.0)
    assert snapshot.fraction == 0.5
    assert "inflight 4" in _text(progress_view(snapshot))
    progress.on_start(0, 2, snapshot.strategy)
    assert progress._live is not None
    progress.on_update(snapshot)
    progress.on_done(0, _report(0.1).levels[0])
    assert progress._live is None
    out = screen.getvalue()
    assert "████████░░░░░░░░" in out  # the live bar, half way
    assert re.search(r"conc 4 in [\d.]+s: \x1b\[0m10 ok, \x1b\[2m0 failed", out)  # styled summary


def test_console_progress_in_a_log_prints_plain_lines() -> None:
    log = io.StringIO()
    console = Console(file=log, width=80)  # a file: not a terminal
    progress = ConsoleProgress(console, every_s=0.0)
    progress.on_start(0, 2, ConcurrentStrategy(concurrency=4))
    progress.on_update(_snapshot(3.0))
    progress.on_update(_snapshot(4.0))
    progress.on_done(0, _report(0.1).levels[0])
    lines = log.getvalue().splitlines()
    assert lines[0] == "[1/2] conc 4 started"
    assert lines[1] == "[1/2] conc 4 measure 3.0/6s ok 15 fail 1 inflight 4 tok 960 (320.0 tok/s)"
    assert lines[2].startswith("[1/2] conc 4 measure 4.0/6s")
    assert re.match(
        r"done conc 4 in [\d.]+s: 10 ok, 0 failed, 5.00 req/s, 40.0 out tok/s, ", lines[3]
    )
    assert "\x1b" not in "".join(lines)
    quiet_log = io.StringIO()
    quiet = ConsoleProgress(Console(file=quiet_log), every_s=60.0)
    quiet.on_start(0, 1, ConcurrentStrategy(concurrency=1))
    for elapsed in (0.25, 0.5, 0.75):
        quiet.on_update(_snapshot(elapsed))
    assert len(quiet_log.getvalue().splitlines()) == 1
