"""The gateway's Prometheus collectors, built from the one definition in `llmctl.core.metrics`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmctl.core import metrics as m
from llmctl.gateway.admission import AdmissionController
from llmctl.gateway.cache import ResponseCache
from llmctl.gateway.fairness import FairQueue, Queue
from llmctl.gateway.histogram import LatencyHistogram
from llmctl.gateway.limiter import Measurements, p95


class Outcome:
    """How one request ended. The first verdict wins (a client that leaves while the gateway
    writes an error event does not make a second one); the request handler counts it once."""

    __slots__ = (
        "class_name",
        "engine",
        "queue_wait_s",
        "reason",
        "request_id",
        "status",
        "tenant",
        "ttft_s",
        "usage",
    )

    def __init__(self) -> None:
        self.status = 500
        self.reason: str | None = None
        self.usage: tuple[int, int] | None = None  # (prompt, completion) the engine reported
        self.tenant: str | None = None
        self.class_name: str | None = None
        # For the access log: known once the request got that far.
        self.request_id: str | None = None
        self.engine: str | None = None  # the engine it went to last (host:port)
        self.queue_wait_s: float | None = None
        self.ttft_s: float | None = None

    def set(self, status: int, reason: str) -> None:
        if self.reason is None:
            self.status, self.reason = status, reason


class GatewayMetrics:
    """Every gateway series in its own registry (so several gateways can live in one test process)."""

    def __init__(self, admission: AdmissionController) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = m.counter(m.GATEWAY_REQUESTS, registry)
        self.queue_wait = LatencyHistogram(m.GATEWAY_QUEUE_WAIT)
        self.e2e = LatencyHistogram(m.GATEWAY_E2E)
        self.ttft = LatencyHistogram(m.GATEWAY_TTFT)
        self.admitted_ttft = LatencyHistogram(m.GATEWAY_ADMITTED_TTFT)
        self.tpot = LatencyHistogram(m.GATEWAY_TPOT)
        self.latencies = (self.queue_wait, self.e2e, self.ttft, self.admitted_ttft, self.tpot)
        self.prompt_tokens = m.counter(m.GATEWAY_PROMPT_TOKENS, registry)
        self.completion_tokens = m.counter(m.GATEWAY_COMPLETION_TOKENS, registry)
        self.disconnects = m.counter(m.GATEWAY_CLIENT_DISCONNECTS, registry)
        self.upstream_errors = m.counter(m.GATEWAY_UPSTREAM_ERRORS, registry)
        self.engine_ready = m.gauge(m.GATEWAY_ENGINE_READY, registry)
        self.engine_ready.set_function(lambda: 1.0 if admission.pool.ready() else 0.0)
        self.routed = m.counter(m.GATEWAY_ROUTED, registry)
        self.retries = m.counter(m.GATEWAY_RETRIES, registry)
        self.tenant_requests = m.counter(m.GATEWAY_TENANT_REQUESTS, registry)
        self.tenant_tokens = m.counter(m.GATEWAY_TENANT_TOKENS, registry)
        self.rate_limited = m.counter(m.GATEWAY_RATE_LIMITED, registry)
        self.admission_prompt_tokens = m.counter(m.GATEWAY_ADMISSION_PROMPT_TOKENS, registry)
        self.cache_lookups = m.counter(m.GATEWAY_CACHE_LOOKUPS, registry)
        self.cache_evictions = m.counter(m.GATEWAY_CACHE_EVICTIONS, registry)
        registry.register(_EngineGauges(admission))
        registry.register(ClassGauges(admission.queue))
        self.limit_changes = m.counter(m.GATEWAY_LIMIT_CHANGES, registry)
        for source in m.LIMIT_SOURCES:
            for direction, adaptive_reason in (("up", "headroom"), ("down", "ttft")):
                self.limit_changes.labels(
                    source, direction, "set" if source != "adaptive" else adaptive_reason
                )
        m.gauge(m.GATEWAY_LIMIT_ADAPTIVE, registry).set_function(
            lambda: 1.0 if admission.limits.limit_mode == "adaptive" else 0.0
        )
        self.measurements = Measurements(lambda: admission.limits.adaptive_interval_s)
        m.gauge(m.GATEWAY_ADAPTIVE_TTFT, registry).set_function(
            lambda: p95(self.measurements.ttft) or float("nan")
        )
        m.gauge(m.GATEWAY_ADAPTIVE_ITL, registry).set_function(
            lambda: p95(self.measurements.tpot) or float("nan")
        )
        slo = m.gauge(m.GATEWAY_ADAPTIVE_SLO, registry)
        slo.labels("ttft").set_function(lambda: _or_nan(admission.limits.adaptive_slo.ttft_s))
        slo.labels("itl").set_function(lambda: _or_nan(admission.limits.adaptive_slo.itl_s))
        self.decision = m.gauge(m.GATEWAY_LIMIT_DECISION, registry)

        # The response cache, when it is on (its gauges read 0 while it is off).
        self.cache: ResponseCache | None = None
        # Live values are read at scrape time, so the request path never touches these gauges.
        live = {
            m.GATEWAY_CACHE_BYTES: lambda: self.cache.bytes if self.cache is not None else 0,
            m.GATEWAY_CACHE_MAX_BYTES: lambda: 0 if self.cache is None else self.cache.max_bytes,
            m.GATEWAY_CACHE_ENTRIES: lambda: len(self.cache) if self.cache is not None else 0,
            m.GATEWAY_ACTIVE: lambda: admission.active,
            m.GATEWAY_QUEUE_DEPTH: lambda: admission.queued,
            m.GATEWAY_MAX_ACTIVE: lambda: admission.limits.max_active,
            m.GATEWAY_QUEUE_MAX: lambda: admission.limits.queue_max,
            m.GATEWAY_QUEUE_TIMEOUT: lambda: admission.limits.queue_timeout_s,
        }
        for spec, read in live.items():
            m.gauge(spec, registry).set_function(read)

        # Pre-create every labelled child so dashboards see zeros instead of missing series.
        for stage in m.DISCONNECT_STAGES:
            self.disconnects.labels(stage)
        for kind in m.UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind)
            self.retries.labels(kind)
        for counting in m.TOKEN_COUNTINGS:
            self.admission_prompt_tokens.labels(counting)
        for result in m.CACHE_RESULTS:
            self.cache_lookups.labels(result)
        for reason in m.CACHE_EVICTION_REASONS:
            self.cache_evictions.labels(reason)
        self._request_children: dict[tuple[str, int, str], Any] = {}

    def evicted(self, reason: str, entries: int) -> None:
        self.cache_evictions.labels(reason).inc(entries)

    def admitted_first_token(self, seconds: float, admitted_at: float) -> None:
        """A request's first token, `seconds` after its slot was granted at `admitted_at`."""
        self.admitted_ttft.observe(seconds)
        self.measurements.first_token(seconds, admitted_at)

    def per_token(self, seconds: float, admitted_at: float) -> None:
        """A finished stream's mean time per output token after the first."""
        self.tpot.observe(seconds)
        self.measurements.per_token(seconds, admitted_at)

    def count_limit_change(self, source: str, direction: str, reason: str) -> None:
        self.limit_changes.labels(source, direction, reason).inc()

    def show_decision(self, direction: str, reason: str) -> None:
        """The adaptive limit's last decision: 1 on it, 0 on every other."""
        self.decision.clear()
        self.decision.labels(direction, reason).set(1)

    def precreate_tenant(self, tenant: str) -> None:
        """Zeros for a tenant's counters, so dashboards show it before its first request."""
        for kind in ("prompt", "completion"):
            self.tenant_tokens.labels(tenant, kind)
        for limit in ("requests", "tokens"):
            self.rate_limited.labels(tenant, limit)

    def count_request(self, route: str, outcome: Outcome) -> None:
        reason = outcome.reason or "internal_error"
        key = (route, outcome.status, reason)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(
                route, str(outcome.status), reason
            )
        child.inc()
        if outcome.tenant is not None:
            self.tenant_requests.labels(outcome.tenant, outcome.class_name or "", reason).inc()
            if outcome.usage is not None:
                self.tenant_tokens.labels(outcome.tenant, "prompt").inc(outcome.usage[0])
                self.tenant_tokens.labels(outcome.tenant, "completion").inc(outcome.usage[1])

    def exposition(self) -> bytes:
        """Every gateway series in Prometheus' text format (what GET /metrics answers)."""
        latencies = "".join(h.exposition() for h in self.latencies)
        return generate_latest(self.registry) + latencies.encode()


class _EngineGauges(Collector):
    """Per-engine gauges, read from the pool at scrape time (engines come and go with DNS)."""

    def __init__(self, admission: AdmissionController) -> None:
        self._admission = admission

    def collect(self) -> Iterator[GaugeMetricFamily]:
        admission = self._admission
        default = admission.limits.max_active
        now = time.monotonic()
        families = {
            spec: GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
            for spec in (m.GATEWAY_ENGINE_ACTIVE, m.GATEWAY_ENGINE_LIMIT, m.GATEWAY_ENGINE_UP)
        }
        for engine in admission.pool:
            name = [engine.name]
            families[m.GATEWAY_ENGINE_ACTIVE].add_metric(name, engine.active)
            families[m.GATEWAY_ENGINE_LIMIT].add_metric(
                name, engine.effective_limit(default, now, admission.pool.ramp_s)
            )
            families[m.GATEWAY_ENGINE_UP].add_metric(name, 1.0 if engine.in_rotation() else 0.0)
        yield from families.values()


class ClassGauges(Collector):
    """Per-class queue depth and slots held, read from the fair queue at scrape time."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            m.GATEWAY_CLASS_QUEUE.name, m.GATEWAY_CLASS_QUEUE.help, labels=["class"]
        )
        active = GaugeMetricFamily(
            m.GATEWAY_CLASS_ACTIVE.name, m.GATEWAY_CLASS_ACTIVE.help, labels=["class"]
        )
        queue = self._queue
        for klass in queue.classes if isinstance(queue, FairQueue) else ():
            depth.add_metric([klass.policy.name], klass.waiting)
            active.add_metric([klass.policy.name], klass.holding)
        yield depth
        yield active


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
