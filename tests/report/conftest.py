"""Inputs for report tests: a real bench and a real tune run against the simulator behind the
gateway (made once per session), and checked-in schema-1 files written by an earlier llmctl."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tune.conftest import ADMIN_KEY, SIM_FLAGS, run_stack

DATA = Path(__file__).parent / "data"
BENCH_V1 = DATA / "bench-v1.json"  # open-loop levels with 429s, an SLO, server peaks
# Schema 2: label, metadata (machine), the gateway's limits (MAX_ACTIVE 2, queue max 2), closed
# loop 1, 4, 8 with queueing, server series over time (sim behind the gateway, engine sampled too).
BENCH_V2 = DATA / "bench-v2.json"
TUNE_V1 = DATA / "tune-v1.json"  # a search with a failing trial and a recommendation


@dataclass(frozen=True)
class LiveRuns:
    bench: Path
    tune: Path


def llmctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m llmctl ARGS` as a user would run it; fails the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert proc.returncode == 0, f"llmctl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def live_runs(tmp_path_factory: pytest.TempPathFactory) -> LiveRuns:
    """A closed-loop bench that queues and overflows (429s), then a three-trial tune grid."""
    tmp = tmp_path_factory.mktemp("report-runs")
    bench, tune = tmp / "bench.json", tmp / "tune.json"
    with run_stack(tmp, *SIM_FLAGS) as stack:
        # Two slots and two queue places: 4 clients queue, 8 are partly turned away.
        stack.admin.put(max_active=2, queue_mode="queue", queue_max=2)
        llmctl(
            "bench", "--target", stack.gateway, "--metrics-url", f"{stack.engine}/metrics",
            "--concurrency", "1,4,8", "--duration", "0.8", "--warmup", "0.2",
            "--input-len", "32", "--output-len", "32", "--slo", "ttft=100ms,e2e=1s",
            "--json", str(bench),
        )  # fmt: skip
        llmctl(
            "tune", "max-active", "--gateway", stack.gateway, "--admin-key-env", "REPORT_ADMIN",
            "--engine-metrics", f"{stack.engine}/metrics", "--slo", "ttft=60ms,e2e=2s",
            "--grid", "--min", "1", "--max", "3", "--trial-duration", "0.6", "--warmup", "0.2",
            "--input-len", "32", "--output-len", "32", "--json", str(tune),
            env={"REPORT_ADMIN": ADMIN_KEY},
        )  # fmt: skip
    return LiveRuns(bench, tune)
