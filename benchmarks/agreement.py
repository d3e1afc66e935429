"""Do `llmctl top` and `llmctl bench` agree? The agreement table for a few load shapes.

    python benchmarks/agreement.py [--shapes test|all] [--json rows.json]

Starts the simulator (`tiny` at --time-scale 0.05: 40 ms steps, so latencies are 100 ms to
seconds and loopback noise is small against them), the gateway and a Prometheus scraping both every
second, all on free loopback ports. For each shape it sets MAX_ACTIVE live, runs a closed-loop
`llmctl bench` (3 s warm-up, 13 s measured) and, inside the measured window, takes `llmctl top
--json` both ways over the same 10 s: from Prometheus, and straight from /metrics (direct mode).
Each row compares the snapshot with the bench's own client-side numbers: TTFT and E2E p50/p95 and the request rate,
as ratios top/bench. After the last shape it checks that, two windows after the load stopped,
rates read 0 and percentiles read "missing". Exit status 1 when any ratio is outside 1 +- --tolerance.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

# Run as `python benchmarks/agreement.py`, so this folder is on sys.path.
from _common import free_port, started

from llmctl.bench.report import BenchReport, LevelReport
from llmctl.core import metrics as m
from llmctl.observe.snapshot import StackSnapshot

ADMIN_KEY = "agreement-admin"
LLMCTL = [sys.executable, "-m", "llmctl"]
WINDOW_S = 10.0
WARMUP_S = 3.0
MEASURE_S = 13.0


@dataclass(frozen=True)
class Shape:
    name: str
    concurrency: int
    max_active: int
    input_len: int
    input_spread: float
    output_len: int
    output_spread: float = 0.0

    @property
    def queues(self) -> bool:
        return self.concurrency > self.max_active


SHAPES = {
    "short, no queue": Shape("short, no queue", 10, 12, 32, 0.0, 16),
    "short, queued": Shape("short, queued", 12, 6, 32, 0.0, 16),
    "mixed, no queue": Shape("mixed, no queue", 12, 14, 512, 0.9, 48, 0.6),
    "mixed, queued": Shape("mixed, queued", 12, 4, 512, 0.9, 48, 0.6),
    "long, queued": Shape("long, queued", 16, 4, 1024, 0.5, 96, 0.5),
}
SETS = {
    "test": ["short, no queue", "short, queued", "mixed, no queue", "mixed, queued"],
    "all": list(SHAPES),
}
# (label, bench LevelReport field in ms, snapshot field in s)
COMPARED = (
    ("TTFT p50", "median_ttft_ms", "ttft_p50_s"),
    ("TTFT p95", "p95_ttft_ms", "ttft_p95_s"),
    ("E2E p50", "median_e2el_ms", "e2e_p50_s"),
    ("E2E p95", "p95_e2el_ms", "e2e_p95_s"),
)


@dataclass
class Row:
    shape: str
    mode: str
    metric: str
    bench: float
    top: float | None

    @property
    def ratio(self) -> float | None:
        return None if self.top is None or not self.bench else self.top / self.bench


def _prometheus_config(gateway: str, engine: str) -> str:
    return (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: {m.JOB_GATEWAY}\n    static_configs: [{{targets: ['{gateway}']}}]\n"
        f"  - job_name: {m.JOB_ENGINE}\n    static_configs: [{{targets: ['{engine}']}}]\n"
    )


def _run_shape(
    shape: Shape, gateway: str, engine: str, prometheus: str, tmp: Path
) -> tuple[LevelReport, StackSnapshot, StackSnapshot]:
    resp = httpx.put(
        f"{gateway}/admin/limits",
        json={"max_active": shape.max_active, "queue_max": 256, "queue_timeout_s": 600},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    resp.raise_for_status()
    out = tmp / "bench.json"
    # `llmctl bench` in a process of its own, as a user runs it next to `top`: sharing this
    # process's GIL with the scrapes below would add client-side delay to its latencies.
    argv = [*LLMCTL, "bench", "--target", gateway, "--concurrency", str(shape.concurrency)]
    argv += ["--warmup", str(WARMUP_S), "--duration", str(MEASURE_S), "--timeout", "120"]
    argv += ["--input-len", str(shape.input_len), "--input-spread", str(shape.input_spread)]
    argv += ["--output-len", str(shape.output_len), "--output-spread", str(shape.output_spread)]
    argv += ["--json", str(out)]
    start = time.monotonic()
    bench = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Both snapshots cover the same 10 s, inside the measured window (warm-up + ~1 s of start-up
    # before it, MEASURE_S of it): `top --json` reading /metrics directly spends its window
    # between two scrapes; the one asking Prometheus starts when that window ends.
    time.sleep(max(0.0, start + WARMUP_S + 1.0 - time.monotonic()))
    window = ["--window", f"{WINDOW_S:g}"]
    direct_snap = _top("--source", "direct", "--gateway", gateway, "--engine", engine, *window)
    prom_snap = _top("--source", "prometheus", "--prometheus", prometheus, *window)
    _, err = bench.communicate(timeout=120)
    if bench.returncode != 0:
        raise SystemExit(f"bench failed: {err.decode()[-2000:]}")
    level = BenchReport.from_json(out.read_text()).levels[0]
    return level, prom_snap, direct_snap


def _top(*args: str) -> StackSnapshot:
    """One `llmctl top --json` snapshot, as a user (or a script) takes it."""
    done = subprocess.run(
        [*LLMCTL, "top", "--json", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"llmctl top failed: {done.stderr[-2000:]}")
    return StackSnapshot.model_validate_json(done.stdout)


def _rows(shape: Shape, level: LevelReport, snaps: dict[str, StackSnapshot]) -> list[Row]:
    rows = []
    for mode, snap in snaps.items():
        for label, bench_field, top_field in COMPARED:
            bench_ms = getattr(level, bench_field)
            top_s = getattr(snap, top_field)
            rows.append(
                Row(shape.name, mode, label, bench_ms, None if top_s is None else top_s * 1000)
            )
        rows.append(Row(shape.name, mode, "req/s", level.request_throughput, snap.ok_per_s))
    return rows


def _idle_check(prometheus: str, gateway: str, engine: str) -> dict[str, object]:
    time.sleep(2 * WINDOW_S)
    window = ["--window", f"{WINDOW_S:g}"]
    prom = _top("--source", "prometheus", "--prometheus", prometheus, *window)
    quiet = _top("--source", "direct", "--gateway", gateway, "--engine", engine, "--window", "2")
    return {
        "prometheus_ok_per_s": prom.ok_per_s,
        "prometheus_ttft_p95_s": prom.ttft_p95_s,
        "direct_ok_per_s": quiet.ok_per_s,
        "direct_e2e_p95_s": quiet.e2e_p95_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=sorted(SETS), default="all")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--json", type=Path, help="Write the rows and the idle check here.")
    args = parser.parse_args()
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        raise SystemExit("needs a `prometheus` binary on PATH (apt-get install prometheus)")
    sim, gw, prom = free_port(), free_port(), free_port()
    engine, gateway, prometheus = (f"http://127.0.0.1:{p}" for p in (sim, gw, prom))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "prometheus.yml").write_text(
            _prometheus_config(f"127.0.0.1:{gw}", f"127.0.0.1:{sim}")
        )
        key = Path(tmp) / "admin.key"
        key.write_text(ADMIN_KEY)
        sim_args = [
            "sim",
            "serve",
            "--port",
            str(sim),
            "--time-scale",
            "0.05",
            "--max-num-seqs",
            "16",
        ]
        gw_args = ["gateway", "serve", "--port", str(gw), "--upstream", engine]
        gw_args += ["--admin-key-file", str(key), "--health-interval", "0.5"]
        prom_args = [
            prometheus_bin,
            f"--config.file={tmp}/prometheus.yml",
            f"--web.listen-address=127.0.0.1:{prom}",
            f"--storage.tsdb.path={tmp}/data",
        ]
        with (
            started([*LLMCTL, *sim_args], f"{engine}/health"),
            started([*LLMCTL, *gw_args], f"{gateway}/health"),
            started(prom_args, f"{prometheus}/-/ready", stderr=subprocess.DEVNULL),
        ):
            time.sleep(3)  # a few scrapes before the first window
            for name in SETS[args.shapes]:
                shape = SHAPES[name]
                level, prom_snap, direct_snap = _run_shape(
                    shape, gateway, engine, prometheus, Path(tmp)
                )
                rows += _rows(shape, level, {"prometheus": prom_snap, "direct": direct_snap})
                print(f"measured {name}", file=sys.stderr)
            idle = _idle_check(prometheus, gateway, engine)
    bad = [r for r in rows if r.ratio is None or abs(r.ratio - 1) > args.tolerance]
    print("| shape | mode | metric | bench | top | top/bench |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        unit = "/s" if r.metric == "req/s" else " ms"
        top = "–" if r.top is None else f"{r.top:.1f}{unit}"
        ratio = "–" if r.ratio is None else f"{r.ratio:.3f}"
        print(f"| {r.shape} | {r.mode} | {r.metric} | {r.bench:.1f}{unit} | {top} | {ratio} |")
    print(f"\nafter the load stopped (2 windows later): {json.dumps(idle)}")
    quiet = idle["prometheus_ok_per_s"] == 0 and idle["direct_ok_per_s"] == 0
    quiet = quiet and idle["prometheus_ttft_p95_s"] is None and idle["direct_e2e_p95_s"] is None
    if args.json is not None:
        payload = {"rows": [{**asdict(r), "ratio": r.ratio} for r in rows], "idle": idle}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    worst = max((abs(r.ratio - 1) for r in rows if r.ratio is not None), default=0.0)
    print(
        f"worst deviation {worst:.1%} (tolerance {args.tolerance:.0%}); idle check {'ok' if quiet else 'FAILED'}"
    )
    return 1 if bad or not quiet else 0


if __name__ == "__main__":
    raise SystemExit(main())
