"""Every PromQL query behind `llmctl top`, defined once (the tests run these same strings).

Live numbers are computed over `top`'s own short window (`scalars(window)`), straight from the raw
counters and histogram buckets, so they follow the load within seconds and fall to 0 (rates) and
"–" (percentiles) once it stops. The sparklines read the 1-minute recording rules the dashboards
and alerts use: a longer, smoother span, labelled as such.
"""

from __future__ import annotations

from llmctl.core import metrics as m

_OK = m.REASON_OK
# The cache's lookup results (a regex for the `result` label): answered from the cache, or not.
CACHE_SERVED = "hit|coalesced"
CACHE_FORWARDED = "miss|bypass"
_REQUESTS = m.GATEWAY_REQUESTS.series


def _up(job: str) -> str:
    return f'sum(up{{job="{job}"}} == 1)'


def or_zero(query: str, job: str) -> str:
    """`x or on() (0 * up)` turns "no such series yet" into 0 while `job` is scraped, so a quiet
    gateway or an idle engine shows 0/s and only a missing one shows "–"."""
    return f"{query} or on() (0 * {_up(job)})"


# The live window: at least this long, and long enough for this many scrapes (rate() needs two).
MIN_WINDOW_S = 10.0
SCRAPES_PER_WINDOW = 5


def window_for(scrape_interval_s: float | None) -> float:
    """The window live numbers are computed over, given how often the gateway is scraped."""
    if scrape_interval_s is None:
        return MIN_WINDOW_S
    return max(MIN_WINDOW_S, SCRAPES_PER_WINDOW * scrape_interval_s)


def window_text(seconds: float) -> str:
    """A PromQL range for `seconds`, e.g. `10s`."""
    return f"{max(1, round(seconds))}s"


def quantile(spec: m.MetricSpec, q: float, window: str) -> str:
    """The q-quantile of histogram `spec` over the last `window`, across every instance."""
    return f"histogram_quantile({q}, sum by (le) (rate({spec.name}_bucket[{window}])))"


def scalars(window: str) -> dict[str, str]:
    """Snapshot field -> a query returning one number (an empty result means "missing")."""

    def requests(matchers: str) -> str:
        return or_zero(f"sum(rate({_REQUESTS}{matchers}[{window}]))", m.JOB_GATEWAY)

    def engine_rate(spec: m.MetricSpec) -> str:
        return or_zero(f"sum(rate({spec.series}[{window}]))", m.JOB_ENGINE)

    def lookups(results: str) -> str:
        series = f'{m.GATEWAY_CACHE_LOOKUPS.series}{{result=~"{results}"}}'
        return or_zero(f"sum(rate({series}[{window}]))", m.JOB_GATEWAY)

    return {
        "slots_active": f"sum({m.GATEWAY_ACTIVE.series})",
        "slots_max": f"sum({m.GATEWAY_MAX_ACTIVE.series})",
        "queue_depth": f"sum({m.GATEWAY_QUEUE_DEPTH.series})",
        "queue_max": f"sum({m.GATEWAY_QUEUE_MAX.series})",
        "queue_wait_p95_s": quantile(m.GATEWAY_QUEUE_WAIT, 0.95, window),
        "ok_per_s": requests(f'{{reason="{_OK}"}}'),
        "rejected_429_per_s": requests('{status="429"}'),
        "unavailable_503_per_s": requests('{status="503"}'),
        "error_per_s": requests(f'{{reason!="{_OK}",status!~"429|503"}}'),
        "ttft_p50_s": quantile(m.GATEWAY_TTFT, 0.5, window),
        "ttft_p95_s": quantile(m.GATEWAY_TTFT, 0.95, window),
        "e2e_p50_s": quantile(m.GATEWAY_E2E, 0.5, window),
        "e2e_p95_s": quantile(m.GATEWAY_E2E, 0.95, window),
        "e2e_p99_s": quantile(m.GATEWAY_E2E, 0.99, window),
        "admitted_ttft_p95_s": quantile(m.GATEWAY_ADMITTED_TTFT, 0.95, window),
        "tpot_p95_s": quantile(m.GATEWAY_TPOT, 0.95, window),
        "engine_running": f"sum({m.VLLM_RUNNING.series})",
        "engine_waiting": f"sum({m.VLLM_WAITING.series})",
        "kv_cache_usage": f"max({m.VLLM_KV_USAGE.series})",
        "preemptions_per_s": engine_rate(m.VLLM_PREEMPTIONS),
        "prompt_tokens_per_s": engine_rate(m.VLLM_PROMPT_TOKENS),
        "generation_tokens_per_s": engine_rate(m.VLLM_GENERATION_TOKENS),
        "cache_hit_per_s": lookups(CACHE_SERVED),
        "cache_miss_per_s": lookups(CACHE_FORWARDED),
        "cache_bytes": f"sum({m.GATEWAY_CACHE_BYTES.series})",
        "cache_max_bytes": f"sum({m.GATEWAY_CACHE_MAX_BYTES.series})",
        "limit_adaptive": f"max({m.GATEWAY_LIMIT_ADAPTIVE.series})",
        "adaptive_ttft_p95_s": f"max({m.GATEWAY_ADAPTIVE_TTFT.series})",
        "adaptive_itl_p95_s": f"max({m.GATEWAY_ADAPTIVE_ITL.series})",
        "adaptive_slo_ttft_s": f'max({m.GATEWAY_ADAPTIVE_SLO.series}{{signal="ttft"}})',
        "adaptive_slo_itl_s": f'max({m.GATEWAY_ADAPTIVE_SLO.series}{{signal="itl"}})',
    }


# The adaptive limit's last change: one series, labels direction and reason.
LIMIT_DECISION = f"max by (direction, reason) ({m.GATEWAY_LIMIT_DECISION.series} == 1)"


# Whether this Prometheus scrapes a gateway at all (else `top` reads the endpoints directly).
GATEWAY_TARGETS = f'count(up{{job="{m.JOB_GATEWAY}"}})'

# GpuSnapshot field -> a query returning one series per GPU (label `gpu`).
GPU: dict[str, str] = {
    "util_pct": f"max by (gpu) ({m.DCGM_GPU_UTIL.series})",
    "mem_used_mib": f"max by (gpu) ({m.DCGM_FB_USED.series})",
    "mem_total_mib": f"max by (gpu) ({m.DCGM_FB_USED.series} + {m.DCGM_FB_FREE.series})",
    "temp_c": f"max by (gpu) ({m.DCGM_TEMP.series})",
    "power_w": f"max by (gpu) ({m.DCGM_POWER.series})",
}
GPU_NAME = f"max by (gpu, modelName) ({m.DCGM_GPU_UTIL.series})"

# EngineSnapshot field -> a query returning one series per engine (label `engine`).
ENGINES: dict[str, str] = {
    "active": f"sum by (engine) ({m.GATEWAY_ENGINE_ACTIVE.series})",
    "limit": f"sum by (engine) ({m.GATEWAY_ENGINE_LIMIT.series})",
    "up": f"min by (engine) ({m.GATEWAY_ENGINE_UP.series})",
}
# ClassSnapshot field -> a query returning one series per class (label `class`).
CLASSES: dict[str, str] = {
    "queued": f"sum by (class) ({m.GATEWAY_CLASS_QUEUE.series})",
    "active": f"sum by (class) ({m.GATEWAY_CLASS_ACTIVE.series})",
}

# History field -> a query read as a range (the sparklines): the recording rules, over
# m.RECORDING_WINDOW each, so history is the smoothed view the dashboards show.
HISTORY: dict[str, str] = {
    "request_rate": f"sum({m.REC_REQUEST_RATE})",
    "e2e_p95_s": f"max({m.REC_E2E_P95})",
    "queue_depth": f"sum({m.GATEWAY_QUEUE_DEPTH.series})",
    "gpu_util_pct": f"avg({m.DCGM_GPU_UTIL.series})",
}


def all_queries(window: str = "10s") -> list[str]:
    """Every query string above, for tests that run them all."""
    return [
        GATEWAY_TARGETS,
        LIMIT_DECISION,
        *scalars(window).values(),
        *GPU.values(),
        GPU_NAME,
        *ENGINES.values(),
        *CLASSES.values(),
        *HISTORY.values(),
    ]
