"""Each fault setting does what it says, over real sockets."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.sim.conftest import StartSim
from tests.sim.metrics_text import scrape
from tests.support import wait_http

STREAM = {"prompt": "tell me", "max_tokens": 50, "ignore_eos": True, "stream": True}


def test_startup_delay_reports_loading_then_ready(start_sim: StartSim) -> None:
    started = time.monotonic()
    with start_sim("--startup-delay", "2", ready_status=(503,)) as sim:
        health = httpx.get(f"{sim.url}/health")
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "loading"
        assert httpx.get(f"{sim.url}/v1/models").status_code == 503
        wait_http(f"{sim.url}/health", timeout=15)
        assert time.monotonic() - started >= 1.5
        assert httpx.get(f"{sim.url}/v1/models").json()["data"][0]["id"] == "llmctl-sim"


def test_error_rate_one_answers_500_before_any_byte(start_sim: StartSim) -> None:
    with start_sim("--error-rate", "1.0") as sim:
        for stream in (False, True):
            resp = httpx.post(f"{sim.url}/v1/completions", json={**STREAM, "stream": stream})
            assert resp.status_code == 500
            assert resp.json()["error"]["type"] == "server_error"
        assert httpx.get(f"{sim.url}/health").status_code == 200


def _read_stream(url: str, lines: list[str]) -> None:
    with httpx.stream("POST", f"{url}/v1/completions", json=STREAM, timeout=10) as resp:
        assert resp.status_code == 200
        lines.extend(resp.iter_lines())


def test_drop_rate_one_cuts_the_stream_without_done(start_sim: StartSim) -> None:
    with start_sim("--drop-rate", "1.0", "--seed", "3") as sim:
        for _ in range(3):
            lines: list[str] = []
            with pytest.raises(httpx.RemoteProtocolError):
                _read_stream(sim.url, lines)
            data = [line for line in lines if line.startswith("data: ")]
            assert 1 <= len(data) < 50
            assert "data: [DONE]" not in data
        deadline = time.monotonic() + 3
        while scrape(sim.url, "vllm:num_requests_running") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scrape(sim.url, "vllm:kv_cache_usage_perc") == 0


def _read_bytes(url: str, received: list[bytes]) -> None:
    timeout = httpx.Timeout(5, read=1.0)
    with httpx.stream("POST", f"{url}/v1/completions", json=STREAM, timeout=timeout) as resp:
        received.extend(resp.iter_bytes())


def test_stall_rate_one_sends_nothing_until_the_client_gives_up(start_sim: StartSim) -> None:
    with start_sim("--stall-rate", "1.0") as sim:
        received: list[bytes] = []
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            _read_bytes(sim.url, received)
        assert received == []
        assert time.monotonic() - started >= 0.9
        assert httpx.get(f"{sim.url}/health").status_code == 200
        assert scrape(sim.url, "vllm:num_requests_running") == 0


def test_a_stalled_request_does_not_hold_up_the_others(start_sim: StartSim) -> None:
    # Seed 5 at stall-rate 0.5: the first request stalls, the second does not.
    with start_sim("--stall-rate", "0.5", "--seed", "5") as sim:
        received: list[bytes] = []
        stalled: list[BaseException] = []

        def stall() -> None:
            try:
                _read_bytes(sim.url, received)
            except httpx.ReadTimeout as exc:
                stalled.append(exc)

        waiting = threading.Thread(target=stall)
        waiting.start()
        time.sleep(0.3)  # the stalled request draws its fault first
        resp = httpx.post(f"{sim.url}/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert resp.status_code == 200
        assert waiting.is_alive()  # still stalled while the other was served
        waiting.join(5)
        assert stalled
        assert received == []


def test_fault_rates_are_seeded_and_partial(start_sim: StartSim) -> None:
    body = {"prompt": "x", "max_tokens": 2}

    def outcomes() -> list[int]:
        with start_sim("--error-rate", "0.5", "--seed", "7") as sim:
            return [
                httpx.post(f"{sim.url}/v1/completions", json=body).status_code for _ in range(20)
            ]

    first = outcomes()
    assert set(first) == {200, 500}
    assert outcomes() == first
