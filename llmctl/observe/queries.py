"""Every PromQL query behind `llmctl top`, defined once (the tests run these same strings)."""

from __future__ import annotations

from llmctl.core import metrics as m

WINDOW = m.RECORDING_WINDOW
_OK = m.REASON_OK
_REQUESTS = m.GATEWAY_REQUESTS.series


def _up(job: str) -> str:
    return f'sum(up{{job="{job}"}} == 1)'


def or_zero(query: str, job: str) -> str:
    """`x or on() (0 * up)` turns "no such series yet" into 0 while `job` is scraped, so a quiet
    gateway or an idle engine shows 0/s and only a missing one shows "–"."""
    return f"{query} or on() (0 * {_up(job)})"


def _requests(matchers: str) -> str:
    return or_zero(f"sum(rate({_REQUESTS}{matchers}[{WINDOW}]))", m.JOB_GATEWAY)


def _engine_rate(spec: m.MetricSpec) -> str:
    return or_zero(f"sum(rate({spec.series}[{WINDOW}]))", m.JOB_ENGINE)


# Whether this Prometheus scrapes a gateway at all (else `top` reads the endpoints directly).
GATEWAY_TARGETS = f'count(up{{job="{m.JOB_GATEWAY}"}})'

# Snapshot field -> a query returning one number (an empty result means "missing").
SCALARS: dict[str, str] = {
    "slots_active": f"sum({m.GATEWAY_ACTIVE.series})",
    "slots_max": f"sum({m.GATEWAY_MAX_ACTIVE.series})",
    "queue_depth": f"sum({m.GATEWAY_QUEUE_DEPTH.series})",
    "queue_max": f"sum({m.GATEWAY_QUEUE_MAX.series})",
    "queue_wait_p95": f"max({m.REC_QUEUE_WAIT_P95})",
    "ok_per_s": _requests(f'{{reason="{_OK}"}}'),
    "rejected_429_per_s": _requests('{status="429"}'),
    "unavailable_503_per_s": _requests('{status="503"}'),
    "error_per_s": _requests(f'{{reason!="{_OK}",status!~"429|503"}}'),
    "latency_p50": f"max({m.REC_LATENCY_P50})",
    "latency_p95": f"max({m.REC_LATENCY_P95})",
    "latency_p99": f"max({m.REC_LATENCY_P99})",
    "ttft_p50": f"max({m.REC_TTFT_P50})",
    "ttft_p95": f"max({m.REC_TTFT_P95})",
    "engine_running": f"sum({m.VLLM_RUNNING.series})",
    "engine_waiting": f"sum({m.VLLM_WAITING.series})",
    "kv_cache_usage": f"max({m.VLLM_KV_USAGE.series})",
    "preemptions_per_s": _engine_rate(m.VLLM_PREEMPTIONS),
    "prompt_tokens_per_s": _engine_rate(m.VLLM_PROMPT_TOKENS),
    "generation_tokens_per_s": _engine_rate(m.VLLM_GENERATION_TOKENS),
}

# GpuSnapshot field -> a query returning one series per GPU (label `gpu`).
GPU: dict[str, str] = {
    "util_pct": f"max by (gpu) ({m.DCGM_GPU_UTIL.series})",
    "mem_used_mib": f"max by (gpu) ({m.DCGM_FB_USED.series})",
    "mem_total_mib": f"max by (gpu) ({m.DCGM_FB_USED.series} + {m.DCGM_FB_FREE.series})",
    "temp_c": f"max by (gpu) ({m.DCGM_TEMP.series})",
    "power_w": f"max by (gpu) ({m.DCGM_POWER.series})",
}
GPU_NAME = f"max by (gpu, modelName) ({m.DCGM_GPU_UTIL.series})"

# History field -> a query read as a range (the sparklines).
HISTORY: dict[str, str] = {
    # A range query: the recording rule has the rate already, for every step.
    "request_rate": f"sum({m.REC_REQUEST_RATE})",
    "latency_p95": f"max({m.REC_LATENCY_P95})",
    "queue_depth": f"sum({m.GATEWAY_QUEUE_DEPTH.series})",
    "gpu_util_pct": f"avg({m.DCGM_GPU_UTIL.series})",
}


def all_queries() -> list[str]:
    """Every query string above, for tests that run them all."""
    return [GATEWAY_TARGETS, *SCALARS.values(), *GPU.values(), GPU_NAME, *HISTORY.values()]
