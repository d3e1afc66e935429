"""`llmctl top` agrees with what `llmctl bench` measured client-side, over the same 10 s.

Runs benchmarks/agreement.py (its docstring says how): a queueing and a non-queueing closed-loop
load, at two request-length mixes, each read by `top` from Prometheus and directly from /metrics.
TTFT and E2E p50/p95 and the request rate must agree within 10 %, and two windows after the load
stops, rates read 0 and percentiles read missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs a prometheus binary")
def test_top_agrees_with_bench_within_10_percent(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "agreement.py", "--shapes", "test", "--json", str(out)],
        cwd=REPO / "benchmarks",
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    assert out.exists(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    shapes = {row["shape"] for row in rows}
    assert len(shapes) == 4
    assert {row["mode"] for row in rows} == {"prometheus", "direct"}
    off = [row for row in rows if row["ratio"] is None or abs(row["ratio"] - 1) > 0.10]
    assert not off, "\n".join(map(str, off))
    idle = result["idle"]
    assert idle["prometheus_ok_per_s"] == 0
    assert idle["direct_ok_per_s"] == 0
    assert idle["prometheus_ttft_p95_s"] is None
    assert idle["direct_e2e_p95_s"] is None
    assert done.returncode == 0, done.stdout[-3000:]
