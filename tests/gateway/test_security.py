"""Input checks and API keys: OpenAI-style 400/401/404/413 bodies, never a 500."""

from __future__ import annotations

import httpx
import pytest

from llmctl.gateway.auth import KeyRing, bearer_token
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, b"not json", None),
        (CHAT, b"[1, 2]", None),
        (CHAT, b'"text"', None),
        (CHAT, b"{}", "messages"),
        (CHAT, b'{"prompt": "hi"}', "messages"),
        (CHAT, b'{"messages": "hi"}', "messages"),
        (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        ("/v1/completions", b'{"messages": []}', "prompt"),
        ("/v1/completions", b'{"prompt": 3}', "prompt"),
        (CHAT, b"\xff\xfe", None),
    ],
)
def test_bad_bodies_are_400_with_openai_error(
    make_gateway: MakeGateway, engine: FakeEngine, path: str, body: bytes, param: str | None
) -> None:
    gw = make_gateway()
    resp = httpx.post(gw.url + path, content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert engine.started == 0
    assert gw.metric("llmctl_gateway_requests_total", reason="bad_request", status="400") == 1


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
def test_non_standard_json_numbers_are_400_and_never_forwarded(
    make_gateway: MakeGateway, engine: FakeEngine, number: bytes
) -> None:
    gw = make_gateway()
    body = b'{"messages": [{"role": "user", "content": "x"}], "temperature": ' + number + b"}"
    resp = httpx.post(gw.url + CHAT, content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "temperature"
    assert "not a JSON number" in error["message"]
    nested = b'{"messages": [{"role": "user", "content": "x", "w": [1, ' + number + b"]}]}"
    resp = httpx.post(gw.url + CHAT, content=nested)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "messages[0].w[1]"
    assert engine.started == 0


def test_missing_model_without_model_name_is_400(make_gateway: MakeGateway) -> None:
    gw = make_gateway(model_name=None)
    resp = httpx.post(gw.url + CHAT, json={"messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "model"


def test_body_over_the_limit_is_413(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway(max_body_bytes=4096)
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    resp = httpx.post(gw.url + CHAT, json=big)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    assert engine.started == 0
    ok = {"messages": [{"role": "user", "content": "x" * 3000}]}
    assert httpx.post(gw.url + CHAT, json=ok).status_code == 200


def test_api_keys_are_required_when_configured(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(api_keys=["k1", "k2"])
    body = {"messages": [{"role": "user", "content": "x"}]}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k1"}):
        resp = httpx.post(gw.url + CHAT, json=body, headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error"
    assert httpx.get(gw.url + "/v1/models").status_code == 401
    assert engine.started == 0
    for key in ("k1", "k2"):
        ok = httpx.post(gw.url + CHAT, json=body, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    # The gateway's key is not passed on to the engine.
    assert "Authorization" not in engine.headers[-1]
    assert gw.metric("llmctl_gateway_requests_total", reason="unauthorized") == 3
    # Operations endpoints stay open for probes and scrapers.
    assert httpx.get(gw.url + "/livez").status_code == 200
    assert httpx.get(gw.url + "/metrics").status_code == 200


def test_unknown_routes_and_methods_get_json_errors(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    assert httpx.get(gw.url + "/nope").json()["error"]["code"] == "not_found"
    resp = httpx.get(gw.url + CHAT)
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_key_ring() -> None:
    from pydantic import SecretStr

    ring = KeyRing([SecretStr("abc"), SecretStr("def")])
    assert ring.allows("Bearer def")
    assert ring.allows("bearer abc")
    assert not ring.allows("Bearer abcd")
    assert not ring.allows(None)
    assert KeyRing([]).allows(None)
    assert bearer_token("Bearer   ") is None
