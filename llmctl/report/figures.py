"""The figures of one run: a bench run's latency, goodput, failures and server side; a tune run's
throughput and p95 latencies against MAX_ACTIVE and its trials in order."""

from __future__ import annotations

from llmctl.bench.series import PeakSeries
from llmctl.report.chart import PALETTE, Figure, Guide, Point, Series
from llmctl.report.model import METRIC_TEXT, SERVER_PEAKS, BenchRun, TuneRun
from llmctl.tune.report import format_ms

PERCENTILES = (("p50", PALETTE[0]), ("p95", PALETTE[1]), ("p99", PALETTE[5]))
THROUGHPUT = "output throughput (tok/s)"
NOT_RECORDED = "not recorded in this run"
# The most points a series over time draws for a whole run (a page of several long runs stays
# small enough to mail); a level gets its share, never fewer than a handful.
DRAWN_POINTS = 240
_FEWEST_PER_LEVEL = 8


def slo_guides(slo: dict[str, float], metric: str, remark: str = "") -> tuple[Guide, ...]:
    if metric not in slo:
        return ()
    return (Guide(slo[metric], f"SLO {format_ms(slo[metric])}{remark}"),)


def or_note(fig: Figure, note: str) -> Figure:
    """The figure, or in its place the sentence saying why it has nothing to draw."""
    if not fig.empty:
        return fig
    return Figure(fig.key, fig.title, fig.x_title, fig.y_title, note=note)


def _latency(run: BenchRun, metric: str, stats: tuple[tuple[str, str], ...]) -> Figure:
    series = []
    for stat, color in stats:
        points = []
        for level in run.levels:
            value = level.ms(metric, stat)
            if value is not None:
                points.append(Point(level.output_throughput, value, level.label))
        series.append(Series(stat, color, tuple(points)))
    name = METRIC_TEXT[metric]
    why = "the target sent no X-Queue-Wait-Ms" if metric == "queue_wait" else "no request succeeded"
    return Figure(
        key=metric.replace("_", "-"),
        title=f"{name[0].upper()}{name[1:]} against throughput, per level",
        x_title=THROUGHPUT,
        y_title=f"{name} (ms)",
        x_unit="tok/s",
        y_unit="ms",
        series=tuple(series),
        # Bench's goodput holds each request's TPOT (its mean ITL) to the itl target.
        guides=slo_guides(run.slo, metric, " (on TPOT)" if metric == "itl" else ""),
        point_labels=True,
        note=f"{NOT_RECORDED}: {why}",
    )


def _per_level(
    run: BenchRun, key: str, title: str, y_title: str, columns: list[tuple[str, list[float | None]]]
) -> Figure:
    """Grouped bars: one group per level, one bar per named column (None: no bar)."""
    labels = tuple(level.label for level in run.levels)
    series = [
        Series(
            name,
            PALETTE[i % len(PALETTE)],
            tuple(Point(lbl, v) for lbl, v in zip(labels, values, strict=True) if v is not None),
        )
        for i, (name, values) in enumerate(columns)
    ]
    return Figure(
        key, title, "level", y_title, shape="bars", series=tuple(series), categories=labels
    )


def thinned(points: tuple[tuple[float, float], ...], most: int) -> tuple[tuple[float, float], ...]:
    """At most `most` points, each the highest since the previous one (as bench downsamples)."""
    if len(points) <= most:
        return points
    series = PeakSeries(most)
    for t, value in points:
        series.add(t, {"v": value})
    return tuple(
        (t, v) for t, v in zip(series.times(), series.values("v"), strict=True) if v is not None
    )


def _over_time(
    run: BenchRun, key: str, title: str, axis: tuple[str, str], gauges: list[tuple[str, str, str]]
) -> Figure:
    """Gauges (key, text, colour) over the whole run, each point named by its level."""
    most = max(_FEWEST_PER_LEVEL, DRAWN_POINTS // max(1, len(run.levels)))
    series = []
    for gauge, text, color in gauges:
        points = [
            Point(t, value, level.label)
            for level in run.levels
            for s in level.series
            if s.key == gauge
            for t, value in thinned(s.points, most)
        ]
        series.append(Series(text, color, tuple(points)))
    y_title, y_unit = axis
    return Figure(
        key,
        title,
        "seconds since the run started",
        y_title,
        x_unit="s",
        y_unit=y_unit,
        series=tuple(series),
        small_marks=True,
    )


def bench_figures(run: BenchRun) -> list[Figure]:
    """TTFT, ITL and E2E against throughput, goodput, failures, queue wait and the server side."""
    figures = [_latency(run, m, PERCENTILES) for m in ("ttft", "itl", "e2e")]
    levels = run.levels
    goodput = [level.request_goodput for level in levels]
    has_goodput = any(v is not None for v in goodput)
    finished: list[float | None] = [lv.request_throughput for lv in levels]
    columns: list[tuple[str, list[float | None]]] = (
        [("all finished", finished), ("within the SLO", goodput)] if has_goodput else []
    )
    good = _per_level(
        run, "goodput", "Goodput: requests per second within the SLO", "requests/s", columns
    )
    figures.append(or_note(good, f"{NOT_RECORDED}: no --slo was given"))
    classes = sorted({c for lv in levels for c, n in lv.failures.items() if n})
    failures = _per_level(
        run,
        "failures",
        "Failed requests by class",
        "requests",
        [(c, [float(lv.failures.get(c, 0)) for lv in levels]) for c in classes],
    )
    figures.append(or_note(failures, "no request failed"))
    figures.append(_latency(run, "queue_wait", (("mean", PALETTE[2]), *PERCENTILES[1:])))
    peaks = [(text, key) for key, text, unit in SERVER_PEAKS if unit == "requests"]
    server = _per_level(
        run,
        "server-peaks",
        "Server side: peaks per level",
        "requests",
        [(text, [lv.server.get(key) for lv in levels]) for text, key in peaks],
    )
    why = f"{NOT_RECORDED}: no /metrics endpoint was sampled"
    figures.append(or_note(server, why))
    kv = _per_level(
        run,
        "kv-cache",
        "Peak KV cache use per level",
        "KV cache used (%)",
        [("KV cache", [lv.server.get("kv_cache") for lv in levels])],
    )
    figures.append(or_note(kv, f"{NOT_RECORDED}: no engine /metrics was sampled"))
    requests = [(key, text) for key, text, unit in SERVER_PEAKS if unit == "requests"]
    over_time = _over_time(
        run,
        "server-series",
        "Server side over time",
        ("requests", "requests"),
        [(key, text, PALETTE[i % len(PALETTE)]) for i, (key, text) in enumerate(requests)],
    )
    figures.append(or_note(over_time, run.series_note))
    kv_over_time = _over_time(
        run, "kv-cache-series", "KV cache use over time", ("KV cache used (%)", "%"),
        [("kv_cache", "KV cache", PALETTE[0])],
    )  # fmt: skip
    kv_note = run.series_note
    if not over_time.empty:  # the gateway was sampled, not the engine
        kv_note = f"{NOT_RECORDED}: no engine /metrics was sampled"
    figures.append(or_note(kv_over_time, kv_note))
    return figures


def tune_figures(run: TuneRun) -> list[Figure]:
    """Throughput and p95 latencies against MAX_ACTIVE (SLO lines, failures crossed), trials in order."""
    trials = sorted(run.trials, key=lambda t: (t.max_active, t.order))
    throughput = Series(
        "output tok/s",
        PALETTE[0],
        tuple(
            Point(
                t.max_active,
                t.output_throughput,
                f"trial {t.order}",
                bad=not t.passed,
                chosen=t.max_active == run.recommended,
            )
            for t in trials
        ),
    )
    figures = [
        Figure(
            "throughput",
            "Output throughput against MAX_ACTIVE",
            "MAX_ACTIVE",
            THROUGHPUT,
            y_unit="tok/s",
            series=(throughput,),
            x_integer=True,
            note=f"{NOT_RECORDED}: no trial ran",
        )
    ]
    for i, metric in enumerate(("ttft", "itl", "e2e")):
        points = tuple(
            Point(t.max_active, value, f"trial {t.order}", bad=metric in t.broken)
            for t in trials
            if (value := t.p95.get(metric)) is not None
        )
        name = METRIC_TEXT[metric]
        figures.append(
            Figure(
                f"p95-{metric}",
                f"p95 {name} of admitted requests against MAX_ACTIVE",
                "MAX_ACTIVE",
                f"p95 {name} (ms)",
                y_unit="ms",
                series=(Series(f"p95 {name}", PALETTE[(i + 1) % len(PALETTE)], points),),
                guides=slo_guides(run.slo, metric),
                x_integer=True,
                note=f"{NOT_RECORDED}: no trial has a {name} sample",
            )
        )
    in_order = tuple(
        Point(
            t.order,
            t.max_active,
            f"trial {t.order}, {t.output_throughput:.4g} tok/s",
            bad=not t.passed,
            chosen=t.max_active == run.recommended,
        )
        for t in run.trials
    )
    figures.append(
        Figure(
            "trials",
            "Trials in the order they ran",
            "trial",
            "MAX_ACTIVE",
            series=(Series("MAX_ACTIVE tried", PALETTE[6], in_order),),
            x_integer=True,
            note=f"{NOT_RECORDED}: no trial ran",
        )
    )
    return figures
