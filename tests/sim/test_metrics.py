"""The simulator's /metrics match vLLM's names, types and labels; abort frees KV at once."""

from __future__ import annotations

import httpx

from llmctl.core import metrics as m
from tests.exposition import Exposition, scrape_value
from tests.sim.conftest import Sim
from tests.support import VLLM_REFERENCE_METRICS, eventually

REQUIRED = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:request_success_total",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
)


def _one_request(url: str) -> None:
    body = {"prompt": "warm up", "max_tokens": 4}
    httpx.post(f"{url}/v1/completions", json=body, timeout=10).raise_for_status()


def test_every_vllm_name_exists_in_the_reference_with_the_same_type(sim: Sim) -> None:
    _one_request(sim.url)
    reference = Exposition.parse(VLLM_REFERENCE_METRICS.read_text()).types
    page = Exposition.scrape(f"{sim.url}/metrics")
    emitted = {name: kind for name, kind in page.types.items() if name.startswith("vllm:")}
    assert [name for name in REQUIRED if page.family_of(name) not in emitted] == []
    mismatched = {n: (k, reference.get(n)) for n, k in emitted.items() if reference.get(n) != k}
    assert mismatched == {}


def _buckets(page: Exposition, name: str) -> list[float]:
    return [
        float(s.labels["le"]) for s in page.matching(f"{name}_bucket") if s.labels["le"] != "+Inf"
    ]


def test_histogram_buckets_follow_vllm(sim: Sim) -> None:
    _one_request(sim.url)
    reference = Exposition.parse(VLLM_REFERENCE_METRICS.read_text())
    ours = Exposition.scrape(f"{sim.url}/metrics")
    for spec in m.VLLM_METRICS:
        if spec.type != "histogram":
            continue
        theirs, mine = _buckets(reference, spec.name), _buckets(ours, spec.name)
        if spec in (m.VLLM_REQUEST_PROMPT_TOKENS, m.VLLM_REQUEST_GENERATION_TOKENS):
            # 1-2-5 up to max_model_len: the reference model's is shorter than the tiny profile's.
            assert mine[: len(theirs)] == theirs, spec.name
            assert mine[-1] <= 8192 < mine[-1] * 2.5, spec.name
        else:
            assert mine == theirs, spec.name


def test_vllm_samples_carry_model_name_and_engine_labels(sim: Sim) -> None:
    _one_request(sim.url)
    page = Exposition.scrape(f"{sim.url}/metrics")
    vllm = [s for s in page.samples if s.name.startswith("vllm:")]
    assert vllm
    for sample in vllm:
        assert sample.labels.get("model_name") == "llmctl-sim", sample.name
        assert sample.labels.get("engine") == "0", sample.name
    reasons = {s.labels["finished_reason"] for s in page.matching("vllm:request_success_total")}
    assert reasons == set(m.VLLM_FINISHED_REASONS)
    assert page.value("vllm:request_success_total", finished_reason="length") >= 1


def test_dcgm_telemetry_is_served_for_gpu_0(sim: Sim) -> None:
    page = Exposition.scrape(f"{sim.url}/dcgm/metrics")
    assert page.types == {spec.name: "gauge" for spec in m.DCGM_METRICS}
    for spec in m.DCGM_METRICS:
        assert page.value(spec.name, gpu="0") >= 0
    used, free = page.value("DCGM_FI_DEV_FB_USED"), page.value("DCGM_FI_DEV_FB_FREE")
    assert used > 0
    assert free > 0


def test_busy_engine_shows_in_gpu_util_and_kv_in_fb_used(sim: Sim) -> None:
    before = Exposition.scrape(f"{sim.url}/dcgm/metrics")
    body = {"prompt": "x " * 2000, "max_tokens": 2000, "ignore_eos": True, "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{sim.url}/v1/completions", json=body) as resp,
    ):
        lines = resp.iter_lines()  # keep a reference: a collected iterator closes the response
        for _ in range(200):
            next(lines)
        during = Exposition.parse(client.get(f"{sim.url}/dcgm/metrics").text)
    assert during.value("DCGM_FI_DEV_GPU_UTIL") > before.value("DCGM_FI_DEV_GPU_UTIL")
    assert during.value("DCGM_FI_DEV_FB_USED") > before.value("DCGM_FI_DEV_FB_USED")


def test_aborted_stream_frees_kv_and_running_at_once(sim: Sim) -> None:
    metrics = f"{sim.url}/metrics"
    aborts = scrape_value(metrics, "vllm:request_success_total", finished_reason="abort")
    body = {"prompt": "hello " * 300, "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{sim.url}/v1/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        lines = resp.iter_lines()
        for _ in range(5):
            next(lines)
        assert scrape_value(metrics, "vllm:num_requests_running") == 1
        assert scrape_value(metrics, "vllm:kv_cache_usage_perc") > 0
    # Leaving the block closed the connection mid-stream.
    eventually(lambda: scrape_value(metrics, "vllm:num_requests_running") == 0, timeout=3.0)
    assert scrape_value(metrics, "vllm:kv_cache_usage_perc") == 0
    # vLLM 0.32 records no stats for a client abort (tests/vllm/test_metrics_parity.py pins that).
    after = scrape_value(metrics, "vllm:request_success_total", finished_reason="abort")
    assert after == aborts
