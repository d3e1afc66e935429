"""The tune report: SLO verdicts, the recommendation's sentence, its schema, and how it renders."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from llmctl.core.config import AdmissionLimits
from llmctl.core.errors import UsageError
from llmctl.core.slo import SLO
from llmctl.tune.report import (
    TrialReport,
    TuneReport,
    TuneSettings,
    check_slo,
    explain,
    format_ms,
    load_report,
    tune_slo,
)
from llmctl.tune.search import recommend
from llmctl.tune.view import bar, render_report

SETTINGS = TuneSettings(
    gateway="http://127.0.0.1:8080",
    slo=SLO(ttft_s=2.0),
    max_preemptions_per_s=0.5,
    min_max_active=1,
    max_max_active=256,
    trial_duration_s=20.0,
    warmup_s=5.0,
    input_len=256,
    output_len=128,
)


def trial(max_active: int, tput: float, ttft: float, preempt: float = 0.0) -> TrialReport:
    return TrialReport(
        max_active=max_active,
        concurrency=max_active + 2,
        duration_s=10.0,
        completed=100,
        failed=0,
        output_throughput=tput,
        request_throughput=tput / 100,
        p95_ttft_ms=ttft,
        p95_itl_ms=40.0,
        p95_e2e_ms=ttft + 5000,
        preemptions=preempt * 10,
        preemptions_per_s=preempt,
        peak_kv_cache_usage=min(1.0, max_active / 16),
        violations=check_slo(
            SETTINGS,
            p95_ttft_ms=ttft,
            p95_itl_ms=40.0,
            p95_e2e_ms=ttft + 5000,
            preemptions_per_s=preempt,
            error_rate=0.0,
        ),
    )


TRIALS = [
    trial(4, 400.0, 300.0),
    trial(8, 780.0, 600.0),
    trial(12, 800.0, 1500.0),
    trial(16, 810.0, 2400.0, preempt=1.0),
]


def make_report(trials: list[TrialReport]) -> TuneReport:
    recommendation = explain(recommend([t.outcome() for t in trials]), trials, min_gain=0.05)
    return TuneReport(
        llmctl_version="0",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        settings=SETTINGS,
        original_limits=AdmissionLimits(max_active=2),
        trials=trials,
        recommendation=recommendation,
    )


def test_violations_name_each_broken_target() -> None:
    broken = TRIALS[-1]
    assert not broken.passed
    assert [str(v) for v in broken.violations] == [
        "p95 TTFT 2.4 s > 2 s",
        "preemptions/s 1 > 0.5",
    ]
    assert all(t.passed for t in TRIALS[:-1])


def test_a_latency_without_samples_breaks_nothing_but_errors_do() -> None:
    found = check_slo(
        SETTINGS.model_copy(update={"slo": SLO(ttft_s=0.01)}),
        p95_ttft_ms=None,
        p95_itl_ms=None,
        p95_e2e_ms=None,
        preemptions_per_s=None,
        error_rate=0.5,
    )
    assert [v.metric for v in found] == ["errors"]


def test_the_reason_says_where_throughput_goes_flat_and_what_breaks() -> None:
    rec = make_report(TRIALS).recommendation
    assert rec.max_active == 8
    assert rec.basis == "flat"
    assert rec.reason.startswith("throughput flat past 8")
    assert "16 breaks p95 TTFT of 2 s, preemptions/s of 0.5" in rec.reason


def test_the_reason_when_the_slo_is_the_limit() -> None:
    trials = [trial(4, 400.0, 300.0), trial(8, 800.0, 1900.0), trial(9, 900.0, 2100.0)]
    rec = make_report(trials).recommendation
    assert (rec.max_active, rec.basis) == (8, "slo")
    assert "9 breaks p95 TTFT of 2 s" in rec.reason


def test_the_reason_when_nothing_passes() -> None:
    rec = make_report([trial(1, 100.0, 2500.0)]).recommendation
    assert rec.max_active is None
    assert rec.reason == "nothing meets the SLO: 1 breaks p95 TTFT of 2 s"


def test_the_report_round_trips_and_refuses_unknown_fields() -> None:
    report = make_report(TRIALS)
    assert TuneReport.from_json(report.to_json()) == report
    data = report.model_dump(mode="json")
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        TuneReport.model_validate(data)


def test_slo_text_parsing_and_stack_defaults() -> None:
    slo = tune_slo("ttft=2s,itl=100ms,e2e=30s", SLO())
    assert (slo.ttft_s, slo.itl_s, slo.e2e_s) == (2.0, 0.1, 30.0)
    default = SLO(ttft_s=1.0, e2e_s=10.0)
    assert tune_slo(None, default) == default
    with pytest.raises(UsageError):
        tune_slo("latency=2s", SLO())


def test_a_version_1_report_still_loads(tmp_path: Path) -> None:
    data = make_report(TRIALS).model_dump(mode="json")
    data["schema_version"] = 1
    settings = data["settings"]
    settings["slo"] = {
        "ttft_ms": 2000.0,
        "itl_ms": None,
        "e2e_ms": None,
        "max_preemptions_per_s": 0.5,
        "max_error_rate": 0.01,
    }
    del settings["max_preemptions_per_s"], settings["max_error_rate"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert load_report(path) == make_report(TRIALS)


def test_a_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"tool": "something-else"}')
    with pytest.raises(UsageError, match="is not an llmctl tune report"):
        load_report(path)
    path.write_text("not json")
    with pytest.raises(UsageError, match="not JSON"):
        load_report(path)


@pytest.mark.parametrize(
    ("ms", "text"), [(2000.0, "2 s"), (100.0, "100 ms"), (1500.0, "1.5 s"), (12.5, "12.5 ms")]
)
def test_format_ms(ms: float, text: str) -> None:
    assert format_ms(ms) == text


def test_bars_scale_in_eighths() -> None:
    assert bar(1.0, 1.0, width=4) == "████"
    assert bar(0.5, 1.0, width=4) == "██"
    assert bar(1.0, 8.0, width=1) == "▏"
    assert bar(None, 1.0) == ""
    assert bar(5.0, 1.0, width=3) == "███"  # clipped at the scale


def test_render_shows_every_trial_the_chart_and_the_verdict() -> None:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render_report(make_report(TRIALS)))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    table = out[: out.index("Output tok/s")]
    for t in TRIALS:
        assert f" {t.output_throughput:.0f} " in table
    assert "MAX_ACTIVE 16 fails: p95 TTFT 2.4 s > 2 s" in out
    chart = out[out.index("Output tok/s") :]
    rows = [line for line in chart.splitlines() if line.strip().startswith(("4 ", "16 "))]
    assert len(rows) == 2
    # The biggest throughput gets the full bar; the SLO marker sits in the latency bars.
    assert "█" * 20 in rows[1]
    assert "│" in rows[0]
    assert "Recommended MAX_ACTIVE = 8: throughput flat past 8" in out
    assert "MAX_ACTIVE restored to 2" in out
