"""Adaptive mode in front of real vLLM: it converges to a limit and keeps the SLO for a steady load."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, llmctl_server
from tests.vllm.conftest import MODEL, VllmStack

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(600)]

ADMIN = "vllm-adaptive-admin"
SLO_TTFT_S = 0.5
CLIENTS = 12
MEASURE_S = 12


def test_adaptive_mode_converges_and_keeps_the_slo(vllm_stack: VllmStack, tmp_path: Path) -> None:
    key = tmp_path / "admin.key"
    key.write_text(ADMIN)
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        "gateway", "serve", "--upstream", vllm_stack.engine_url, "--model", MODEL,
        "--port", url.rsplit(":", 1)[1], "--admin-key-file", str(key), "--health-interval", "0.5",
        "--limit-mode", "adaptive", "--max-active", "1", "--adaptive-min", "1",
        "--adaptive-max", str(CLIENTS), "--adaptive-ttft", str(SLO_TTFT_S),
        "--adaptive-interval", "0.5", "--poll-interval", "0.25",
        "--queue-max", "256", "--queue-timeout", "120",
    ]  # fmt: skip
    samples: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def sample() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5) as client:
            while not stop.is_set():
                body = client.get(f"{url}/admin/limits").json()
                last = body.get("adaptive_last") or {}
                samples.append((time.monotonic(), body["max_active"], last.get("reason", "")))
                stop.wait(0.25)

    out = tmp_path / "bench.json"
    with llmctl_server(args, ready_url=f"{url}/health", log=tmp_path / "gateway.log"):
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            # A steady closed loop: the warm-up is where the limit finds its level.
            bench = [
                sys.executable, "-m", "llmctl", "bench", "--target", url,
                "--concurrency", str(CLIENTS), "--warmup", "15", "--duration", str(MEASURE_S),
                "--input-len", "64", "--output-len", "32", "--json", str(out),
            ]  # fmt: skip
            done = subprocess.run(bench, capture_output=True, text=True, timeout=300, check=False)
            ended = time.monotonic()
        finally:
            stop.set()
            sampler.join(5)
    assert done.returncode == 0, done.stdout + done.stderr
    [level] = json.loads(out.read_text())["levels"]
    assert level["failed"] == 0
    limits = [limit for _, limit, _ in samples]
    assert max(limits) > 1, samples  # it moved from where it started
    measured = [limit for at, limit, _ in samples if at >= ended - MEASURE_S]
    mean = statistics.fmean(measured)
    assert all(abs(v - mean) <= 0.25 * mean for v in measured), samples  # converged, no swinging
    assert level["p95_admitted_ttft_ms"] <= SLO_TTFT_S * 1000, level
