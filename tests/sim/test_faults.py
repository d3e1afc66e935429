"""Each fault setting does what it says, over real sockets."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.exposition import scrape_value
from tests.sim.conftest import StartSim
from tests.support import eventually, wait_http

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
        metrics = f"{sim.url}/metrics"
        eventually(lambda: scrape_value(metrics, "vllm:num_requests_running") == 0, timeout=3.0)
        assert scrape_value(metrics, "vllm:kv_cache_usage_perc") == 0


def _read_bytes(url: str, received: list[bytes], body: dict[str, object] = STREAM) -> None:
    timeout = httpx.Timeout(5, read=1.0)
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=timeout) as resp:
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
        assert scrape_value(f"{sim.url}/metrics", "vllm:num_requests_running") == 0


def test_a_stalled_request_does_not_hold_up_the_others(start_sim: StartSim) -> None:
    # Seed 5 at stall-rate 0.5: of the first two requests, the first to draw stalls and the
    # second does not. Both are sent at once, so which one draws first does not matter.
    with start_sim("--stall-rate", "0.5", "--seed", "5") as sim:
        ends: list[tuple[str, bytes]] = []

        def request() -> None:
            received: list[bytes] = []
            try:
                _read_bytes(sim.url, received, {"prompt": "x", "max_tokens": 2, "stream": True})
            except httpx.ReadTimeout:
                ends.append(("stalled", b"".join(received)))
            else:
                ends.append(("served", b"".join(received)))

        both = [threading.Thread(target=request) for _ in range(2)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(10)
        # The other was served in full while the stalled one still waited for its first byte.
        assert [end for end, _ in ends] == ["served", "stalled"], ends
        assert b"data: [DONE]" in ends[0][1]
        assert ends[1][1] == b""


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
