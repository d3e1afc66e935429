"""Hostile input and engine answers that once gave 500s, lost counts or a dead probe."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.client import chat, health_saying, run_post
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually

CHAT = "/v1/chat/completions"
BAD_AUTH = {"Authorization": b"Bearer \xff\xfe"}
DEEP = b"[" * 200_000


@pytest.mark.parametrize("keys", [["k1"], []])
def test_non_utf8_authorization_is_401(
    make_gateway: MakeGateway, engine: FakeEngine, keys: list[str]
) -> None:
    gw = make_gateway(api_keys=keys, admin_key="adm")
    body = {"messages": [{"role": "user", "content": "x"}]}
    for method, path in (("POST", CHAT), ("GET", "/v1/models"), ("GET", "/admin/limits")):
        resp = httpx.request(
            method, gw.url + path, json=body if method == "POST" else None, headers=BAD_AUTH
        )
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["error"]["type"] == "authentication_error"
    assert engine.started == 0
    assert gw.metric("llmctl_gateway_requests_total", reason="unauthorized") == 1


@pytest.mark.parametrize("path", [CHAT, "/v1/completions"])
def test_deeply_nested_body_is_400(
    make_gateway: MakeGateway, engine: FakeEngine, path: str
) -> None:
    gw = make_gateway()
    resp = httpx.post(gw.url + path, content=DEEP, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert engine.started == 0
    assert gw.metric("llmctl_gateway_requests_total", reason="bad_request", status="400") == 1


def test_deeply_nested_admin_body_is_400(make_gateway: MakeGateway) -> None:
    gw = make_gateway(admin_key="adm")
    resp = httpx.put(
        gw.url + "/admin/limits", content=DEEP, headers={"Authorization": "Bearer adm"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad_request"


def test_probe_survives_a_deeply_nested_models_answer(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    engine.models_body = DEEP
    gw = make_gateway(health_interval_s=0.05)
    # The verdict on the deep answer, not the 503 from before the first probe.
    assert health_saying(gw.url, "does not list").status_code == 503
    engine.models_body = None
    eventually(lambda: httpx.get(gw.url + "/health").status_code == 200, timeout=3.0)


def test_models_forwards_the_clients_key_when_gateway_keys_are_off(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway()
    resp = httpx.get(gw.url + "/v1/models", headers={"Authorization": "Bearer engine-key"})
    assert resp.status_code == 200
    assert "Bearer engine-key" in engine.models_auth


@pytest.mark.parametrize("status", [429, 503])
def test_upstream_429_and_503_carry_retry_after(make_gateway: MakeGateway, status: int) -> None:
    gw = make_gateway()
    own = run_post(gw.url, chat({"status": status}))
    assert own.status == status
    assert int(own.headers["Retry-After"]) >= 1
    given = run_post(gw.url, chat({"status": status, "retry_after": 17}))
    assert given.headers["Retry-After"] == "17"
    gw.wait_idle()


def test_upstream_4xx_is_the_clients_mistake(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    for status in (400, 404):
        for stream in (False, True):
            ans = run_post(gw.url, chat({"status": status}, stream=stream))
            assert ans.status == status
            assert ans.json()["error"]["message"] == "fake failure"
    assert gw.metric("llmctl_gateway_requests_total", reason="bad_request") == 4
    assert gw.metric("llmctl_gateway_requests_total", reason="upstream_error") == 0
    assert gw.metric("llmctl_gateway_upstream_errors_total") == 0
    gw.wait_idle()


@pytest.mark.parametrize(("path", "tokens"), [(CHAT, 3), ("/v1/completions", 5)])
def test_streamed_tokens_without_usage_count_only_text_frames(
    make_gateway: MakeGateway, path: str, tokens: int
) -> None:
    gw = make_gateway()
    body = chat({"tokens": tokens}, stream=True)
    if path != CHAT:
        body = {"prompt": "hi", "stream": True, "fake": {"tokens": tokens}}
    ans = run_post(gw.url, body, path)
    assert ans.status == 200
    assert ans.events[-1] == b"data: [DONE]"
    assert gw.metric("llmctl_gateway_completion_tokens_total") == tokens


def test_ttft_is_the_first_text_not_the_role_frame(make_gateway: MakeGateway) -> None:
    """The role frame comes at once, the first token 0.3 s later: TTFT must not read ~0."""
    gw = make_gateway()
    ans = run_post(gw.url, chat({"tokens": 2, "early_role": 0.3}, stream=True))
    assert ans.status == 200
    total = gw.metric("llmctl_gateway_time_to_first_token_seconds_sum")
    assert gw.metric("llmctl_gateway_time_to_first_token_seconds_count") == 1
    assert total >= 0.25
