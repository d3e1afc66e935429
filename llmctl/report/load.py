"""Read bench and tune JSON files of every supported schema version into the report's model.

The one place that knows the files' field names: a new schema version is a new entry in
`_READERS` (usually the previous reader plus the new fields), and everything after it is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmctl.core.slo import LATENCIES, SLO
from llmctl.report.fields import Fields, RunFileError, flatten
from llmctl.report.model import (
    BenchRun,
    LevelStats,
    Run,
    RunInfo,
    TimeSeries,
    Trial,
    TuneRun,
)
from llmctl.tune.report import format_ms

# Bench field names: {stat}_{name}_ms, named as `vllm bench serve` names them (a stat a version
# did not measure, such as v1's std, reads as missing).
_STATS = {
    "mean": "mean",
    "std": "std",
    "median": "p50",
    "p90": "p90",
    "p95": "p95",
    "p99": "p99",
    "max": "max",
}
_METRICS = {
    "ttft": "ttft",
    "itl": "itl",
    "tpot": "tpot",
    "e2el": "e2e",
    "queue_wait": "queue_wait",
    "admitted_ttft": "admitted_ttft",
    "admitted_e2el": "admitted_e2e",
    "sched_lag": "sched_lag",
}
# A level's `server` object: file field -> the model's name. Means and the gap are schema 2's.
_SERVER = {
    "peak_num_requests_running": "running",
    "peak_num_requests_waiting": "waiting",
    "peak_gateway_queue_depth": "gateway_queue",
    "peak_gateway_active_requests": "gateway_active",
    "peak_kv_cache_usage_perc": "kv_cache",
    "preemptions": "preemptions",
    "mean_num_requests_running": "running_mean",
    "mean_num_requests_waiting": "waiting_mean",
    "samples": "samples",
    "max_sample_gap_s": "max_sample_gap",
}
# `server.series` (schema 2): gauge list -> the model's name, as its peak.
_SERIES = {
    "num_requests_running": "running",
    "num_requests_waiting": "waiting",
    "gateway_queue_depth": "gateway_queue",
    "gateway_active_requests": "gateway_active",
    "kv_cache_usage_perc": "kv_cache",
}
_TUNE_METRIC_TEXT = {
    "ttft": "p95 TTFT",
    "itl": "p95 ITL",
    "e2e": "p95 E2E",
    "preemptions": "preemptions/s",
    "errors": "error rate",
}
# Schemas 1 and 2 differ only in the SLO's unit: milliseconds (`ttft_ms`), then seconds (`ttft_s`).
_SLO_KEYS = {1: ("_ms", 1.0), 2: ("_s", 1000.0)}  # version -> (key suffix, to milliseconds)
_NO_SERIES = "not recorded in this run: its file (bench schema {}) keeps per-level peaks only"
_NOT_SAMPLED = "not recorded in this run: no /metrics endpoint was sampled"
_NOT_PUBLISHED = "not published"


def _strategy_label(strategy: Fields) -> str:
    kind = strategy.text("kind", required=True)
    if kind == "concurrent":
        return f"conc {strategy.integer('concurrency')}"
    if kind == "rate":
        arrival = strategy.text("arrival") or "poisson"
        shape = f" b={strategy.number('burstiness') or 1.0:g}" if arrival == "gamma" else ""
        return f"{strategy.need_number('rate'):g}/s {arrival}{shape}"
    if kind == "mix":  # `bench --mix`; its streams' own numbers are left to `llmctl bench`
        return f"mix {strategy.text('name', required=True)}"
    raise strategy.fail("kind", "concurrent, rate or mix", kind)


def _slo(slo: Fields | None, version: int) -> dict[str, float]:
    """The SLO's targets in milliseconds, whatever unit the file's schema wrote them in."""
    if slo is None:
        return {}
    suffix, to_ms = _SLO_KEYS[version]
    values = {name: slo.number(f"{name}{suffix}") for name in LATENCIES}
    return {name: value * to_ms for name, value in values.items() if value is not None}


def _slo_text(slo_ms: dict[str, float]) -> str:
    """One way to show an SLO for every schema, so runs of different versions compare."""
    return SLO(**{f"{name}_s": ms / 1000 for name, ms in slo_ms.items()}).text()


def _percent(key: str, value: float) -> float:
    return value * 100.0 if key == "kv_cache" else value


def _series(series: Fields) -> tuple[TimeSeries, ...]:
    """The level's gauges on the run's clock; a null point (no reading then) is left out."""
    start = series.need_number("start_s")
    times = series.numbers("t_s")
    if times is None or None in times:
        raise series.fail("t_s", "a list of numbers", series.data.get("t_s"))
    out = []
    for name, key in _SERIES.items():
        values = series.numbers(name)
        if values is None:
            continue
        if len(values) != len(times):
            raise RunFileError(
                f"{series.path}: {series.where}.{name} has {len(values)} values for "
                f"{len(times)} times"
            )
        points = tuple(
            (start + t, _percent(key, v))
            for t, v in zip(times, values, strict=True)
            if t is not None and v is not None
        )
        out.append(TimeSeries(key, points))
    return tuple(out)


def _bench_level(level: Fields) -> LevelStats:
    latency: dict[str, dict[str, float | None]] = {}
    for old, metric in _METRICS.items():
        latency[metric] = {new: level.number(f"{stat}_{old}_ms") for stat, new in _STATS.items()}
    server: dict[str, float | None] = dict.fromkeys(_SERVER.values())
    sampled = level.obj("server")
    series: tuple[TimeSeries, ...] = ()
    if sampled is not None:
        for old, new in _SERVER.items():
            value = sampled.number(old)
            server[new] = None if value is None else _percent(new, value)
        over_time = sampled.obj("series")
        series = () if over_time is None else _series(over_time)
    # Schema 1 (and 2 before the rename) called the peak in flight max_concurrency.
    in_flight = level.whole("max_concurrent_requests")
    return LevelStats(
        label=_strategy_label(level.need_obj("strategy")),
        duration_s=level.need_number("duration"),
        completed=level.integer("completed"),
        failed=level.integer("failed"),
        failures=level.counts("failures"),
        error_samples=level.texts("error_samples"),
        request_throughput=level.need_number("request_throughput"),
        output_throughput=level.need_number("output_throughput"),
        total_token_throughput=level.number("total_token_throughput"),
        request_goodput=level.number("request_goodput"),
        latency=latency,
        server=server,
        max_output_tokens_per_s=level.number("max_output_tokens_per_s"),
        max_concurrent_requests=level.whole("max_concurrency") if in_flight is None else in_flight,
        total_input_tokens=level.whole("total_input_tokens"),
        total_output_tokens=level.whole("total_output_tokens"),
        token_source=level.text("token_source"),
        series=series,
    )


def _limits(doc: Fields) -> dict[str, str]:
    """The target's admission limits as settings, "MAX_ACTIVE" first, as `bench compare` names them."""
    limits = doc.obj("limits")
    if limits is None:  # the target published none: a bare engine
        return dict.fromkeys(
            ("MAX_ACTIVE", "queue mode", "queue max", "queue timeout"), _NOT_PUBLISHED
        )

    def shown(value: float | str | None, unit: str = "") -> str:
        if value is None:
            return _NOT_PUBLISHED
        return f"{value:g}{unit}" if isinstance(value, float) else str(value)

    return {
        "MAX_ACTIVE": shown(limits.whole("max_active")),
        "queue mode": shown(limits.text("queue_mode")),
        "queue max": shown(limits.whole("queue_max")),
        "queue timeout": shown(limits.number("queue_timeout_s"), " s"),
    }


def _series_note(levels: list[Fields], version: int) -> str:
    sampled = [lv.obj("server") for lv in levels]
    if not any(s is not None and s.has("series") for s in sampled):
        return _NO_SERIES.format(version)
    return _NOT_SAMPLED


def _bench(doc: Fields, name: str, version: int) -> BenchRun:
    config = doc.need_obj("config")
    raw_levels = doc.objects("levels")
    levels = [_bench_level(level) for level in raw_levels]
    slo = _slo(config.obj("slo"), version)
    skip = ("levels", "api_key", "slo")
    settings = {k: v for k, v in config.data.items() if k not in skip}
    shown = {"target": doc.text("target") or "", "model": doc.text("model") or ""}
    unrecorded = []
    # Files written before schema 2 recorded the limits have no `limits` key; null is a target
    # that published none.
    if doc.has("limits"):
        shown.update(_limits(doc))
    else:
        unrecorded.append("the target's MAX_ACTIVE and queue settings")
    shown.update({"levels": ", ".join(level.label for level in levels), "slo": _slo_text(slo)})
    shown.update((k, v) for k, v in flatten(settings).items() if k not in shown)
    metadata = doc.texts("metadata")
    if "machine" not in metadata:
        unrecorded.append("the machine")
    label = doc.text("label")
    return BenchRun(
        info=RunInfo(
            name=label or name,
            path=doc.path,
            tool="bench",
            schema_version=version,
            llmctl_version=doc.text("llmctl_version"),
            started_at=doc.text("started_at"),
            settings=shown,
            metadata=metadata,
            unrecorded=tuple(unrecorded),
            label=label,
        ),
        slo=slo,
        levels=tuple(levels),
        series_note=_series_note(raw_levels, version),
    )


def _violation(item: Fields) -> str:
    metric = item.text("metric", required=True) or ""
    value, limit = item.need_number("value"), item.need_number("limit")

    def show(number: float) -> str:
        if metric in ("ttft", "itl", "e2e"):
            return format_ms(number)
        return f"{number * 100:.3g} %" if metric == "errors" else f"{number:.3g}"

    return f"{_TUNE_METRIC_TEXT.get(metric, metric)} {show(value)} > {show(limit)}"


def _trial(order: int, trial: Fields) -> Trial:
    kv = trial.number("peak_kv_cache_usage")
    violations = trial.objects("violations")
    return Trial(
        order=order,
        max_active=trial.integer("max_active"),
        concurrency=trial.integer("concurrency"),
        completed=trial.integer("completed"),
        failed=trial.integer("failed"),
        output_throughput=trial.need_number("output_throughput"),
        request_throughput=trial.need_number("request_throughput"),
        p95={
            metric: trial.number(f"p95_{metric}_ms")
            for metric in ("ttft", "itl", "e2e", "queue_wait")
        },
        preemptions_per_s=trial.number("preemptions_per_s"),
        peak_kv_cache=None if kv is None else kv * 100.0,
        peak_running=trial.number("peak_running"),
        violations=tuple(_violation(v) for v in violations),
        broken=tuple(v.text("metric") or "" for v in violations),
    )


def _tune(doc: Fields, name: str, version: int) -> TuneRun:
    settings = doc.need_obj("settings")
    limits = doc.obj("original_limits")
    recommendation = doc.need_obj("recommendation")
    recommended = recommendation.data.get("max_active")
    if recommended is not None and not isinstance(recommended, int):
        raise recommendation.fail("max_active", "a whole number or null", recommended)
    slo = _slo(settings.obj("slo"), version)
    # Schema 1 kept the preemption and error limits inside the SLO; 2 keeps them beside it.
    limits_at = settings.obj("slo") if version == 1 else settings
    shown = {"slo": _slo_text(slo)}
    for key in ("max_preemptions_per_s", "max_error_rate"):
        value = None if limits_at is None else limits_at.number(key)
        shown[key] = "none" if value is None else f"{value:g}"
    shown.update(flatten({k: v for k, v in settings.data.items() if k not in shown}))
    if limits is not None:
        shown.update(flatten(limits.data, "original_limits."))
    return TuneRun(
        info=RunInfo(
            name=name,
            path=doc.path,
            tool="tune",
            schema_version=version,
            llmctl_version=doc.text("llmctl_version"),
            started_at=doc.text("started_at"),
            settings=shown,
            unrecorded=("the machine",),
        ),
        slo=slo,
        trials=tuple(_trial(i + 1, t) for i, t in enumerate(doc.objects("trials"))),
        recommended=recommended,
        reason=recommendation.text("reason") or "",
        applied=bool(doc.data.get("applied")),
        original_max_active=None if limits is None else limits.integer("max_active"),
    )


_READERS: dict[tuple[str, int], Callable[[Fields, str, int], Run]] = {
    ("llmctl-bench", 1): _bench,
    ("llmctl-bench", 2): _bench,
    ("llmctl-tune", 1): _tune,
    ("llmctl-tune", 2): _tune,
}
_MAKERS = {"llmctl-bench": "llmctl bench --json", "llmctl-tune": "llmctl tune max-active --json"}


def read_run(data: Any, path: str, name: str) -> Run:
    """The run in one parsed JSON document; a foreign or malformed one is a RunFileError."""
    if not isinstance(data, dict) or "tool" not in data:
        raise RunFileError(
            f"{path} is not an llmctl bench or tune result (those are written by "
            f"{' or '.join(_MAKERS.values())})"
        )
    tool, version = data.get("tool"), data.get("schema_version")
    if tool not in _MAKERS:
        raise RunFileError(f"{path} is a result of {tool!r}, not of llmctl bench or tune")
    if isinstance(version, bool) or not isinstance(version, int) or (tool, version) not in _READERS:
        known = sorted(v for t, v in _READERS if t == tool)
        raise RunFileError(
            f"{path}: {tool} schema_version {version!r} is not one this llmctl reads "
            f"(it reads {', '.join(map(str, known))}); a newer llmctl may"
        )
    return _READERS[(str(tool), version)](Fields(data, path), name, version)


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Read every file; a run is named by its label, else its file stem, made unique where two
    names are equal ("run", "run (2)")."""
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise RunFileError(f"cannot read {path}: {reason}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunFileError(
                f"{path} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from exc
        except RecursionError as exc:
            raise RunFileError(f"{path} is nested too deeply to be a bench or tune result") from exc
        run = read_run(data, str(path), path.stem)
        name = run.info.name
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            run = replace(run, info=replace(run.info, name=f"{name} ({seen[name]})"))
        runs.append(run)
    return runs
