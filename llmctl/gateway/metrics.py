"""The gateway's Prometheus collectors, built from the one definition in `llmctl.core.metrics`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmctl.core import metrics as m
from llmctl.gateway.admission import AdmissionController


class Outcome:
    """How one request ended. The first verdict wins (a client that leaves while the gateway
    writes an error event does not make a second one); the request handler counts it once."""

    __slots__ = ("reason", "status")

    def __init__(self) -> None:
        self.status = 500
        self.reason: str | None = None

    def set(self, status: int, reason: str) -> None:
        if self.reason is None:
            self.status, self.reason = status, reason


class GatewayMetrics:
    """Every gateway series in its own registry (so several gateways can live in one test process)."""

    def __init__(self, admission: AdmissionController) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        c = {spec.name: m.build_collector(spec, self.registry) for spec in m.GATEWAY_METRICS}
        self.requests: Counter = c[m.GATEWAY_REQUESTS.name]  # type: ignore[assignment]
        self.queue_wait: Histogram = c[m.GATEWAY_QUEUE_WAIT.name]  # type: ignore[assignment]
        self.duration: Histogram = c[m.GATEWAY_REQUEST_DURATION.name]  # type: ignore[assignment]
        self.ttft: Histogram = c[m.GATEWAY_TTFT.name]  # type: ignore[assignment]
        self.prompt_tokens: Counter = c[m.GATEWAY_PROMPT_TOKENS.name]  # type: ignore[assignment]
        self.completion_tokens: Counter = c[m.GATEWAY_COMPLETION_TOKENS.name]  # type: ignore[assignment]
        self.disconnects: Counter = c[m.GATEWAY_CLIENT_DISCONNECTS.name]  # type: ignore[assignment]
        self.upstream_errors: Counter = c[m.GATEWAY_UPSTREAM_ERRORS.name]  # type: ignore[assignment]
        self.engine_ready: Gauge = c[m.GATEWAY_ENGINE_READY.name]  # type: ignore[assignment]

        # Live values are read at scrape time, so the request path never touches these gauges.
        gauges: dict[str, Gauge] = {k: v for k, v in c.items() if isinstance(v, Gauge)}
        gauges[m.GATEWAY_ACTIVE.name].set_function(lambda: admission.active)
        gauges[m.GATEWAY_QUEUE_DEPTH.name].set_function(lambda: admission.queued)
        gauges[m.GATEWAY_MAX_ACTIVE.name].set_function(lambda: admission.limits.max_active)
        gauges[m.GATEWAY_QUEUE_MAX.name].set_function(lambda: admission.limits.queue_max)
        gauges[m.GATEWAY_QUEUE_TIMEOUT.name].set_function(lambda: admission.limits.queue_timeout_s)

        # Pre-create every labelled child so dashboards see zeros instead of missing series.
        for stage in m.DISCONNECT_STAGES:
            self.disconnects.labels(stage)
        for kind in m.UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind)
        self._request_children: dict[tuple[str, int, str], Any] = {}

    def count_request(self, route: str, status: int, reason: str) -> None:
        key = (route, status, reason)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, str(status), reason)
        child.inc()
