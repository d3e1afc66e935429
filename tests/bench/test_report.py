"""The JSON result round-trips through its schema; CSV and compare work on real results."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmctl.bench.compare import ComparisonRow, compare_reports
from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.export import to_csv
from llmctl.bench.metrics import Window, busiest_second, level_report, percentile
from llmctl.bench.record import RequestRecord
from llmctl.bench.report import BenchReport, load_report
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from llmctl.core.errors import UsageError
from llmctl.core.slo import SLO
from tests.bench.conftest import StartServer


@pytest.fixture
def report(fake_engine: StartServer) -> BenchReport:
    with fake_engine("--ttft-ms", "5", "--itl-ms", "5") as url:
        config = BenchConfig(
            target=url,
            api_key="secret-key",
            levels=[
                ConcurrentStrategy(concurrency=1),
                RateStrategy(rate=20, arrival="gamma", burstiness=0.5),
            ],
            requests=6,
            prompts=PromptSpec(input_len=16, output_len=8),
            slo=SLO(ttft_s=1),
        )
        return run_bench(config)


def test_json_round_trips_and_hides_the_key(report: BenchReport, tmp_path: Path) -> None:
    text = report.to_json()
    assert "secret-key" not in text
    again = BenchReport.from_json(text)
    assert again == report
    data = json.loads(text)
    assert data["schema_version"] == 2
    level = data["levels"][0]
    for name in ("request_throughput", "output_throughput", "total_token_throughput",
                 "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                 "mean_itl_ms", "mean_e2el_ms", "request_goodput", "std_ttft_ms",
                 "max_output_tokens_per_s", "max_concurrent_requests"):  # fmt: skip
        assert name in level
    assert level["max_concurrent_requests"] == 1  # conc 1
    assert data["label"] is None
    assert data["metadata"] == {}
    assert data["limits"] is None  # a bare engine publishes no admission limits
    path = tmp_path / "r.json"
    path.write_text(text)
    assert load_report(path) == report


def test_schema_forbids_unknown_and_foreign_versions(report: BenchReport, tmp_path: Path) -> None:
    data = json.loads(report.to_json())
    data["levels"][0]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        BenchReport.model_validate(data)
    data = json.loads(report.to_json())
    data["schema_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="schema_version"):
        load_report(path)
    with pytest.raises(UsageError, match="cannot read"):
        load_report(tmp_path / "missing.json")


DATA = Path(__file__).parent / "data"


def test_a_version_1_report_still_loads() -> None:
    # Written by llmctl before v2 (commit 9037471): SLO in ms, the peak in flight as max_concurrency.
    v1 = json.loads((DATA / "bench-v1.json").read_text())
    assert v1["schema_version"] == 1
    report = load_report(DATA / "bench-v1.json")
    assert report.schema_version == 2
    assert report.config.slo == SLO(ttft_s=1.0, itl_s=0.1)
    level = report.levels[0]
    assert level.max_concurrent_requests == v1["levels"][0]["max_concurrency"]
    assert level.completed == v1["levels"][0]["completed"] == 6
    assert level.strategy == RateStrategy(rate=20)  # the strategy's own cap keeps its name
    assert level.std_ttft_ms is None  # not measured then
    assert report.label is None
    assert report.limits is None
    assert level.server is not None
    assert level.server.series is None  # peaks only, then


def test_an_early_version_2_report_still_loads() -> None:
    # Written by v2 before its release (commit 175ec9f), still with max_concurrency.
    early = json.loads((DATA / "bench-v2-early.json").read_text())
    report = load_report(DATA / "bench-v2-early.json")
    assert report.levels[0].max_concurrent_requests == early["levels"][0]["max_concurrency"] == 2
    assert report.config.slo == SLO(ttft_s=1.0)
    assert all(lv.server is not None and lv.server.series is None for lv in report.levels)


def test_csv_has_one_row_per_level(report: BenchReport) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert [row["level"] for row in rows] == ["conc 1", "20/s gamma b=0.5"]
    assert rows[0]["completed"] == "6"
    assert float(rows[1]["p99_ttft_ms"]) > 0
    assert "failures_http_429" in rows[0]


def test_compare_pairs_levels_and_ratios(report: BenchReport) -> None:
    slower = report.model_copy(deep=True)
    slower.levels[0].median_ttft_ms = (report.levels[0].median_ttft_ms or 0) * 2
    comparison = compare_reports(report, slower)
    row = next(r for r in comparison.rows if r.level == "conc 1" and r.metric == "median_ttft_ms")
    assert row.change_pct == pytest.approx(100.0)
    assert row.better is False
    assert row.verdict == "worse"
    assert comparison.unmatched == []
    assert comparison.settings == []  # the same run, twice
    same = next(r for r in comparison.rows if r.metric == "request_throughput")
    assert same.better is None
    assert same.verdict == ""


@pytest.mark.parametrize(
    ("metric", "a", "b", "change", "better"),
    [
        ("p99_ttft_ms", 100.0, 50.0, -50.0, True),
        ("p99_ttft_ms", 100.0, 100.04, 0.04, None),  # prints as +0.0%: no verdict
        ("output_throughput", 100.0, 110.0, 10.0, True),
        ("failed", 0.0, 3.0, None, False),  # no base for a percentage, still worse
        ("failed", 0.0, 0.0, None, None),
        ("request_goodput", None, 2.0, None, None),
    ],
)
def test_change_and_verdict(
    metric: str, a: float | None, b: float | None, change: float | None, better: bool | None
) -> None:
    row = ComparisonRow("conc 1", metric, a, b)
    assert row.change_pct == (None if change is None else pytest.approx(change))
    assert row.better is better


def test_busiest_second_counts_whole_seconds() -> None:
    early = _record(0.0, 0.1, [0.09] * 9)  # 10 tokens in 0.1..0.91 s
    late = _record(1.0, 0.2, [0.05] * 3)  # 4 tokens in 1.2..1.35 s
    assert busiest_second([early, late], Window(0.0, 2.5)) == pytest.approx(10.0)
    # the half second at the end is no whole second; a window under a second is its own rate
    assert busiest_second([late], Window(1.5, 2.5)) is None
    assert busiest_second([late], Window(1.0, 1.5)) == pytest.approx(8.0)


def _record(
    sent: float, ttft: float, gaps: list[float], failure: str | None = None
) -> RequestRecord:
    times = [sent + ttft]
    for gap in gaps:
        times.append(times[-1] + gap)
    record = RequestRecord(planned=sent, sent=sent, first_token=None if failure else times[0])
    record.token_times = [] if failure else times
    record.end = times[-1] if not failure else sent + 0.001
    record.failure = failure
    return record


def test_level_report_math() -> None:
    records = [
        _record(0.0, 0.1, [0.01, 0.03]),
        _record(0.0, 0.3, [0.02, 0.02]),
        _record(0.5, 0.0, [], failure="http_429"),
    ]
    level = level_report(
        ConcurrentStrategy(concurrency=2), records, records, Window(0.0, 1.0),
        slo=SLO(ttft_s=0.2), max_concurrent_requests=2,
    )  # fmt: skip
    assert level.completed == 2
    assert level.failed == 1
    assert level.failures["http_429"] == 1
    assert level.mean_ttft_ms == pytest.approx(200.0)
    assert level.max_ttft_ms == pytest.approx(300.0)
    assert level.median_itl_ms == pytest.approx(20.0)
    assert level.mean_tpot_ms == pytest.approx(20.0)  # (40 ms / 2 tokens) for both
    assert level.request_goodput == pytest.approx(1.0)  # only the first meets ttft <= 200 ms
    assert level.output_throughput == pytest.approx(6.0)  # 6 chunks in the 1 s window
    assert level.max_output_tokens_per_s == pytest.approx(6.0)  # the one whole second
    assert level.std_ttft_ms == pytest.approx(100.0)  # population std of 100 and 300
    assert level.token_source == "chunks"
    assert level.mean_admitted_ttft_ms is None  # no queue wait reported
    records[0].queue_wait_ms = 50.0
    records[1].queue_wait_ms = 250.0
    level = level_report(
        ConcurrentStrategy(concurrency=2), records, records, Window(0.0, 1.0),
        slo=SLO(), max_concurrent_requests=2,
    )  # fmt: skip
    assert level.mean_admitted_ttft_ms == pytest.approx(50.0)  # (100-50 + 300-250) / 2
    assert level.request_goodput is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
