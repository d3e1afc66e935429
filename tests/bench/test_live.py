"""Rich views render the key cells; the console progress hooks drive a Live display and print a summary."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from llmctl.bench.compare import compare_reports
from llmctl.bench.config import BenchConfig
from llmctl.bench.live import ConsoleProgress
from llmctl.bench.metrics import Window, level_report
from llmctl.bench.progress import LevelProgress
from llmctl.bench.record import RequestRecord
from llmctl.bench.report import BenchReport, ServerReport
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from llmctl.bench.view import compare_table, levels_table, progress_view, server_table
from llmctl.core.slo import SLO


def _report(ttft: float, failures: int = 0) -> BenchReport:
    levels = []
    for strategy in (ConcurrentStrategy(concurrency=4), RateStrategy(rate=2.5)):
        records = []
        for i in range(10):
            r = RequestRecord(planned=i * 0.1, sent=i * 0.1)
            r.first_token = r.sent + ttft
            r.token_times = [r.first_token + k * 0.02 for k in range(8)]
            r.end = r.token_times[-1]
            records.append(r)
        for i in range(failures):
            bad = RequestRecord(planned=0.5, sent=0.5, end=0.51, status=429, failure="http_429")
            bad.error = f"queue_full {i}"
            records.append(bad)
        server = ServerReport(samples=3, peak_kv_cache_usage_perc=0.42, preemptions=2.0)
        levels.append(
            level_report(
                strategy,
                records,
                records,
                Window(0.0, 2.0),
                slo=SLO(ttft_s=0.15),
                max_concurrency=4,
                server=server,
            )
        )
    config = BenchConfig(target="http://t", levels=[lv.strategy for lv in levels], requests=10)
    return BenchReport(
        llmctl_version="0", started_at=datetime.now(UTC), target="http://t", model="m",
        config=config, levels=levels,
    )  # fmt: skip


def _text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_levels_and_server_tables_show_key_cells() -> None:
    text = _text(levels_table(_report(0.1, failures=3)))
    assert "conc 4" in text
    assert "2.5/s poisson" in text
    assert "3 (429:3)" in text  # failures by class, apart from latencies
    assert "100.0" in text  # TTFT p50 in ms
    server = _text(server_table(_report(0.1)))
    row = next(line for line in server.splitlines() if line.strip().startswith("conc 4"))
    # The cells themselves: a bare `"2" in server` also matched the 2 of "42%".
    assert row.split()[2:4] == ["42%", "2"]  # KV peak, preemptions


def test_compare_table_marks_ratios() -> None:
    comparison = compare_reports(_report(0.1), _report(0.2), "a.json", "b.json")
    text = _text(compare_table(comparison))
    assert "a.json (A) vs b.json (B)" in text
    assert "2.000" in text  # TTFT doubled


def test_console_progress_hooks() -> None:
    console = Console(file=io.StringIO(), width=120)
    progress = ConsoleProgress(console)
    strategy = ConcurrentStrategy(concurrency=4)
    snapshot = LevelProgress(
        index=0, total=2, strategy=strategy, phase="measure", elapsed_s=3.0, planned_s=6.0,
        requests_target=None, sent=20, completed=15, failed=1, in_flight=4, output_tokens=960,
    )  # fmt: skip
    assert snapshot.fraction == 0.5
    assert "inflight 4" in _text(progress_view(snapshot))
    progress.on_start(0, 2, strategy)
    progress.on_update(snapshot)
    progress.on_done(0, _report(0.1).levels[0])
    assert "conc 4" in console.file.getvalue()  # type: ignore[attr-defined]
