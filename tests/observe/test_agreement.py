"""benchmarks/agreement.py runs end to end: `llmctl top` read beside `llmctl bench`, every row.

The script (its docstring says how) compares a queueing and a non-queueing closed-loop load, at
two request-length mixes, read by `top` from Prometheus and directly from /metrics. Its target,
within 10 %, is a benchmark number (docs/benchmarks.md), measured on a quiet machine: on a busy one
the client, the scrapes and the windows drift apart by seconds. So this test checks that every row
is there with a number, that nothing is off by a unit (ms for s, per minute for per second: a
factor of 3 or more), and that two windows after the load stops, rates read 0 and percentiles read
missing. (Units and windows are also checked in tests/observe/test_live.py.)
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
def test_the_agreement_table_is_complete_and_in_the_right_units(tmp_path: Path) -> None:
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
    assert len(rows) == len(shapes) * 2 * 5  # 2 modes x (TTFT, E2E p50/p95, req/s)
    off = [row for row in rows if row["ratio"] is None or not 1 / 3 < row["ratio"] < 3]
    assert not off, "\n".join(map(str, off))
    idle = result["idle"]
    assert idle["prometheus_ok_per_s"] == 0
    assert idle["direct_ok_per_s"] == 0
    assert idle["prometheus_ttft_p95_s"] is None
    assert idle["direct_e2e_p95_s"] is None
    # Exit status 1 means some row missed the 10 % target: a benchmark result, not a failure here.
    assert done.returncode in (0, 1), done.stderr[-3000:]
