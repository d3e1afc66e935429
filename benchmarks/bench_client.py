"""The bench client's own cost: achieved vs ideal token rate against the fake engine, and open-loop lag.

The fake engine streams 64 tokens, the first after 10 ms and then one every 10 ms, so one stream
ideally carries 100 tokens/s and N streams N x 100. Client and engine share the machine's cores;
whatever falls short of the ideal is the client's (and the engine's) CPU cost.

    python benchmarks/bench_client.py                      # 256 and 1024 streams, 500 req/s
    python benchmarks/bench_client.py --streams 256 --duration 5 --rates 500,1000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy

HERE = Path(__file__).resolve().parent
TOKENS = 64
ITL_MS = 10.0


def start_engine(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_engine.py"), "--port", str(port),
         "--ttft-ms", str(ITL_MS), "--itl-ms", str(ITL_MS), "--tokens", str(TOKENS)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("fake engine did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="256,1024")
    parser.add_argument("--rates", default="500")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--port", type=int, default=9300)
    args = parser.parse_args()
    engine = start_engine(args.port)
    try:
        streams = [int(s) for s in args.streams.split(",") if s]
        rates = [float(r) for r in args.rates.split(",") if r]
        levels: list[ConcurrentStrategy | RateStrategy] = [
            ConcurrentStrategy(concurrency=n) for n in streams
        ]
        levels += [RateStrategy(rate=r, arrival="poisson") for r in rates]
        config = BenchConfig(
            target=f"http://127.0.0.1:{args.port}",
            levels=levels,
            duration_s=args.duration,
            warmup_s=args.warmup,
            prompts=PromptSpec(input_len=32, output_len=TOKENS),
            sample_interval_s=5.0,
        )
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        report = run_bench(config)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        engine.terminate()
        engine.wait(10)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"machine: {os.cpu_count()} cores; client CPU {cpu:.1f}s over {wall:.1f}s wall")
    print(f"{'level':<28}{'tok/s':>10}{'ideal':>10}{'ratio':>8}{'req/s':>9}"
          f"{'p99 lag ms':>12}{'p99 itl ms':>12}{'failed':>8}")  # fmt: skip
    for level in report.levels:
        if isinstance(level.strategy, ConcurrentStrategy):
            ideal = level.strategy.concurrency * 1000.0 / ITL_MS
        else:
            ideal = level.strategy.rate * TOKENS
        print(
            f"{level.label:<28}{level.output_throughput:>10.0f}{ideal:>10.0f}"
            f"{level.output_throughput / ideal:>8.1%}{level.request_throughput:>9.1f}"
            f"{level.p99_sched_lag_ms or 0:>12.2f}{level.p99_itl_ms or 0:>12.2f}{level.failed:>8}"
        )


if __name__ == "__main__":
    main()
