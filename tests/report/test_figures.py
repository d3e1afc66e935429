"""The pure parts: reading schema-1 files into the model, the figures built from it, axis ticks,
and the settings that differ between runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields, replace
from html import escape
from pathlib import Path
from typing import Any

import pytest

from llmctl.bench import report as bench_report
from llmctl.report.chart import nice_ticks, tick_text
from llmctl.report.comparison import settings_that_differ
from llmctl.report.figures import DRAWN_POINTS, bench_figures, thinned, tune_figures
from llmctl.report.html import render_html
from llmctl.report.load import load_runs
from llmctl.report.model import BenchRun, RunInfo, TimeSeries, TuneRun
from llmctl.report.sections import build_sections
from llmctl.report.svg import render_svg
from llmctl.tune import report as tune_report
from tests.report.conftest import BENCH_V1, BENCH_V2, TUNE_V1


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


def _v2() -> tuple[dict[str, Any], BenchRun]:
    (run,) = load_runs([BENCH_V2])
    assert isinstance(run, BenchRun)
    return json.loads(BENCH_V2.read_text()), run


def test_a_schema_2_bench_file_reads_its_label_metadata_limits_and_new_numbers() -> None:
    raw, run = _v2()
    info = run.info
    assert info.name == info.label == raw["label"] == "max2"
    assert info.metadata == raw["metadata"]
    limits = raw["limits"]
    assert info.settings["MAX_ACTIVE"] == str(limits["max_active"]) == "2"
    assert info.settings["queue max"] == str(limits["queue_max"])
    assert info.settings["queue timeout"] == f"{limits['queue_timeout_s']:g} s"
    assert info.settings["queue mode"] == "not published"  # no gauge says it
    assert info.unrecorded == ()  # limits recorded, and --metadata named the machine
    level, raw_level = run.levels[1], raw["levels"][1]
    assert level.ms("ttft", "std") == raw_level["std_ttft_ms"]
    assert level.ms("admitted_ttft", "p95") == raw_level["p95_admitted_ttft_ms"]
    assert level.ms("sched_lag", "p99") == raw_level["p99_sched_lag_ms"]
    assert level.max_output_tokens_per_s == raw_level["max_output_tokens_per_s"]
    assert level.max_concurrent_requests == raw_level["max_concurrent_requests"] == 4
    assert level.total_output_tokens == raw_level["total_output_tokens"]
    server = raw_level["server"]
    assert level.server["running_mean"] == server["mean_num_requests_running"]
    assert level.server["max_sample_gap"] == server["max_sample_gap_s"]
    # The series on the run's clock: the level's start plus each point's time.
    series = {s.key: s.points for s in level.series}
    start, times = server["series"]["start_s"], server["series"]["t_s"]
    assert series["gateway_queue"] == tuple(
        (start + t, v) for t, v in zip(times, server["series"]["gateway_queue_depth"], strict=True)
    )
    assert max(v for _, v in series["kv_cache"]) == server["peak_kv_cache_usage_perc"] * 100


def test_the_header_shows_the_label_metadata_and_limits() -> None:
    _, run = _v2()
    page = render_html(build_sections([run]), title="t", generated="test")
    header = page[page.index('<dl class="meta">') : page.index("</dl>")]
    for key, value in (("label", "max2"), ("machine", "dev-vm (2 cores)"), ("MAX_ACTIVE", "2"),
                       ("note", "for the report tests"), ("queue max", "2")):  # fmt: skip
        assert f"<dt>{key}</dt><dd>{escape(value)}</dd>" in header, key
    assert "not recorded" not in header


def _copy(tmp_path: Path, name: str, **changes: Any) -> Path:
    data = json.loads(BENCH_V2.read_text())
    for key, value in changes.items():
        if key == "max_active":
            data["limits"]["max_active"] = value
        else:
            data[key] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_runs_compare_by_label_with_the_limits_and_metadata_that_differ(tmp_path: Path) -> None:
    wider = _copy(tmp_path, "other", label="max4", max_active=4, metadata={"machine": "h200"})
    runs = load_runs([BENCH_V2, wider, BENCH_V1])
    assert [r.info.name for r in runs] == ["max2", "max4", "bench-v1"]
    (section, *_) = build_sections(runs)
    differences = next(t for t in section.tables if t.title == "Settings that differ")
    assert differences.columns == ("setting", "max2", "max4", "bench-v1")
    rows = {row[0]: row[1:] for row in differences.rows}
    assert rows["MAX_ACTIVE"] == ("2", "4", "-")  # schema 1 did not record it
    assert rows["metadata machine"] == ("dev-vm (2 cores)", "h200", "-")
    assert "MAX_ACTIVE and queue settings" in differences.note
    ttft = next(f for f in section.figures if f.key == "ttft")
    assert [s.name for s in ttft.series] == ["max2", "max4", "bench-v1"]


def test_runs_with_one_label_are_told_apart(tmp_path: Path) -> None:
    runs = load_runs([BENCH_V2, _copy(tmp_path, "again")])
    assert [r.info.name for r in runs] == ["max2", "max2 (2)"]
    assert [s.key for s in build_sections(runs)] == ["compare-bench", "max2", "max2-2"]


def test_a_target_that_published_no_limits_says_so(tmp_path: Path) -> None:
    (run,) = load_runs([_copy(tmp_path, "engine", limits=None)])
    assert run.info.settings["MAX_ACTIVE"] == "not published"
    assert "the target's MAX_ACTIVE and queue settings" not in run.info.unrecorded


def test_server_series_over_time_are_drawn_when_a_run_has_them() -> None:
    raw, run = _v2()
    figures = {f.key: f for f in bench_figures(run)}
    requests, kv = figures["server-series"], figures["kv-cache-series"]
    assert not requests.empty
    assert not kv.empty
    drawn = {s.name: [(p.x, p.y, p.note) for p in s.points] for s in requests.series}
    expected = []
    for level, raw_level in zip(run.levels, raw["levels"], strict=True):
        series = raw_level["server"]["series"]
        expected += [
            (series["start_s"] + t, v, level.label)
            for t, v in zip(series["t_s"], series["num_requests_running"], strict=True)
        ]
    assert drawn["engine running"] == expected
    assert set(drawn) == {"engine running", "engine waiting", "gateway queue", "gateway active"}
    assert render_svg(kv).count('class="pt"') == sum(len(lv["server"]["series"]["t_s"])
                                                     for lv in raw["levels"])  # fmt: skip


def test_a_long_run_draws_a_bounded_number_of_points_and_keeps_its_peaks() -> None:
    """Two hour-long levels at 300 points each: the figure draws its share, the peaks stay."""
    _, run = _v2()
    points = tuple((float(i), 1.0 + (i % 7) + (50.0 if i == 123 else 0.0)) for i in range(300))
    levels = tuple(replace(lv, series=(TimeSeries("running", points),)) for lv in run.levels[:2])
    fig = {f.key: f for f in bench_figures(replace(run, levels=levels))}["server-series"]
    (running,) = (s for s in fig.series if s.name == "engine running")
    assert len(running.points) == 2 * (DRAWN_POINTS // 2)
    assert max(p.y for p in running.points) == max(y for _, y in points) == 55.0
    assert thinned(points, 500) == points  # a series that fits is drawn as it is


def test_an_engine_without_a_gateway_still_has_its_series_and_gateway_ones_say_nothing() -> None:
    _, run = _v2()
    levels = tuple(
        replace(lv, series=tuple(s for s in lv.series if not s.key.startswith("gateway")))
        for lv in run.levels
    )
    figures = {f.key: f for f in bench_figures(replace(run, levels=levels))}
    names = [s.name for s in figures["server-series"].series if s.points]
    assert names == ["engine running", "engine waiting"]


def test_a_file_whose_series_were_not_sampled_says_why(tmp_path: Path) -> None:
    data = json.loads(BENCH_V2.read_text())
    for level in data["levels"]:
        level["server"]["series"] = None
    path = tmp_path / "unsampled.json"
    path.write_text(json.dumps(data))
    (run,) = load_runs([path])
    assert isinstance(run, BenchRun)
    figures = {f.key: f for f in bench_figures(run)}
    assert figures["server-series"].empty
    assert (
        figures["server-series"].note
        == "not recorded in this run: no /metrics endpoint was sampled"
    )
    assert figures["kv-cache-series"].empty


def test_the_tune_header_has_the_preemption_and_error_limits(tmp_path: Path) -> None:
    v2 = tmp_path / "tune-v2.json"
    upgraded = tune_report.upgrade(json.loads(TUNE_V1.read_text()))
    upgraded["settings"]["max_preemptions_per_s"] = 0.5
    upgraded["settings"]["max_error_rate"] = 0.02
    v2.write_text(json.dumps(upgraded))
    old, new = load_runs([TUNE_V1, v2])
    assert (old.info.settings["max_preemptions_per_s"], old.info.settings["max_error_rate"]) == (
        "0",
        "0.01",
    )
    assert (new.info.settings["max_preemptions_per_s"], new.info.settings["max_error_rate"]) == (
        "0.5",
        "0.02",
    )
    assert settings_that_differ([old.info, new.info]) == [
        ("max_preemptions_per_s", ["0", "0.5"]),
        ("max_error_rate", ["0.01", "0.02"]),
    ]


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
