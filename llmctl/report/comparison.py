"""Several runs of one tool overlaid, one colour per run, and the settings that differ between them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from llmctl.report.chart import PALETTE, Figure, Guide, Point, Series
from llmctl.report.figures import NOT_RECORDED, THROUGHPUT, or_note
from llmctl.report.model import METRIC_TEXT, BenchRun, Run, RunInfo, TuneRun
from llmctl.tune.report import format_ms

# Settings that differ in every pair of runs without being a difference in what was measured.
_NOISE = ("gateway", "target", "metrics_urls", "engine_metrics")


def run_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def settings_that_differ(infos: Sequence[RunInfo]) -> list[tuple[str, list[str]]]:
    """(setting, value per run) for every setting or metadata key whose values are not all equal
    (the target's limits too: MAX_ACTIVE 4 in one, 16 in the other); a setting a run does not
    have reads "-" there. Addresses are left out: ports differ from run to run."""
    compared = [info.compared() for info in infos]
    keys: list[str] = []
    for settings in compared:
        keys.extend(k for k in settings if k not in keys)
    rows = []
    for key in keys:
        if key in _NOISE:
            continue
        values = [settings.get(key, "-") for settings in compared]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows


def _guides(runs: Sequence[Run], metric: str) -> tuple[Guide, ...]:
    """One SLO line per distinct target, naming the runs it belongs to when they disagree."""
    targets: dict[float, list[str]] = {}
    for run in runs:
        if metric in run.slo:
            targets.setdefault(run.slo[metric], []).append(run.info.name)
    every = len(targets) == 1 and len(next(iter(targets.values()))) == len(runs)
    return tuple(
        Guide(ms, f"SLO {format_ms(ms)}" + ("" if every else f" ({', '.join(names)})"))
        for ms, names in sorted(targets.items())
    )


def bench_overlay(runs: Sequence[BenchRun]) -> list[Figure]:
    """p95 TTFT, ITL and E2E against throughput, and throughput, goodput and failures per level."""
    figures = []
    for metric in ("ttft", "itl", "e2e"):
        name = METRIC_TEXT[metric]
        series = tuple(
            Series(
                run.info.name,
                run_color(i),
                tuple(
                    Point(lv.output_throughput, value, lv.label)
                    for lv in run.levels
                    if (value := lv.ms(metric, "p95")) is not None
                ),
            )
            for i, run in enumerate(runs)
        )
        figures.append(
            Figure(
                metric,
                f"p95 {name} against throughput",
                THROUGHPUT,
                f"p95 {name} (ms)",
                x_unit="tok/s",
                y_unit="ms",
                series=series,
                guides=_guides(runs, metric),
                note=f"{NOT_RECORDED}: no request succeeded",
            )
        )
    labels: list[str] = []
    for run in runs:
        labels.extend(lv.label for lv in run.levels if lv.label not in labels)

    def bars(key: str, title: str, y_title: str, field: str, note: str) -> Figure:
        series = tuple(
            Series(
                run.info.name,
                run_color(i),
                tuple(
                    Point(lv.label, float(value))
                    for lv in run.levels
                    if (value := getattr(lv, field)) is not None
                ),
            )
            for i, run in enumerate(runs)
        )
        fig = Figure(
            key, title, "level", y_title, shape="bars", series=series, categories=tuple(labels)
        )
        return or_note(fig, note)

    figures.append(
        bars("throughput", "Output throughput per level", THROUGHPUT, "output_throughput", "")
    )
    figures.append(
        bars(
            "goodput",
            "Goodput per level",
            "requests/s within the SLO",
            "request_goodput",
            f"{NOT_RECORDED}: no run was given an --slo",
        )
    )
    failures = bars("failures", "Failed requests per level", "requests", "failed", "")
    if not any(p.y for s in failures.series for p in s.points):
        failures = or_note(replace(failures, series=()), "no request failed in any run")
    figures.append(failures)
    return figures


def tune_overlay(runs: Sequence[TuneRun]) -> list[Figure]:
    """Throughput and p95 TTFT, ITL and E2E against MAX_ACTIVE, one line per run."""

    def line(key: str, title: str, y_title: str, unit: str, metric: str | None) -> Figure:
        series = []
        for i, run in enumerate(runs):
            points = []
            for t in sorted(run.trials, key=lambda t: (t.max_active, t.order)):
                value = t.output_throughput if metric is None else t.p95.get(metric)
                if value is not None:
                    bad = not t.passed if metric is None else metric in t.broken
                    chosen = metric is None and t.max_active == run.recommended
                    points.append(
                        Point(t.max_active, value, f"trial {t.order}", bad=bad, chosen=chosen)
                    )
            series.append(Series(run.info.name, run_color(i), tuple(points)))
        guides = () if metric is None else _guides(runs, metric)
        return Figure(
            key,
            title,
            "MAX_ACTIVE",
            y_title,
            y_unit=unit,
            series=tuple(series),
            guides=guides,
            x_integer=True,
            note=f"{NOT_RECORDED}: no trial has a sample",
        )

    figures = [
        line("throughput", "Output throughput against MAX_ACTIVE", THROUGHPUT, "tok/s", None)
    ]
    for metric in ("ttft", "itl", "e2e"):
        name = METRIC_TEXT[metric]
        figures.append(
            line(
                f"p95-{metric}", f"p95 {name} against MAX_ACTIVE", f"p95 {name} (ms)", "ms", metric
            )
        )
    return figures
