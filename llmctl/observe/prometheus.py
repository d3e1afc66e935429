"""Read a StackSnapshot from Prometheus with prometheus-api-client (the queries live in queries.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from llmctl.core.metrics import JOB_GATEWAY
from llmctl.observe import queries
from llmctl.observe.snapshot import (
    HISTORY_POINTS,
    HISTORY_STEP_S,
    ClassSnapshot,
    EngineSnapshot,
    GpuSnapshot,
    History,
    StackSnapshot,
    finite,
)

_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class PrometheusUnreachableError(Exception):
    """Prometheus did not answer, or knows no gateway (not this stack's); callers fall back."""

    def __init__(self, message: str, reason: str = "Prometheus unreachable") -> None:
        super().__init__(message)
        self.reason = reason  # short, for the header


class PrometheusSource:
    """Queries one Prometheus; every call raises PrometheusUnreachableError if it cannot."""

    def __init__(self, url: str, *, timeout: float = 2.0, window_s: float | None = None) -> None:
        """`window_s` None: from the gateway's scrape interval (queries.window_for)."""
        self.url = url.rstrip("/")
        self.window_s = window_s
        # No retries: an unreachable Prometheus should cost one refused connection, not a backoff.
        self._client = PrometheusConnect(
            url=self.url, retry=Retry(total=0), timeout=timeout, disable_ssl=True
        )

    def _call(self, method: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = getattr(self._client, method)(*args, **kwargs)
        # requests' errors are OSErrors; a garbled answer is a ValueError.
        except (OSError, PrometheusApiClientException, ValueError) as exc:
            raise PrometheusUnreachableError(f"Prometheus at {self.url}: {exc}") from exc
        return result

    def vector(self, query: str) -> list[dict[str, Any]]:
        """An instant query's result: [{"metric": {...}, "value": [ts, "1.5"]}, ...]."""
        return self._call("custom_query", query)

    def scalar(self, query: str) -> float | None:
        """The first sample of an instant query, or None when it returns nothing."""
        result = self.vector(query)
        if not result:
            return None
        return finite(float(result[0]["value"][1]))

    def series(self, query: str, *, points: int = HISTORY_POINTS) -> list[float]:
        """The last `points` steps of a range query, NaN steps dropped."""
        end = datetime.now()
        start = end - timedelta(seconds=HISTORY_STEP_S * (points - 1))
        result = self._call("custom_query_range", query, start, end, f"{HISTORY_STEP_S:g}s")
        if not result:
            return []
        values = (finite(float(v)) for _, v in result[0]["values"])
        return [v for v in values if v is not None][-points:]

    def gpus(self) -> list[GpuSnapshot]:
        by_gpu: dict[str, dict[str, Any]] = {}
        for field, query in queries.GPU.items():
            for sample in self.vector(query):
                gpu = sample["metric"].get("gpu", "?")
                by_gpu.setdefault(gpu, {"gpu": gpu})[field] = finite(float(sample["value"][1]))
        for sample in self.vector(queries.GPU_NAME):
            gpu = sample["metric"].get("gpu", "?")
            if gpu in by_gpu:
                by_gpu[gpu]["name"] = sample["metric"].get("modelName")
        return [GpuSnapshot(**by_gpu[g]) for g in sorted(by_gpu, key=_gpu_order)]

    def labelled(self, fields: dict[str, str], label: str) -> dict[str, dict[str, float | None]]:
        """label value -> field -> value, for queries returning one series per `label` value."""
        found: dict[str, dict[str, float | None]] = {}
        for field, query in fields.items():
            for sample in self.vector(query):
                key = sample["metric"].get(label, "?")
                found.setdefault(key, {})[field] = finite(float(sample["value"][1]))
        return found

    def engines(self) -> list[EngineSnapshot]:
        rows = self.labelled(queries.ENGINES, "engine")
        return [
            EngineSnapshot(
                engine=name,
                active=v.get("active"),
                limit=v.get("limit"),
                up=None if v.get("up") is None else v.get("up") == 1.0,
            )
            for name, v in sorted(rows.items())
        ]

    def classes(self) -> list[ClassSnapshot]:
        rows = self.labelled(queries.CLASSES, "class")
        return [ClassSnapshot(name=name, **v) for name, v in sorted(rows.items())]

    def snapshot(self) -> StackSnapshot:
        # Another Prometheus on the port (Debian's, say) answers but has none of our series.
        if self.scalar(queries.GATEWAY_TARGETS) is None:
            raise PrometheusUnreachableError(
                f"Prometheus at {self.url} scrapes no gateway", "Prometheus scrapes no gateway"
            )
        if self.window_s is None:
            self.window_s = queries.window_for(self.scrape_interval_s())
        window = queries.window_text(self.window_s)
        values: dict[str, Any] = {
            field: self.scalar(query) for field, query in queries.scalars(window).items()
        }
        decision = self.vector(queries.LIMIT_DECISION)
        if decision:
            values["limit_direction"] = decision[0]["metric"].get("direction")
            values["limit_reason"] = decision[0]["metric"].get("reason")
        history = History(**{field: self.series(q) for field, q in queries.HISTORY.items()})
        return StackSnapshot(
            source="prometheus",
            source_url=self.url,
            reached=["prometheus"],
            taken_at=time.time(),
            window_s=self.window_s,
            history_span_s=HISTORY_POINTS * HISTORY_STEP_S,
            gpus=self.gpus(),
            engines=self.engines(),
            classes=self.classes(),
            history=history,
            **values,
        )

    def scrape_interval_s(self) -> float | None:
        """How often this Prometheus scrapes the gateway (from its targets), if it says."""
        try:
            targets: dict[str, Any] = self._client.get_targets()
        except (OSError, PrometheusApiClientException, ValueError):
            return None
        for target in targets.get("activeTargets", []):
            if target.get("labels", {}).get("job") == JOB_GATEWAY:
                return _duration_s(str(target.get("scrapeInterval", "")))
        return None


def _gpu_order(gpu: str) -> tuple[int, str]:
    return (int(gpu), "") if gpu.isdigit() else (1 << 30, gpu)


def _duration_s(text: str) -> float | None:
    """A Prometheus duration of one unit (`2s`, `500ms`, `1m`) in seconds; None if it is not."""
    for unit in ("ms", "s", "m", "h"):
        number = text.removesuffix(unit)
        if number != text:
            try:
                return float(number) * _UNITS_S[unit]
            except ValueError:
                return None
    return None
