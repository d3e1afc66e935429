"""The gateway's log, from a real `llmctl gateway serve` process: a line per completion request,
a line per limit change naming who made it, text or JSON lines, nothing wrapped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.gateway.upstream import MODEL, FakeEngine
from tests.support import free_port, llmctl_server

ADMIN = "log-test-admin"


def _serve(engine: FakeEngine, log: Path, *flags: str) -> tuple[str, list[str]]:
    """Run the gateway, make the requests every test here reads about, stop it; its URL and the
    lines it logged."""
    port = free_port()
    args = ["gateway", "serve", "--upstream", engine.url, "--model", MODEL, "--port", str(port)]
    args += ["--max-active", "1", "--health-interval", "0.1", *flags]
    env = {k: v for k, v in os.environ.items() if k not in ("MAX_ACTIVE", "COLUMNS")}
    env["LLMCTL_ADMIN_KEY"] = ADMIN
    url = f"http://127.0.0.1:{port}"
    with (
        llmctl_server(args, ready_url=f"{url}/health", log=log, env=env) as server,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        whole = {"messages": [{"role": "user", "content": "hi"}], "fake": {"tokens": 4}}
        assert client.post(
            "/v1/chat/completions", json=whole, headers={"X-Request-Id": "req-whole"}
        ).is_success
        stream = {
            "prompt": "hi",
            "stream": True,
            "stream_options": {"include_usage": True},
            "fake": {"tokens": 5},
        }
        answer = client.post("/v1/completions", json=stream, headers={"X-Request-Id": "req-stream"})
        assert answer.is_success
        # Chat's role frame alone first, the text 50 ms later, on a kept-alive engine connection.
        chat = {**whole, "stream": True, "fake": {"tokens": 3, "early_role": 0.05}}
        answer = client.post(
            "/v1/chat/completions", json=chat, headers={"X-Request-Id": "req-chat"}
        )
        assert answer.is_success
        bad = client.post("/v1/chat/completions", json={"messages": "no"})
        assert bad.status_code == 400
        admin = {"Authorization": f"Bearer {ADMIN}"}
        tuned = client.put(
            "/admin/limits", json={"max_active": 3}, headers={**admin, "X-Llmctl-Source": "tune"}
        )
        assert tuned.is_success
        assert client.put("/admin/limits", json={"queue_max": 9}, headers=admin).is_success
        # A caller cannot pass itself off as the adaptive loop.
        forged = {**admin, "X-Llmctl-Source": "adaptive"}
        assert client.put("/admin/limits", json={"max_active": 2}, headers=forged).is_success
        server.stop()  # SIGTERM: the buffered access lines are written on the way out
        return url, server.output().splitlines()


def test_text_log_has_a_line_per_request_and_per_limit_change(
    engine: FakeEngine, tmp_path: Path
) -> None:
    url, lines = _serve(engine, tmp_path / "gateway.log")
    access = [line for line in lines if "llmctl.gateway.access:" in line]
    assert len(access) == 4, "\n".join(lines)
    whole = next(line for line in access if "request_id=req-whole" in line)
    for field in ("route=/v1/chat/completions", "status=200", "reason=ok", "prompt_tokens="):
        assert field in whole, whole
    fields = dict(pair.split("=", 1) for pair in whole.split(": ", 1)[1].split())
    for timing in ("queue_wait_ms", "ttft_ms", "duration_ms"):
        assert float(fields[timing]) >= 0, whole
    assert float(fields["ttft_ms"]) <= float(fields["duration_ms"])
    assert fields["completion_tokens"] == "4"
    assert fields["engine"] == engine.url.removeprefix("http://")
    streamed = dict(
        pair.split("=", 1)
        for pair in next(line for line in access if "req-stream" in line).split(": ", 1)[1].split()
    )
    assert streamed["route"] == "/v1/completions"
    assert float(streamed["ttft_ms"]) <= float(streamed["duration_ms"])
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == ("7", "5")
    chat = dict(
        pair.split("=", 1)
        for pair in next(line for line in access if "req-chat" in line).split(": ", 1)[1].split()
    )
    assert 50 <= float(chat["ttft_ms"]) <= float(chat["duration_ms"]), chat
    refused = next(line for line in access if "status=400" in line)
    assert "reason=bad_request" in refused
    assert "engine=- queue_wait_ms=- ttft_ms=-" in refused  # it never got that far

    limits = [line for line in lines if "llmctl.gateway.limits:" in line]
    assert "limits at start-up: max_active 1," in limits[0]
    assert limits[1].endswith("limits changed by tune: max_active 1 -> 3")
    assert limits[2].endswith("limits changed by admin: queue_max 64 -> 9")
    assert limits[3].endswith("limits changed by admin: max_active 3 -> 2")
    # One line each, however long: nothing is wrapped to a terminal's width.
    banner = next(line for line in lines if "gateway on " in line)
    assert f"gateway on {url}" in banner
    assert "least_loaded)" in banner
    assert not [line for line in lines if line[:1].isspace()], "a wrapped line"


@pytest.mark.slow
def test_json_log_is_one_object_a_line(engine: FakeEngine, tmp_path: Path) -> None:
    _, lines = _serve(engine, tmp_path / "gateway.log", "--log-format", "json")
    records = [json.loads(line) for line in lines if line.strip()]
    access = [r for r in records if r["logger"] == "llmctl.gateway.access"]
    assert len(access) == 4
    whole = next(r for r in access if r["request_id"] == "req-whole")
    assert (whole["status"], whole["reason"], whole["completion_tokens"]) == (200, "ok", 4)
    assert whole["ttft_ms"] <= whole["duration_ms"]
    assert whole["time"].endswith("Z")
    changes = [r for r in records if r.get("event") == "limits"]
    assert [c["source"] for c in changes] == ["start-up", "tune", "admin", "admin"]
    assert changes[1]["changes"] == {"max_active": [1, 3]}
    assert changes[0]["limits"]["max_active"] == 1
    assert any("gateway on" in r["message"] for r in records)


def test_access_log_can_be_turned_off(engine: FakeEngine, tmp_path: Path) -> None:
    _, lines = _serve(engine, tmp_path / "gateway.log", "--no-access-log")
    assert not [line for line in lines if "llmctl.gateway.access" in line]
    assert [line for line in lines if "limits changed by tune" in line]


def test_the_fast_text_line_says_what_the_fields_say() -> None:
    """The access line is written out by hand for speed; it must stay `logfmt(access_fields)`."""
    import asyncio
    import io

    from llmctl.gateway.accesslog import AccessLog, access_fields, logfmt
    from llmctl.gateway.metrics import Outcome

    done = Outcome()
    done.set(200, "ok")
    done.request_id, done.queue_wait_s, done.ttft_s, done.usage = "r-1", 0.00042, 0.13518, (7, 9)
    done.engine = "10.0.0.2:8000"
    refused = Outcome()
    refused.set(429, "queue_full")
    refused.request_id, refused.queue_wait_s, refused.tenant, refused.class_name = (
        "r-2",
        0,
        "t",
        "c",
    )
    crashed = Outcome()  # a bug's exception: never set

    async def lines() -> list[str]:
        access = AccessLog("text", io.StringIO())
        for outcome in (done, refused, crashed):
            access.request("/v1/completions", outcome, 0.25)
        return [line.rstrip("\n") for line in access._pending]

    for outcome, line in zip((done, refused, crashed), asyncio.run(lines()), strict=True):
        fields = access_fields("/v1/completions", outcome, 0.25)
        expected = logfmt(fields)
        assert line.split(": ", 1)[1] == expected
    first = logfmt(access_fields("/v1/completions", done, 0.25))
    assert "engine=10.0.0.2:8000 queue_wait_ms=0.4 ttft_ms=135.2 duration_ms=250.0" in first
