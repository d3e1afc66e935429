"""A request that arrives at an idle engine waits for a full step before its first token."""

from __future__ import annotations

import time

import httpx

from llmctl.sim.profiles import PROFILES
from tests.sim.conftest import StartSim


def _first_token_s(client: httpx.Client, url: str) -> float:
    body = {"prompt": "hi", "max_tokens": 2, "ignore_eos": True, "stream": True}
    start = time.perf_counter()
    first = None
    with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if first is None and line.startswith("data: {"):
                first = time.perf_counter() - start
    assert first is not None
    return first


def test_first_step_after_a_short_idle_gap_starts_now(start_sim: StartSim) -> None:
    profile = PROFILES["rtx3090-qwen2.5-14b-awq"]
    step = profile.step_seconds(prefill_tokens=1, num_seqs=1)
    with (
        start_sim("--profile", profile.name, "--time-scale", "1") as sim,
        httpx.Client(timeout=10) as client,
    ):
        _first_token_s(client, sim.url)
        samples = []
        for _ in range(5):
            time.sleep(0.01)  # idle for less than one step: the old clock started in the past
            samples.append(_first_token_s(client, sim.url))
    assert min(samples) >= 0.9 * step, (samples, step)
