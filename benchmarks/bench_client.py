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
from pathlib import Path

# Run as `python benchmarks/bench_client.py`, so this folder is on sys.path.
from _common import process_cpu_seconds, started

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy

HERE = Path(__file__).resolve().parent
TOKENS = 64
ITL_MS = 10.0
GUIDELLM = Path("/root/.cache/llmctl/guidellm-venv/bin/guidellm")


def engine_args(port: int) -> list[str]:
    return [sys.executable, str(HERE / "fake_engine.py"), "--port", str(port),
            "--ttft-ms", str(ITL_MS), "--itl-ms", str(ITL_MS), "--tokens", str(TOKENS)]  # fmt: skip


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def guidellm_rate(port: int, streams: int, duration: float) -> float:
    """guidellm's output tokens/s at `streams` against the same engine (its own virtualenv)."""
    import json
    import random
    import tempfile

    from llmctl.bench.prompts import _WORDS

    folder = Path(tempfile.mkdtemp(prefix="guidellm-"))
    rng = random.Random(0)
    with (folder / "prompts.jsonl").open("w") as f:
        for _ in range(4000):
            text = " ".join(rng.choices(_WORDS, k=32))
            f.write(json.dumps({"prompt": text, "output_tokens_count": TOKENS}) + "\n")
    cmd = [str(GUIDELLM), "run", "--backend", f"kind=openai_http,target=http://127.0.0.1:{port}",
           "--profile", f"kind=concurrent,streams={streams}",
           "--constraint", f"kind=max_duration,seconds={duration:g}",
           "--data", f"kind=json_file,path={folder / 'prompts.jsonl'}",
           "--output", f"kind=json,path={folder / 'out.json'}", "--disable-progress"]  # fmt: skip
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
    )
    metrics = json.loads((folder / "out.json").read_text())["benchmarks"][0]["metrics"]
    return float(metrics["output_tokens_per_second"]["total"]["mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="256,1024")
    parser.add_argument("--rates", default="500")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument(
        "--guidellm", action="store_true", help="also run guidellm 0.8.1 at each --streams level"
    )
    args = parser.parse_args()
    levels: list[ConcurrentStrategy | RateStrategy] = [
        ConcurrentStrategy(concurrency=int(n)) for n in args.streams.split(",") if n
    ]
    levels += [RateStrategy(rate=float(r), arrival="poisson") for r in args.rates.split(",") if r]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'level':<16}{'tok/s':>8}{'ideal':>8}{'ratio':>8}{'req/s':>8}{'lag p99':>9}"
          f"{'itl p99':>9}{'fail':>6}{'client us/tok':>15}{'engine us/tok':>15}")  # fmt: skip
    with started(engine_args(args.port), f"http://127.0.0.1:{args.port}/health") as engine:
        for strategy in levels:
            config = BenchConfig(
                target=f"http://127.0.0.1:{args.port}",
                levels=[strategy],
                duration_s=args.duration,
                warmup_s=args.warmup,
                prompts=PromptSpec(input_len=32, output_len=TOKENS),
                sample_interval_s=5.0,
            )
            cpu0, eng0 = client_cpu(), process_cpu_seconds(engine.pid)
            level = run_bench(config).levels[0]
            cpu, eng = client_cpu() - cpu0, process_cpu_seconds(engine.pid) - eng0
            # CPU per token over the whole level (warm-up and drain included) is robust to a
            # busy machine, unlike the token rate.
            tokens = max(1.0, level.output_throughput * (args.duration + args.warmup))
            if isinstance(strategy, ConcurrentStrategy):
                ideal = strategy.concurrency * 1000.0 / ITL_MS
            else:
                ideal = strategy.rate * TOKENS
            print(
                f"{level.label:<16}{level.output_throughput:>8.0f}{ideal:>8.0f}"
                f"{level.output_throughput / ideal:>8.1%}{level.request_throughput:>8.1f}"
                f"{level.p99_sched_lag_ms or 0:>9.2f}{level.p99_itl_ms or 0:>9.2f}{level.failed:>6}"
                f"{cpu / tokens * 1e6:>15.1f}{eng / tokens * 1e6:>15.1f}",
                flush=True,
            )
            if args.guidellm and isinstance(strategy, ConcurrentStrategy):
                rate = guidellm_rate(args.port, strategy.concurrency, args.duration)
                print(
                    f"{'  guidellm':<16}{rate:>8.0f}{ideal:>8.0f}{rate / ideal:>8.1%}", flush=True
                )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
