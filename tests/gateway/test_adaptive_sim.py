"""The adaptive limit against the simulator, one test per kind of change under a steady load.

A simulated H100 (`h100-llama3.1-8b`, --time-scale 0.5) behind an adaptive gateway (ITL target
14 ms, TTFT 1 s, simulated), driven by `llmctl bench` in a closed loop with more clients than the
limit. The limit first settles; then the simulator changes (decode 2x slower, prompts 3x longer,
a KV cache too small for the batch) or the clients double, and the limit must follow: down, at
once, for the first three, and back under its SLO; not up for the burst, whose excess waits.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import Served, free_port, llmctl_server, sim_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TIME_SCALE = 0.5
ADMIN = "adaptive-sim-admin"
ITL_S, TTFT_S = 0.014, 1.0  # simulated seconds


def wall(simulated_s: float) -> float:
    return simulated_s / TIME_SCALE


@dataclass
class Rig:
    sim: Served
    gateway: str
    bench: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def limits(self) -> dict[str, object]:
        resp = httpx.get(
            f"{self.gateway}/admin/limits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        )
        return dict(resp.json())

    def limit(self) -> int:
        value = self.limits()["max_active"]
        assert isinstance(value, int)
        return value

    def set_limits(self, **changes: float) -> None:
        resp = httpx.put(
            f"{self.gateway}/admin/limits",
            json=changes,
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=5,
        )
        resp.raise_for_status()

    def change(self, **conditions: float) -> None:
        httpx.put(f"{self.sim.url}/sim/conditions", json=conditions, timeout=5).raise_for_status()

    def load(self, clients: int, input_len: int = 256) -> None:
        argv = [
            sys.executable, "-m", "llmctl", "bench", "--target", self.gateway, "--endpoint",
            "completions", "--concurrency", str(clients), "--duration", "600", "--warmup", "0",
            "--input-len", str(input_len), "--output-len", "128", "--timeout", "600",
        ]  # fmt: skip
        self.bench.append(
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    def settle(self, seconds: float) -> list[int]:
        """The limit every 0.25 s for `seconds` simulated seconds."""
        seen = []
        end = time.monotonic() + wall(seconds)
        while time.monotonic() < end:
            seen.append(self.limit())
            time.sleep(0.25)
        return seen


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    key = tmp_path / "admin.key"
    key.write_text(ADMIN)
    # A 4k context window, so a scenario may shrink the cache to a tenth (never below one
    # request of the window).
    flags = ["--profile", "h100-llama3.1-8b", "--time-scale", str(TIME_SCALE)]
    with sim_server(tmp_path / "sim.log", *flags, "--max-model-len", "4096") as sim:
        url = f"http://127.0.0.1:{free_port()}"
        args = [
            "gateway", "serve", "--upstream", sim.url, "--port", url.rsplit(":", 1)[1],
            "--admin-key-file", str(key), "--limit-mode", "adaptive", "--max-active", "8",
            "--adaptive-min", "2", "--adaptive-max", "96",
            "--adaptive-ttft", str(wall(TTFT_S)), "--adaptive-itl", str(wall(ITL_S)),
            "--adaptive-interval", str(wall(1.0)), "--poll-interval", str(wall(0.5)),
            "--queue-max", "1024", "--queue-timeout", "600", "--health-interval", "0.5",
        ]  # fmt: skip
        with llmctl_server(args, ready_url=f"{url}/health", log=tmp_path / "gateway.log"):
            rig = Rig(sim, url)
            try:
                yield rig
            finally:
                for proc in rig.bench:
                    proc.kill()
                    proc.wait()


def _settled(rig: Rig, band: float = 0.15, seconds: float = 30) -> float:
    """Let the limit find its level under the load; its mean over the last few seconds."""
    seen = rig.settle(seconds)
    tail = seen[len(seen) * 2 // 3 :]
    mean = statistics.fmean(tail)
    assert mean > 8, seen  # it grew from its start
    assert max(tail) - min(tail) <= max(2, band * mean), seen  # and holds still
    return mean


def _back_under_the_slo(rig: Rig, seconds: float) -> None:
    """Within `seconds` simulated, the limit's last decision says the SLO holds again."""
    deadline = time.monotonic() + wall(seconds)
    last: object = None
    while time.monotonic() < deadline:
        last = rig.limits().get("adaptive_last")
        reason = str(last.get("reason", "")) if isinstance(last, dict) else ""
        if "<" in reason or "SLO holds" in reason or "near the SLO" in reason:
            return
        time.sleep(0.25)
    raise AssertionError(f"the SLO did not hold again within {seconds} s: {last}")


def test_decode_twice_as_slow_lowers_the_limit(rig: Rig) -> None:
    rig.load(64)
    before = _settled(rig)
    rig.change(slowdown=2.0)
    after = rig.settle(15)
    assert statistics.fmean(after[-8:]) < 0.7 * before, (before, after)
    _back_under_the_slo(rig, 15)


def test_prompts_three_times_longer_lower_the_limit(rig: Rig) -> None:
    rig.load(64)
    before = _settled(rig)
    rig.change(prompt_scale=3.0)
    after = rig.settle(20)
    assert statistics.fmean(after[-8:]) < 0.9 * before, (before, after)
    _back_under_the_slo(rig, 15)


def test_a_cache_too_small_for_the_batch_lowers_the_limit(rig: Rig) -> None:
    # A looser ITL target, so that the cache, not latency, is what binds after the change.
    # Long requests (each ~15 s of wall time here) report their latencies late: start near the
    # level and give the limit longer to find it.
    rig.set_limits(adaptive_itl_s=wall(0.040), max_active=16)
    rig.load(64, input_len=2800)
    # ~2.9k-token prompts at a limit near 13: each interval's TTFT p95 comes from a handful of
    # requests whose prefills collide or not, so the level wanders more than with short prompts.
    before = _settled(rig, band=0.35, seconds=45)
    # A twentieth of the cache holds ~23k tokens: about 8 of these ~2.9k-token requests.
    rig.change(kv_fraction=0.05)
    after = rig.settle(20)
    assert statistics.fmean(after[-8:]) < 0.9 * before, (before, after)
    assert statistics.fmean(after[-8:]) <= 11, (before, after)


def test_a_burst_of_clients_does_not_raise_the_limit(rig: Rig) -> None:
    rig.load(64)
    before = _settled(rig)
    rig.load(64)  # twice the clients: the excess waits at the gateway
    after = rig.settle(15)
    assert max(after) <= before * 1.15 + 1, (before, after)
    _back_under_the_slo(rig, 10)
