"""What `llmctl bench` and `bench compare` print, over the simulator behind two real gateways with
different limits: every number whole, every header explained, the limits recorded and compared."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmctl.bench.catalog import BY_FIELD, fmt
from llmctl.bench.report import BenchReport, TargetLimits, load_report
from llmctl.cli import main
from tests.bench.test_live import assert_whole
from tests.support import ServerProcess, free_port, wait_http


@dataclass
class Run:
    out: str
    path: Path
    report: BenchReport


@dataclass
class Runs:
    a: Run
    b: Run


def _main(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Run A through a gateway with MAX_ACTIVE 1 (conc 3 queues), run B through one with 4."""
    tmp = tmp_path_factory.mktemp("bench-output")
    sim, gw_a, gw_b = free_port(), free_port(), free_port()
    engine = f"http://127.0.0.1:{sim}"
    gateway = ["gateway", "serve", "--upstream", engine, "--queue-max", "8", "--queue-timeout", "7"]
    commands = {
        sim: ["sim", "serve", "--port", str(sim)],
        gw_a: [*gateway, "--port", str(gw_a), "--max-active", "1"],
        gw_b: [*gateway, "--port", str(gw_b), "--max-active", "4"],
    }
    with contextlib.ExitStack() as stack:
        # Started together, then awaited: each takes seconds to import on a busy machine.
        for port, args in commands.items():
            server = ServerProcess([sys.executable, "-m", "llmctl", *args], tmp / f"{port}.log")
            stack.callback(server.stop)
        for port in commands:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        done = []
        for name, port in (("a", gw_a), ("b", gw_b)):
            path = tmp / f"{name}.json"
            code, out = _main(
                "bench", "--target", f"http://127.0.0.1:{port}", "--metrics-url",
                f"{engine}/metrics", "--concurrency", "1,3", "--duration", "1", "--input-len",
                "32", "--output-len", "16", "--slo", "ttft=1s,itl=100ms", "--label", name,
                "--metadata", "gpu=none", "--metadata", f"run = {name}", "--verbose",
                "--json", str(path),
            )  # fmt: skip
            assert code == 0, out
            done.append(Run(out, path, load_report(path)))
    return Runs(*done)


@pytest.mark.slow
def test_a_run_prints_every_number_whole_and_records_the_limits(runs: Runs) -> None:
    run = runs.a
    report = run.report
    assert report.label == "a"
    assert report.metadata == {"gpu": "none", "run": "a"}
    assert report.limits == TargetLimits(max_active=1, queue_max=8, queue_timeout_s=7.0)
    assert "MAX_ACTIVE 1, queue max 8, queue timeout 7s" in run.out
    assert "goodput SLO: ttft=1s,itl=100ms" in run.out
    # Piped: no live display, plain progress lines, and nothing cut to 80 columns.
    assert "[1/2] conc 1 started" in run.out
    assert re.search(r"done conc 3 in [\d.]+s: \d+ ok, ", run.out)
    assert "…" not in run.out
    assert max(len(line) for line in run.out.splitlines()) > 80
    assert_whole(run.out, report)
    # The legend explains the compact headers: each once.
    assert run.out.count("lag p99  ") == 1
    assert "most requests in flight" in run.out
    queued = report.levels[1]
    assert queued.server is not None
    # conc 3 against MAX_ACTIVE 1: two wait at the gateway nearly all the time, so any sample
    # taken inside the level (not only at its edges) sees it. (How many there are depends on the
    # CPU the sampler gets: ~10 a second on an idle machine, as few as the edges on a busy one.)
    assert queued.server.samples >= 2
    if queued.server.samples > 2:
        assert queued.server.peak_gateway_queue_depth == 2
        assert queued.server.peak_num_requests_running == 1
    # The engine serves one at a time, busy nearly all of the level (Little's law from histograms).
    running = queued.server.mean_num_requests_running
    assert running is not None
    assert 0.5 < running <= 1.05
    assert queued.max_concurrent_requests == 3


@pytest.mark.slow
def test_compare_table_names_what_changed(runs: Runs) -> None:
    code, out = _main("bench", "compare", str(runs.a.path), str(runs.b.path))
    assert code == 0
    assert "a (A) vs b (B)" in out
    assert re.search(r"MAX_ACTIVE\s+1\s+->\s+4", out)
    assert re.search(r"metadata run\s+a\s+->\s+b", out)
    assert "queue max" not in out  # the same on both sides
    ttft = [line for line in out.splitlines() if "P99 TTFT (ms)" in line]
    assert len(ttft) == 2  # grouped by level: conc 1, conc 3
    # conc 3 no longer queues behind one slot: its typical TTFT falls (the median: a p99 of a
    # one-second level is a handful of requests, which one stall of a busy machine can own)
    median = [line for line in out.splitlines() if "Median TTFT (ms)" in line]
    assert len(median) == 2
    assert "better" in median[1]


@pytest.mark.slow
def test_compare_formats_carry_the_same_numbers(runs: Runs) -> None:
    paths = (str(runs.a.path), str(runs.b.path))
    code, text = _main("bench", "compare", *paths, "--format", "json")
    assert code == 0
    data = json.loads(text)
    assert {"name": "MAX_ACTIVE", "a": "1", "b": "4"} in data["settings"]
    assert [level["level"] for level in data["levels"]] == ["conc 1", "conc 3"]
    rows = [(lv["level"], m) for lv in data["levels"] for m in lv["metrics"]]
    _, md = _main("bench", "compare", *paths, "--format", "md")
    _, table = _main("bench", "compare", *paths)
    _, raw = _main("bench", "compare", *paths, "--format", "csv")
    by_key = {(r["level"], r["metric"]): r for r in csv.DictReader(io.StringIO(raw))}
    assert len(by_key) == len(rows)
    for level, metric in rows:
        digits = BY_FIELD[metric["metric"]].digits
        cells = [fmt(metric["a"], digits), fmt(metric["b"], digits)]
        line = f"| {metric['label']} | {cells[0]} | {cells[1]} |"
        assert line in md, line
        assert all(cell in table for cell in cells)
        row = by_key[(level, metric["metric"])]
        assert float(row["a"] or "nan") == pytest.approx(metric["a"], nan_ok=True)
        assert float(row["b"] or "nan") == pytest.approx(metric["b"], nan_ok=True)
        assert row["verdict"] == {True: "better", False: "worse", None: ""}[metric["better"]]
    assert "| MAX_ACTIVE | 1 | 4 |" in md
    for plain in (md, raw, text):
        assert "\x1b" not in plain
        assert "[green]" not in plain


def test_compare_refuses_an_unknown_format(tmp_path: Path) -> None:
    code, _ = _main("bench", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "x")
    assert code == 2


def test_metadata_must_be_key_value() -> None:
    code, _ = _main("bench", "--target", "http://127.0.0.1:9", "--concurrency", "1",
                    "--metadata", "novalue")  # fmt: skip
    assert code == 2
