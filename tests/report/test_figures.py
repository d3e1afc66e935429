"""The pure parts: reading schema-1 files into the model, the figures built from it, axis ticks,
and the settings that differ between runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from llmctl.bench import report as bench_report
from llmctl.report.chart import nice_ticks, tick_text
from llmctl.report.comparison import settings_that_differ
from llmctl.report.figures import bench_figures, tune_figures
from llmctl.report.load import load_runs
from llmctl.report.model import BenchRun, RunInfo, TimeSeries, TuneRun
from llmctl.report.sections import build_sections
from llmctl.report.svg import render_svg
from llmctl.tune import report as tune_report
from tests.report.conftest import BENCH_V1, TUNE_V1


def _bench() -> BenchRun:
    (run,) = load_runs([BENCH_V1])
    assert isinstance(run, BenchRun)
    return run


def test_a_schema_1_bench_file_reads_into_the_model() -> None:
    raw = json.loads(BENCH_V1.read_text())
    run = _bench()
    assert run.info.tool == "bench"
    assert run.info.schema_version == 1
    assert run.info.llmctl_version == raw["llmctl_version"]
    assert run.info.settings["slo"] == "ttft=150ms,e2e=1s"
    assert "api_key" not in " ".join(run.info.settings)
    assert run.slo == {"ttft": 150.0, "e2e": 1000.0}
    assert [lv.label for lv in run.levels] == ["10/s poisson", "30/s poisson", "60/s poisson"]
    first, raw_first = run.levels[1], raw["levels"][1]
    assert first.ms("ttft", "p50") == raw_first["median_ttft_ms"]
    assert first.ms("e2e", "p99") == raw_first["p99_e2el_ms"]
    assert first.failures["http_429"] == raw_first["failures"]["http_429"] > 0
    assert first.server["kv_cache"] == raw_first["server"]["peak_kv_cache_usage_perc"] * 100


@pytest.mark.parametrize(
    ("path", "upgrade"), [(BENCH_V1, bench_report.upgrade), (TUNE_V1, tune_report.upgrade)]
)
def test_schema_1_and_its_schema_2_upgrade_read_the_same(
    tmp_path: Path, path: Path, upgrade: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Schema 2 moved the SLO to seconds; the report reads both into the same run."""
    newer = tmp_path / path.name
    newer.write_text(json.dumps(upgrade(json.loads(path.read_text()))))
    old, new = load_runs([path, newer])
    assert new.info.schema_version == 2
    assert new.slo == pytest.approx(old.slo)
    for field in fields(old):  # everything else is the same
        if field.name not in ("info", "slo", "series_note"):
            assert getattr(new, field.name) == getattr(old, field.name), field.name
    assert settings_that_differ([old.info, new.info]) == []


def test_a_schema_1_tune_file_reads_into_the_model() -> None:
    (run,) = load_runs([TUNE_V1])
    assert isinstance(run, TuneRun)
    assert run.recommended == 8
    assert run.original_max_active == 4
    failing = [t for t in run.trials if not t.passed]
    assert [t.max_active for t in failing] == [16]
    assert failing[0].broken == ("ttft",)
    assert failing[0].violations[0].startswith("p95 TTFT 256 ms > 200 ms")


def test_what_schema_1_did_not_record_says_so() -> None:
    figures = {f.key: f for f in bench_figures(_bench())}
    assert figures["server-series"].empty
    assert figures["server-series"].note.startswith("not recorded in this run")
    assert "not recorded in this run" in render_svg(figures["server-series"])
    no_slo = replace(
        _bench(), levels=tuple(replace(lv, request_goodput=None) for lv in _bench().levels)
    )
    goodput = {f.key: f for f in bench_figures(no_slo)}["goodput"]
    assert goodput.empty
    assert "no --slo" in goodput.note


def test_server_series_over_time_are_drawn_when_a_run_has_them() -> None:
    """What a later schema adds: the figure fills in without any other change."""
    series = (
        TimeSeries("engine running", "requests", ((0.0, 0.0), (1.0, 4.0), (2.0, 8.0))),
        TimeSeries("gateway queue", "requests", ((0.0, 0.0), (1.0, 2.0), (2.0, 5.0))),
    )
    run = replace(_bench(), series=series)
    fig = {f.key: f for f in bench_figures(run)}["server-series"]
    assert not fig.empty
    assert [[(p.x, p.y) for p in s.points] for s in fig.series] == [list(s.points) for s in series]
    assert render_svg(fig).count('class="pt"') == 6


def test_tune_figures_cross_out_failures_and_ring_the_recommendation() -> None:
    (run,) = load_runs([TUNE_V1])
    assert isinstance(run, TuneRun)
    figures = {f.key: f for f in tune_figures(run)}
    points = figures["throughput"].series[0].points
    assert [p.x for p in points] == sorted(t.max_active for t in run.trials)
    assert [p.x for p in points if p.bad] == [16]
    assert [p.x for p in points if p.chosen] == [8]
    assert [g.y for g in figures["p95-ttft"].guides] == [200.0]
    assert [p.x for p in figures["p95-ttft"].series[0].points if p.bad] == [16]
    assert not any(p.bad for p in figures["p95-e2e"].series[0].points)  # E2E was not broken


@pytest.mark.parametrize(
    ("low", "high", "integer", "ticks"),
    [
        (0, 1263, False, [0, 500, 1000, 1500]),
        (0, 0.9, False, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 229, False, [0, 50, 100, 150, 200, 250]),
        (0, 7, True, [0, 2, 4, 6, 8]),
        (0, 3, True, [0, 1, 2, 3]),
        (0, 0, False, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),  # all zero: still an axis
        (5, 5, False, [5, 6, 7, 8, 9, 10]),
    ],
)
def test_ticks_are_round_and_cover_the_data(
    low: float, high: float, integer: bool, ticks: list[float]
) -> None:
    assert nice_ticks(low, high, integer=integer) == pytest.approx(ticks)


def test_tick_labels_show_the_decimals_the_step_needs() -> None:
    assert [tick_text(v, [0, 0.25, 0.5]) for v in (0, 0.25, 0.5)] == ["0.00", "0.25", "0.50"]
    assert tick_text(1500, [0, 500, 1000, 1500]) == "1,500"


def _info(name: str, **settings: str) -> RunInfo:
    return RunInfo(name, f"{name}.json", "bench", 1, "0.1.0", None, settings)


def test_settings_that_differ_leave_out_addresses_and_mark_missing_ones() -> None:
    a = _info("a", target="http://127.0.0.1:1", levels="conc 1", seed="0", warmup_s="1")
    b = _info("b", target="http://127.0.0.1:2", levels="conc 1", seed="1")
    assert settings_that_differ([a, b]) == [("seed", ["0", "1"]), ("warmup_s", ["1", "-"])]


def test_a_comparison_says_what_schema_1_could_not_compare() -> None:
    (section, *_) = build_sections(load_runs([BENCH_V1, BENCH_V1]))
    differences = next(t for t in section.tables if t.title == "Settings that differ")
    assert differences.rows == ()
    assert differences.note.startswith("No recorded setting differs")
    assert "MAX_ACTIVE" in differences.note
    failures = next(f for f in section.figures if f.key == "failures")
    assert not failures.empty  # the file's open-loop levels had 429s
    calm = replace(_bench(), levels=tuple(replace(lv, failed=0) for lv in _bench().levels))
    (section, *_) = build_sections([calm, calm])
    failures = next(f for f in section.figures if f.key == "failures")
    assert failures.empty
    assert failures.note == "no request failed in any run"


def test_sections_compare_each_tool_run_twice_and_name_files_uniquely() -> None:
    runs = load_runs([BENCH_V1, BENCH_V1, TUNE_V1])
    keys = [s.key for s in build_sections(runs)]
    assert keys == ["compare-bench", "bench-v1", "bench-v1-2", "tune-v1"]
    assert [r.info.name for r in runs] == ["bench-v1", "bench-v1 (2)", "tune-v1"]
