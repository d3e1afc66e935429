"""The proxy: streaming passthrough, headers, error mapping before and after the first byte."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from llmctl.core.openai import usage_tokens
from tests.gateway.client import chat, health_saying, post_many, run_post
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually


def test_stream_is_forwarded_with_sse_headers_and_done(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway()
    ans = run_post(gw.url, chat({"tokens": 4}, stream=True))
    assert ans.status == 200
    assert ans.headers["Content-Type"].startswith("text/event-stream")
    assert ans.headers["Cache-Control"] == "no-cache"
    assert ans.headers["X-Accel-Buffering"] == "no"
    assert ans.events[-1] == b"data: [DONE]"
    assert len(ans.events) == 7  # role frame, 4 tokens, finish frame, [DONE] (vLLM's framing)
    assert float(ans.headers["X-Queue-Wait-Ms"]) >= 0
    assert gw.metric("llmctl_gateway_requests_total", reason="ok", status="200") == 1
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 4  # counted chunks
    assert gw.metric("llmctl_gateway_time_to_first_token_seconds_count") == 1


def test_stream_bytes_arrive_as_they_are_produced(make_gateway: MakeGateway) -> None:
    """The first event reaches the client long before the last one is produced (no buffering)."""
    gw = make_gateway()
    body = chat({"tokens": 5, "interval": 0.3}, stream=True)
    start = time.monotonic()
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body) as resp:
        lines = resp.iter_lines()
        first_line = next(lines)
        first_at = time.monotonic() - start
        rest = list(lines)
    total = time.monotonic() - start
    assert first_line.startswith("data: {")
    assert any("[DONE]" in line for line in rest)
    assert first_at < total / 2, (first_at, total)


def test_usage_from_upstream_counts_tokens(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    body = chat({"tokens": 6}, stream=True, stream_options={"include_usage": True})
    assert run_post(gw.url, body).status == 200
    assert run_post(gw.url, chat({"tokens": 2})).status == 200  # non-streamed: usage in body
    assert gw.metric("llmctl_gateway_prompt_tokens_total") == 14
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 8


def test_usage_scan_reads_the_last_usage_object() -> None:
    blob = b'data: {"usage": null}\n\ndata: {"usage": {"prompt_tokens": 3, "completion_tokens": 9}}'
    assert usage_tokens(blob) == (3, 9)
    assert usage_tokens(b'data: {"choices": []}') is None


def test_non_streamed_answer_and_model_filled_in(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(model_name="fake-model")
    ans = run_post(gw.url, chat({"tokens": 2}))
    assert ans.status == 200
    assert ans.json()["choices"][0]["message"]["content"] == "t0 t1 "
    assert engine.bodies[-1]["model"] == "fake-model"
    # A model the client names is kept as it is.
    run_post(gw.url, chat({"tokens": 1}, model="other"))
    assert engine.bodies[-1]["model"] == "other"


def test_completions_route_takes_prompt(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    ans = run_post(gw.url, {"prompt": "hi", "fake": {"tokens": 2}}, path="/v1/completions")
    assert ans.status == 200
    assert ans.json()["choices"][0]["text"] == "t0 t1 "


def test_request_id_is_kept_or_generated(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway()
    ans = run_post(gw.url, chat(), headers={"X-Request-Id": "abc-123"})
    assert ans.headers["X-Request-Id"] == "abc-123"
    assert engine.headers[-1]["X-Request-Id"] == "abc-123"
    generated = run_post(gw.url, chat()).headers["X-Request-Id"]
    assert generated
    assert generated != "abc-123"
    assert run_post(gw.url, chat()).headers["X-Request-Id"] != generated


def test_upstream_error_status_and_body_pass_through(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    # 5xx are the engine's failures (4xx, the client's, are in test_hostile.py).
    ans = run_post(gw.url, chat({"status": 502}, stream=True))
    assert ans.status == 502
    assert ans.json()["error"]["message"] == "fake failure"
    assert run_post(gw.url, chat({"status": 500})).status == 500
    assert gw.metric("llmctl_gateway_requests_total", reason="upstream_error") == 2
    assert gw.metric("llmctl_gateway_upstream_errors_total", kind="status") == 2
    gw.wait_idle()


def test_engine_unreachable_is_503_engine_unavailable(
    make_gateway: MakeGateway, refused_url: str
) -> None:
    gw = make_gateway(upstream_url=refused_url)
    ans = run_post(gw.url, chat())
    assert ans.status == 503
    assert ans.error_code == "engine_unavailable"
    assert int(ans.headers["Retry-After"]) >= 1
    # The only engine is tried even when its probe failed (a probe can be wrong): the refused
    # connection is the answer.
    assert gw.metric("llmctl_gateway_upstream_errors_total", kind="connect") == 1
    gw.wait_idle()


def test_deadline_before_first_byte_is_504(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway(request_timeout_s=0.5)
    start = time.monotonic()
    ans = run_post(gw.url, chat({"delay": 30}))
    assert time.monotonic() - start < 5
    assert ans.status == 504
    assert ans.error_code == "deadline"
    assert "Retry-After" in ans.headers
    gw.wait_idle()
    eventually(lambda: engine.aborted == 1, timeout=2.0)


def test_deadline_mid_stream_ends_with_error_event(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(request_timeout_s=0.6)
    ans = run_post(gw.url, chat({"tokens": 5, "stall_after": 2}, stream=True))
    assert ans.status == 200
    assert ans.events[-1] == b"data: [DONE]"
    error = json.loads(ans.events[-2][len(b"data: ") :])
    assert error["error"]["code"] == "deadline"
    assert gw.metric("llmctl_gateway_requests_total", reason="deadline") == 1
    gw.wait_idle()
    eventually(lambda: engine.aborted == 1, timeout=2.0)


def test_mid_stream_drop_ends_with_error_event_and_counts_as_error(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway()
    for fault in ({"drop_after": 2}, {"no_done": True}):
        ans = run_post(gw.url, chat({"tokens": 4, **fault}, stream=True))
        assert ans.status == 200
        assert ans.events[-1] == b"data: [DONE]"
        assert json.loads(ans.events[-2][len(b"data: ") :])["error"]["code"] == "upstream_error"
    assert gw.metric("llmctl_gateway_requests_total", reason="upstream_error") == 2
    assert gw.metric("llmctl_gateway_upstream_errors_total", kind="stream") == 2
    assert gw.metric("llmctl_gateway_requests_total", reason="ok") == 0
    gw.wait_idle()


def test_requests_share_one_upstream_connection_pool(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(health_interval_s=60)
    # The first probe runs at start; once it has answered, none races the requests for a connection.
    health_saying(gw.url, "ready")
    for i in range(10):
        assert run_post(gw.url, chat({"tokens": 2}, stream=i % 2 == 0)).status == 200
    # Sequential requests from fresh clients reuse the gateway's kept-alive engine connection.
    assert len(engine.connections) == 1, engine.connections


def test_deadline_counts_from_admission_not_arrival(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=1, request_timeout_s=1.0)
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.7}), chat({"delay": 0.7})]))
    # The second waited ~0.7 s in the queue and then needed 0.7 s: 1.4 s after arrival, but only
    # 0.7 s after admission, so it is within its deadline.
    assert [a.status for a in answers] == [200, 200]
    assert max(float(a.headers["X-Queue-Wait-Ms"]) for a in answers) > 500


def test_a_json_answer_to_a_stream_request_is_passed_through_whole(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway()
    ans = run_post(gw.url, chat({"tokens": 2, "json_for_stream": True}, stream=True))
    assert ans.status == 200
    assert ans.headers["Content-Type"].startswith("application/json")
    assert ans.json()["usage"]["completion_tokens"] == 2


def test_models_is_proxied(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    resp = httpx.get(gw.url + "/v1/models")
    assert resp.status_code == 200
    assert resp.json()["data"][0]["id"] == "fake-model"


def test_official_openai_client_streams_and_completes(make_gateway: MakeGateway) -> None:
    from openai import OpenAI

    gw = make_gateway()
    client = OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    try:
        full = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert full.choices[0].message.content == "t0 t1 t2 "
        parts = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in parts if chunk.choices)
        assert text == "t0 t1 t2 "
    finally:
        client.close()
