"""Every metric name llmctl emits or reads, defined once.

The gateway and the simulator create their collectors from these specs; `top`, the dashboards and the
alert rules refer to the names here, and tests cross-check the dashboards and rules against this module,
so a rename breaks a test, not a dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its exposition name (without `_total` for counters), type, help and labels."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def series(self) -> str:
        """The name as it appears in PromQL (counters gain `_total`)."""
        return f"{self.name}_total" if self.type == "counter" else self.name


# --- the gateway (llmctl's own) -------------------------------------------------------------------

# Request outcomes, used as the `reason` label of GATEWAY_REQUESTS.
REASON_OK = "ok"
REASONS = (
    REASON_OK,
    "queue_full",
    "rejected",
    "queue_timeout",
    "engine_unavailable",
    "upstream_error",
    "deadline",
    "client_disconnect",
    "bad_request",
    "unauthorized",
    "internal_error",
    "rate_limited",
)
# Where a client went away, the `stage` label of GATEWAY_CLIENT_DISCONNECTS.
DISCONNECT_STAGES = ("upload", "queued", "waiting", "streaming")
# Kinds of upstream failure, the `kind` label of GATEWAY_UPSTREAM_ERRORS.
UPSTREAM_ERROR_KINDS = ("connect", "status", "timeout", "stream", "protocol")


def geometric_buckets(low: float, high: float, ratio: float) -> tuple[float, ...]:
    """Bucket bounds `low`, `low x ratio`, ... up to the first one at or above `high`, each rounded
    to 6 significant digits (so they print cleanly; the ratio moves by under 1e-5)."""
    bounds: list[float] = []
    value = low
    while True:
        bounds.append(float(f"{value:.6g}"))
        if value >= high:
            return tuple(bounds)
        value *= ratio


# The gateway's latency histograms. Prometheus' histogram_quantile interpolates linearly inside the
# bucket holding the quantile, so its estimate and the true value share a bucket [a, a x r]: the
# relative error is at most r - 1. r = 1.0495 keeps every quantile between 1 ms and 10 min within
# 5 % of the exact value, with 276 buckets (docs/observability.md: why not native histograms, and
# the series count).
LATENCY_LOW_S = 0.001
LATENCY_HIGH_S = 600.0
LATENCY_RATIO = 1.0495
LATENCY_BUCKETS = geometric_buckets(LATENCY_LOW_S, LATENCY_HIGH_S, LATENCY_RATIO)

GATEWAY_REQUESTS = MetricSpec(
    "llmctl_gateway_requests",
    "counter",
    "Finished gateway requests by route, HTTP status and reason.",
    ("route", "status", "reason"),
)
GATEWAY_ACTIVE = MetricSpec(
    "llmctl_gateway_active_requests", "gauge", "Requests holding an engine slot now."
)
GATEWAY_QUEUE_DEPTH = MetricSpec(
    "llmctl_gateway_queue_depth", "gauge", "Requests waiting for an engine slot now."
)
GATEWAY_MAX_ACTIVE = MetricSpec(
    "llmctl_gateway_max_active", "gauge", "The current concurrency limit (MAX_ACTIVE)."
)
GATEWAY_QUEUE_MAX = MetricSpec(
    "llmctl_gateway_queue_max", "gauge", "The current queue bound (QUEUE_MAX; 0 means no queue)."
)
GATEWAY_QUEUE_TIMEOUT = MetricSpec(
    "llmctl_gateway_queue_timeout_seconds", "gauge", "The current queue timeout (QUEUE_TIMEOUT_S)."
)
GATEWAY_ENGINE_READY = MetricSpec(
    "llmctl_gateway_engine_ready",
    "gauge",
    "1 when the engine answered its last readiness probe with the model listed, else 0.",
)
GATEWAY_QUEUE_WAIT = MetricSpec(
    "llmctl_gateway_queue_wait_seconds",
    "histogram",
    "Time from arrival at the gateway to the grant of an engine slot, per admitted request.",
    (),
    LATENCY_BUCKETS,
)
GATEWAY_E2E = MetricSpec(
    "llmctl_gateway_e2e_request_latency_seconds",
    "histogram",
    "Time from arrival at the gateway to the last byte, per admitted request (queue wait "
    "included): what users feel.",
    (),
    LATENCY_BUCKETS,
)
GATEWAY_TTFT = MetricSpec(
    "llmctl_gateway_time_to_first_token_seconds",
    "histogram",
    "Time from arrival at the gateway to the first generated text (queue wait included): what "
    "users feel. A non-streamed answer's first token is its end.",
    (),
    LATENCY_BUCKETS,
)
GATEWAY_ADMITTED_TTFT = MetricSpec(
    "llmctl_gateway_admitted_time_to_first_token_seconds",
    "histogram",
    "Time from the grant of an engine slot to the first generated text: the engine's part of "
    "TTFT, without the gateway's queue.",
    (),
    LATENCY_BUCKETS,
)
GATEWAY_TPOT = MetricSpec(
    "llmctl_gateway_time_per_output_token_seconds",
    "histogram",
    "Per streamed request with two or more tokens: (last text - first text) / (tokens - 1), its "
    "mean inter-token latency.",
    (),
    LATENCY_BUCKETS,
)
GATEWAY_PROMPT_TOKENS = MetricSpec(
    "llmctl_gateway_prompt_tokens", "counter", "Prompt tokens of finished requests."
)
GATEWAY_COMPLETION_TOKENS = MetricSpec(
    "llmctl_gateway_completion_tokens",
    "counter",
    "Completion tokens of finished requests (upstream usage, else counted chunks).",
)
GATEWAY_CLIENT_DISCONNECTS = MetricSpec(
    "llmctl_gateway_client_disconnects",
    "counter",
    "Clients that went away before their answer was complete, by stage.",
    ("stage",),
)
GATEWAY_UPSTREAM_ERRORS = MetricSpec(
    "llmctl_gateway_upstream_errors",
    "counter",
    "Failures talking to the engine, by kind.",
    ("kind",),
)

# Several engines behind one gateway (label `engine`: the engine's host:port).
GATEWAY_ENGINE_ACTIVE = MetricSpec(
    "llmctl_gateway_engine_active_requests",
    "gauge",
    "Requests holding a slot on this engine now.",
    ("engine",),
)
GATEWAY_ENGINE_LIMIT = MetricSpec(
    "llmctl_gateway_engine_max_active",
    "gauge",
    "This engine's concurrency limit now (its MAX_ACTIVE, ramping up after it rejoined).",
    ("engine",),
)
GATEWAY_ENGINE_UP = MetricSpec(
    "llmctl_gateway_engine_up",
    "gauge",
    "1 while the engine is in rotation (its last probe found it ready), else 0.",
    ("engine",),
)
GATEWAY_ROUTED = MetricSpec(
    "llmctl_gateway_routed",
    "counter",
    "Requests sent to an engine, by engine and why it was chosen.",
    ("engine", "reason"),
)
GATEWAY_RETRIES = MetricSpec(
    "llmctl_gateway_retries",
    "counter",
    "Requests sent to another engine after theirs failed before the client got a byte, by the "
    "kind of failure.",
    ("kind",),
)

# The limit and who moved it.
# Who changed MAX_ACTIVE: the adaptive loop, an admin API caller, `llmctl tune`, `llmctl up`.
LIMIT_SOURCES = ("adaptive", "admin", "tune", "up")
# Why the limit moved (changes), and why adaptive mode held it (the last decision's gauge).
LIMIT_REASONS = ("ttft", "itl", "preemptions", "engine_queue", "headroom", "bounds", "set")
HOLD_REASONS = (
    "draining",
    "minimum",
    "near_slo",
    "slo_ok",
    "idle",
    "kv",
    "cooldown",
    "samples",
    "hold",
)
GATEWAY_LIMIT_CHANGES = MetricSpec(
    "llmctl_gateway_limit_changes",
    "counter",
    "Changes of MAX_ACTIVE by source (adaptive, admin, tune, up), direction and reason.",
    ("source", "direction", "reason"),
)
GATEWAY_LIMIT_ADAPTIVE = MetricSpec(
    "llmctl_gateway_limit_adaptive",
    "gauge",
    "1 while the limit is adaptive, 0 while it is static.",
)
GATEWAY_LIMIT_DECISION = MetricSpec(
    "llmctl_gateway_limit_decision",
    "gauge",
    "The adaptive limit's last decision (up, down or hold): 1 on its direction and reason.",
    ("direction", "reason"),
)
GATEWAY_ADAPTIVE_TTFT = MetricSpec(
    "llmctl_gateway_adaptive_ttft_p95_seconds",
    "gauge",
    "p95 TTFT of requests admitted under the current limit (what adaptive mode steers on).",
)
GATEWAY_ADAPTIVE_ITL = MetricSpec(
    "llmctl_gateway_adaptive_itl_p95_seconds",
    "gauge",
    "p95 inter-token latency (per-request TPOT) under the current limit.",
)
ADAPTIVE_SIGNALS = ("ttft", "itl")
GATEWAY_ADAPTIVE_SLO = MetricSpec(
    "llmctl_gateway_adaptive_slo_seconds",
    "gauge",
    "The p95 targets adaptive mode steers to (ttft: admitted time to first token, itl).",
    ("signal",),
)

# Tenants and classes (labels from the tenants file: bounded by it, never raw keys).
GATEWAY_TENANT_REQUESTS = MetricSpec(
    "llmctl_gateway_tenant_requests",
    "counter",
    "Finished requests by tenant, class and reason.",
    ("tenant", "class", "reason"),
)
GATEWAY_TENANT_TOKENS = MetricSpec(
    "llmctl_gateway_tenant_tokens",
    "counter",
    "Prompt and completion tokens of finished requests (engine usage), by tenant.",
    ("tenant", "kind"),
)
GATEWAY_RATE_LIMITED = MetricSpec(
    "llmctl_gateway_rate_limited",
    "counter",
    "Requests refused with 429 because their tenant is at a limit, by tenant and limit.",
    ("tenant", "limit"),
)
GATEWAY_CLASS_QUEUE = MetricSpec(
    "llmctl_gateway_class_queue_depth",
    "gauge",
    "Requests of this class waiting for a slot now.",
    ("class",),
)
GATEWAY_CLASS_ACTIVE = MetricSpec(
    "llmctl_gateway_class_active_requests",
    "gauge",
    "Requests of this class holding a slot now.",
    ("class",),
)

# Prompt tokens as the gateway counts them at admission (label `counting`: how).
TOKEN_COUNTINGS = ("exact", "estimated")
GATEWAY_ADMISSION_PROMPT_TOKENS = MetricSpec(
    "llmctl_gateway_admission_prompt_tokens",
    "counter",
    "Prompt tokens counted at admission: exact (the model's tokenizer and chat template) or "
    "estimated (4 characters a token).",
    ("counting",),
)

# The response cache (label `result`: what it did for one cacheable request).
CACHE_RESULTS = ("hit", "miss", "coalesced", "bypass")
CACHE_EVICTION_REASONS = ("size", "age", "purge")
GATEWAY_CACHE_LOOKUPS = MetricSpec(
    "llmctl_gateway_cache_lookups",
    "counter",
    "Cacheable requests by what the response cache did: hit (served from it), miss (sent to an "
    "engine), coalesced (given the answer of an identical request in flight), bypass "
    "(Cache-Control: no-cache).",
    ("result",),
)
GATEWAY_CACHE_BYTES = MetricSpec(
    "llmctl_gateway_cache_bytes", "gauge", "Bytes of answers the response cache holds now."
)
GATEWAY_CACHE_MAX_BYTES = MetricSpec(
    "llmctl_gateway_cache_max_bytes", "gauge", "The response cache's size bound."
)
GATEWAY_CACHE_ENTRIES = MetricSpec(
    "llmctl_gateway_cache_entries", "gauge", "Answers the response cache holds now."
)
GATEWAY_CACHE_EVICTIONS = MetricSpec(
    "llmctl_gateway_cache_evictions",
    "counter",
    "Answers dropped from the response cache, by reason (size, age, purge).",
    ("reason",),
)

GATEWAY_METRICS = (
    GATEWAY_REQUESTS,
    GATEWAY_ACTIVE,
    GATEWAY_QUEUE_DEPTH,
    GATEWAY_MAX_ACTIVE,
    GATEWAY_QUEUE_MAX,
    GATEWAY_QUEUE_TIMEOUT,
    GATEWAY_ENGINE_READY,
    GATEWAY_QUEUE_WAIT,
    GATEWAY_E2E,
    GATEWAY_TTFT,
    GATEWAY_ADMITTED_TTFT,
    GATEWAY_TPOT,
    GATEWAY_PROMPT_TOKENS,
    GATEWAY_COMPLETION_TOKENS,
    GATEWAY_CLIENT_DISCONNECTS,
    GATEWAY_UPSTREAM_ERRORS,
    GATEWAY_ENGINE_ACTIVE,
    GATEWAY_ENGINE_LIMIT,
    GATEWAY_ENGINE_UP,
    GATEWAY_ROUTED,
    GATEWAY_RETRIES,
    GATEWAY_LIMIT_CHANGES,
    GATEWAY_LIMIT_ADAPTIVE,
    GATEWAY_LIMIT_DECISION,
    GATEWAY_ADAPTIVE_TTFT,
    GATEWAY_ADAPTIVE_ITL,
    GATEWAY_ADAPTIVE_SLO,
    GATEWAY_TENANT_REQUESTS,
    GATEWAY_TENANT_TOKENS,
    GATEWAY_RATE_LIMITED,
    GATEWAY_CLASS_QUEUE,
    GATEWAY_CLASS_ACTIVE,
    GATEWAY_ADMISSION_PROMPT_TOKENS,
    GATEWAY_CACHE_LOOKUPS,
    GATEWAY_CACHE_BYTES,
    GATEWAY_CACHE_MAX_BYTES,
    GATEWAY_CACHE_ENTRIES,
    GATEWAY_CACHE_EVICTIONS,
)

# --- vLLM (names, types and labels as vLLM 0.32 exports them; labels model_name, engine) -----------

VLLM_LABELS = ("model_name", "engine")

VLLM_RUNNING = MetricSpec(
    "vllm:num_requests_running",
    "gauge",
    "Number of requests in model execution batches.",
    VLLM_LABELS,
)
VLLM_WAITING = MetricSpec(
    "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", VLLM_LABELS
)
VLLM_KV_USAGE = MetricSpec(
    "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", VLLM_LABELS
)
VLLM_PREEMPTIONS = MetricSpec(
    "vllm:num_preemptions",
    "counter",
    "Cumulative number of preemption from the engine.",
    VLLM_LABELS,
)
VLLM_PROMPT_TOKENS = MetricSpec(
    "vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", VLLM_LABELS
)
VLLM_GENERATION_TOKENS = MetricSpec(
    "vllm:generation_tokens", "counter", "Number of generation tokens processed.", VLLM_LABELS
)
VLLM_PREFIX_CACHE_QUERIES = MetricSpec(
    "vllm:prefix_cache_queries",
    "counter",
    "Prefix cache queries, in terms of number of queried tokens.",
    VLLM_LABELS,
)
VLLM_PREFIX_CACHE_HITS = MetricSpec(
    "vllm:prefix_cache_hits",
    "counter",
    "Prefix cache hits, in terms of number of cached tokens.",
    VLLM_LABELS,
)
VLLM_REQUEST_SUCCESS = MetricSpec(
    "vllm:request_success",
    "counter",
    "Count of successfully processed requests.",
    (*VLLM_LABELS, "finished_reason"),
)
VLLM_TTFT = MetricSpec(
    "vllm:time_to_first_token_seconds",
    "histogram",
    "Histogram of time to first token in seconds.",
    VLLM_LABELS,
    (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)  # fmt: skip
VLLM_ITL = MetricSpec(
    "vllm:inter_token_latency_seconds",
    "histogram",
    "Histogram of inter-token latency in seconds.",
    VLLM_LABELS,
    (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
     40.0, 80.0),
)  # fmt: skip
_REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
VLLM_E2E = MetricSpec(
    "vllm:e2e_request_latency_seconds",
    "histogram",
    "Histogram of e2e request latency in seconds.",
    VLLM_LABELS,
    _REQUEST_LATENCY_BUCKETS,
)
VLLM_QUEUE_TIME = MetricSpec(
    "vllm:request_queue_time_seconds",
    "histogram",
    "Histogram of time spent in WAITING phase for request.",
    VLLM_LABELS,
    _REQUEST_LATENCY_BUCKETS,
)
VLLM_PREFILL_TIME = MetricSpec(
    "vllm:request_prefill_time_seconds",
    "histogram",
    "Histogram of time spent in PREFILL phase for request.",
    VLLM_LABELS,
    _REQUEST_LATENCY_BUCKETS,
)
VLLM_DECODE_TIME = MetricSpec(
    "vllm:request_decode_time_seconds",
    "histogram",
    "Histogram of time spent in DECODE phase for request.",
    VLLM_LABELS,
    _REQUEST_LATENCY_BUCKETS,
)
_TOKEN_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
VLLM_REQUEST_PROMPT_TOKENS = MetricSpec(
    "vllm:request_prompt_tokens",
    "histogram",
    "Number of prefill tokens processed.",
    VLLM_LABELS,
    _TOKEN_BUCKETS,
)
VLLM_REQUEST_GENERATION_TOKENS = MetricSpec(
    "vllm:request_generation_tokens",
    "histogram",
    "Number of generation tokens processed.",
    VLLM_LABELS,
    _TOKEN_BUCKETS,
)

VLLM_METRICS = (
    VLLM_RUNNING,
    VLLM_WAITING,
    VLLM_KV_USAGE,
    VLLM_PREEMPTIONS,
    VLLM_PROMPT_TOKENS,
    VLLM_GENERATION_TOKENS,
    VLLM_PREFIX_CACHE_QUERIES,
    VLLM_PREFIX_CACHE_HITS,
    VLLM_REQUEST_SUCCESS,
    VLLM_TTFT,
    VLLM_ITL,
    VLLM_E2E,
    VLLM_QUEUE_TIME,
    VLLM_PREFILL_TIME,
    VLLM_DECODE_TIME,
    VLLM_REQUEST_PROMPT_TOKENS,
    VLLM_REQUEST_GENERATION_TOKENS,
)
VLLM_FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")

# --- GPU telemetry (NVIDIA DCGM exporter names; label gpu="0") ---------------------------------------

DCGM_LABELS = ("gpu", "UUID", "modelName", "Hostname")
DCGM_GPU_UTIL = MetricSpec("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", DCGM_LABELS)
DCGM_FB_USED = MetricSpec(
    "DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", DCGM_LABELS
)
DCGM_FB_FREE = MetricSpec(
    "DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", DCGM_LABELS
)
DCGM_POWER = MetricSpec("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", DCGM_LABELS)
DCGM_TEMP = MetricSpec("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", DCGM_LABELS)

DCGM_METRICS = (DCGM_GPU_UTIL, DCGM_FB_USED, DCGM_FB_FREE, DCGM_POWER, DCGM_TEMP)

ALL_METRICS = GATEWAY_METRICS + VLLM_METRICS + DCGM_METRICS


def known_series() -> set[str]:
    """Every PromQL series name llmctl knows, histograms expanded to _bucket/_sum/_count."""
    names: set[str] = set()
    for spec in ALL_METRICS:
        if spec.type == "histogram":
            names.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(spec.series)
    return names


# --- Prometheus job names and the Grafana datasource, shared by the renderer, dashboards, rules, top --

JOB_GATEWAY = "gateway"
JOB_ENGINE = "engine"
JOB_GPU = "gpu"
GRAFANA_DATASOURCE_UID = "llmctl-prometheus"

# --- recording rules (templates/prometheus/rules/recording.yml.j2 defines them; top and dashboards
# read them), named level:metric:operation as Prometheus recommends -----------------------------

RECORDING_WINDOW = "1m"
QUANTILES = (0.5, 0.95, 0.99)
# Histograms whose percentiles are recorded, aggregated per job+instance (+model_name for vLLM).
GATEWAY_LATENCIES = (
    GATEWAY_E2E,
    GATEWAY_TTFT,
    GATEWAY_ADMITTED_TTFT,
    GATEWAY_QUEUE_WAIT,
    GATEWAY_TPOT,
)
RECORDED_HISTOGRAMS = (*GATEWAY_LATENCIES, VLLM_TTFT, VLLM_ITL, VLLM_E2E)


def quantile_rule(spec: MetricSpec, quantile: float) -> str:
    """The recording rule holding `spec`'s `quantile` over RECORDING_WINDOW, e.g. ...:p95_rate1m."""
    base = spec.name.replace(":", "_")
    return f"instance:{base}:p{round(quantile * 100)}_rate{RECORDING_WINDOW}"


REC_REQUEST_RATE = f"instance:{GATEWAY_REQUESTS.series}:rate{RECORDING_WINDOW}"
REC_E2E_P50 = quantile_rule(GATEWAY_E2E, 0.5)
REC_E2E_P95 = quantile_rule(GATEWAY_E2E, 0.95)
REC_E2E_P99 = quantile_rule(GATEWAY_E2E, 0.99)
REC_TTFT_P50 = quantile_rule(GATEWAY_TTFT, 0.5)
REC_TTFT_P95 = quantile_rule(GATEWAY_TTFT, 0.95)
REC_ADMITTED_TTFT_P95 = quantile_rule(GATEWAY_ADMITTED_TTFT, 0.95)
REC_QUEUE_WAIT_P95 = quantile_rule(GATEWAY_QUEUE_WAIT, 0.95)
REC_TPOT_P95 = quantile_rule(GATEWAY_TPOT, 0.95)
REC_ENGINE_TTFT_P95 = quantile_rule(VLLM_TTFT, 0.95)
REC_ENGINE_ITL_P95 = quantile_rule(VLLM_ITL, 0.95)
REC_ENGINE_E2E_P95 = quantile_rule(VLLM_E2E, 0.95)


def recording_rules() -> set[str]:
    """Every recording rule name the rendered rules define."""
    names = {REC_REQUEST_RATE}
    names.update(quantile_rule(spec, q) for spec in RECORDED_HISTOGRAMS for q in QUANTILES)
    return names


def counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    """The prometheus_client Counter for `spec` in `registry`."""
    _expect(spec, "counter")
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def gauge(spec: MetricSpec, registry: CollectorRegistry) -> Gauge:
    """The prometheus_client Gauge for `spec` in `registry`."""
    _expect(spec, "gauge")
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def histogram(
    spec: MetricSpec, registry: CollectorRegistry, buckets: tuple[float, ...] | None = None
) -> Histogram:
    """The prometheus_client Histogram for `spec` in `registry` (`buckets` override the spec's)."""
    _expect(spec, "histogram")
    return Histogram(
        spec.name, spec.help, spec.labels, registry=registry, buckets=buckets or spec.buckets
    )


def _expect(spec: MetricSpec, kind: MetricType) -> None:
    if spec.type != kind:
        raise TypeError(f"{spec.name} is a {spec.type}, not a {kind}")
