"""A request that arrives at an idle engine waits for a full step before its first token."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from llmctl.sim.profiles import PROFILES
from tests.sim.conftest import StartSim

BODIES: dict[str, dict[str, Any]] = {
    "/v1/completions": {"prompt": "hi"},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
}


def _first_event_s(client: httpx.Client, url: str, path: str = "/v1/completions") -> float:
    """Seconds until the first SSE event (for chat that is the role frame, as in vLLM)."""
    body = {**BODIES[path], "max_tokens": 2, "ignore_eos": True, "stream": True}
    start = time.perf_counter()
    first = None
    with client.stream("POST", url + path, json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if first is None and line.startswith("data: {"):
                first = time.perf_counter() - start
    assert first is not None
    return first


@pytest.mark.parametrize("path", list(BODIES))
def test_first_step_after_a_short_idle_gap_starts_now(start_sim: StartSim, path: str) -> None:
    profile = PROFILES["rtx3090-qwen2.5-14b-awq"]
    step = profile.step_seconds(prefill_tokens=1, num_seqs=1)
    with (
        start_sim("--profile", profile.name, "--time-scale", "1") as sim,
        httpx.Client(timeout=10) as client,
    ):
        _first_event_s(client, sim.url, path)
        samples = []
        for _ in range(5):
            time.sleep(0.01)  # idle for less than one step: the old clock started in the past
            samples.append(_first_event_s(client, sim.url, path))
    assert min(samples) >= 0.9 * step, (samples, step)
