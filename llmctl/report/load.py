"""Read bench and tune JSON files of every supported schema version into the report's model.

The one place that knows the files' field names: a new schema version is a new entry in
`_READERS` (usually the previous reader plus the new fields), and everything after it is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmctl.core.slo import LATENCIES, SLO
from llmctl.report.fields import Fields, RunFileError, flatten
from llmctl.report.model import BenchRun, LevelStats, Run, RunInfo, Trial, TuneRun
from llmctl.tune.report import format_ms

# v1 field names: {stat}_{name}_ms, named as `vllm bench serve` names them.
_V1_STATS = {
    "mean": "mean",
    "median": "p50",
    "p90": "p90",
    "p95": "p95",
    "p99": "p99",
    "max": "max",
}
_V1_METRICS = {
    "ttft": "ttft",
    "itl": "itl",
    "tpot": "tpot",
    "e2el": "e2e",
    "queue_wait": "queue_wait",
}
_V1_SERVER = {
    "peak_num_requests_running": "running",
    "peak_num_requests_waiting": "waiting",
    "peak_gateway_queue_depth": "gateway_queue",
    "peak_gateway_active_requests": "gateway_active",
    "peak_kv_cache_usage_perc": "kv_cache",
    "preemptions": "preemptions",
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
_NO_SERIES = "not recorded in this run: bench schema {} keeps per-level peaks only"
_UNRECORDED_BENCH = ("the target's MAX_ACTIVE and queue settings", "the machine")


def _strategy_label(strategy: Fields) -> str:
    kind = strategy.text("kind", required=True)
    if kind == "concurrent":
        return f"conc {strategy.integer('concurrency')}"
    if kind == "rate":
        arrival = strategy.text("arrival") or "poisson"
        shape = f" b={strategy.number('burstiness') or 1.0:g}" if arrival == "gamma" else ""
        return f"{strategy.need_number('rate'):g}/s {arrival}{shape}"
    raise strategy.fail("kind", "concurrent or rate", kind)


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


def _bench_level(level: Fields) -> LevelStats:
    latency: dict[str, dict[str, float | None]] = {}
    for old, metric in _V1_METRICS.items():
        latency[metric] = {new: level.number(f"{stat}_{old}_ms") for stat, new in _V1_STATS.items()}
    server: dict[str, float | None] = dict.fromkeys(_V1_SERVER.values())
    peaks = level.obj("server")
    if peaks is not None:
        server = {new: peaks.number(old) for old, new in _V1_SERVER.items()}
        if server["kv_cache"] is not None:
            server["kv_cache"] *= 100.0
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
    )


def _bench(doc: Fields, name: str, version: int) -> BenchRun:
    config = doc.need_obj("config")
    levels = [_bench_level(level) for level in doc.objects("levels")]
    slo = _slo(config.obj("slo"), version)
    skip = ("levels", "api_key", "slo")
    settings = {k: v for k, v in config.data.items() if k not in skip}
    shown = {
        "target": doc.text("target") or "",
        "model": doc.text("model") or "",
        "levels": ", ".join(level.label for level in levels),
        "slo": _slo_text(slo),
    }
    shown.update((k, v) for k, v in flatten(settings).items() if k not in shown)
    return BenchRun(
        info=RunInfo(
            name=name,
            path=doc.path,
            tool="bench",
            schema_version=version,
            llmctl_version=doc.text("llmctl_version"),
            started_at=doc.text("started_at"),
            settings=shown,
            unrecorded=_UNRECORDED_BENCH,
        ),
        slo=slo,
        levels=tuple(levels),
        series_note=_NO_SERIES.format(version),
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
    """Read every file; runs are named by file stem, made unique where two stems are equal."""
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
        seen[path.stem] = seen.get(path.stem, 0) + 1
        name = path.stem if seen[path.stem] == 1 else f"{path.stem} ({seen[path.stem]})"
        runs.append(read_run(data, str(path), name))
    return runs
