"""Where the gateway's CPU goes: py-spy profiles of `llmctl gateway serve` under N streams.

    python benchmarks/gateway_profile.py [--streams 1,64,256,1024] [--seconds 8] [--max-tokens 128]
        [--ttft-ms 10] [--itl-ms 10] [--rate 100] [--keep DIR]

Starts the fake engine (benchmarks/fake_engine.py: prebuilt chunks, one token every --itl-ms per
stream), or with --sim the simulator at real-GPU pacing, and the gateway as child processes, runs N closed-loop streams through the gateway (the
lean client in _streams.py), and samples the gateway with `py-spy record --native` while it works.
Each sample is put in one category by its innermost frame that says what the work is (a system call,
then our modules, then aiohttp's, then asyncio/uvloop); the table gives each category's share of the
gateway's CPU samples and, scaled by the gateway's measured CPU time per streamed token, its
microseconds per token. `--max-tokens 1 --streams 1` profiles the per-request path instead.
py-spy must be installed (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from _common import free_port, process_cpu_seconds, started
from _streams import closed_loop

from llmctl.core import aio

HERE = Path(__file__).resolve().parent

# (category, substrings of a frame that put a sample in it), tried per frame from the innermost out.
_SYSCALLS = (
    (
        "kernel: socket writes",
        ("write (libc", "writev (libc", "send (libc", "sendmsg (libc", "__send"),
    ),
    ("kernel: socket reads", ("read (libc", "recv (libc", "recvmsg (libc", "readv (libc")),
    ("kernel: epoll_ctl", ("epoll_ctl",)),
    ("kernel: accept/connect/close", ("accept4", "connect (libc", "close (libc", "shutdown (libc")),
)
_MODULES = (
    ("SSE byte scans (text, usage)", ("llmctl/core/openai.py",)),
    (
        "metrics (histograms, counters)",
        ("llmctl/gateway/histogram.py", "llmctl/gateway/metrics.py", "prometheus_client/"),
    ),
    ("body parse and checks", ("llmctl/gateway/payload.py", "json/", "orjson")),
    (
        "admission and routing",
        (
            "llmctl/gateway/admission.py",
            "llmctl/gateway/fairness.py",
            "llmctl/gateway/router.py",
            "llmctl/gateway/routing.py",
            "llmctl/gateway/engines.py",
        ),
    ),
    (
        "relay and upstream (own code)",
        (
            "llmctl/gateway/relay.py",
            "llmctl/gateway/upstream.py",
            "llmctl/gateway/wire.py",
            "llmctl/gateway/connections.py",
        ),
    ),
    ("proxy (own code)", ("llmctl/gateway/proxy.py",)),
    ("request handler (own code)", ("llmctl/gateway/",)),
    ("aiohttp: response writing", ("aiohttp/http_writer.py", "aiohttp/web_response.py")),
    ("aiohttp: reading the engine's answer", ("aiohttp/streams.py", "aiohttp/client_proto.py")),
    (
        "aiohttp: upstream request",
        ("aiohttp/client.py", "aiohttp/client_reqrep.py", "aiohttp/connector.py"),
    ),
    ("aiohttp: server request handling", ("aiohttp/",)),
    ("asyncio (tasks, futures, timeouts)", ("asyncio/", "_asynciomodule.c")),
)
_LOOP = "event loop (uvloop: callbacks, scheduling)"


# py-spy cannot tell idle threads apart in native mode: a sample waiting in epoll_wait is idle.
_IDLE = ("epoll_wait", "epoll_pwait")


def categorize(stack: str) -> str | None:
    """The category of one sampled stack (innermost frame last); None for an idle sample."""
    frames = stack.split(";")
    leaf = frames[-1]
    if any(n in leaf for n in _IDLE):
        return None
    for name, needles in _SYSCALLS:
        if any(n in leaf for n in needles):
            return name
    for frame in reversed(frames):
        for name, needles in _MODULES:
            if any(n in frame for n in needles):
                return name
    return _LOOP


def profile_shares(raw: Path) -> Counter[str]:
    shares: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        category = categorize(stack) if stack else None
        if category is not None:
            shares[category] += int(count)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1,64,256,1024")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ttft-ms", type=float, default=10.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="keep the raw py-spy stacks in this folder")
    parser.add_argument(
        "--root", type=Path, help="run the gateway of another checkout (e.g. a `git archive`)"
    )
    parser.add_argument(
        "--sim",
        action="store_true",
        help="the simulator at real-GPU pacing (rtx3090-qwen2.5-14b-awq) instead of the fake engine",
    )
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    folder.mkdir(parents=True, exist_ok=True)

    engine_port, gw_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    via = f"http://127.0.0.1:{gw_port}"
    levels = [int(s) for s in args.streams.split(",")]
    body = json.dumps(
        {
            "model": "fake",
            "prompt": "Write a story about a fox.",
            "max_tokens": args.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    engine_args = [sys.executable, str(HERE / "fake_engine.py"), "--port", str(engine_port),
                   "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms)]  # fmt: skip
    if args.sim:
        engine_args = [sys.executable, "-m", "llmctl", "sim", "serve", "--port", str(engine_port),
                       "--model", "fake", "--profile", "rtx3090-qwen2.5-14b-awq",
                       "--max-num-seqs", str(max(levels) * 2)]  # fmt: skip
    gateway_args = [sys.executable, "-m", "llmctl", "gateway", "serve", "--port", str(gw_port),
                    "--upstream", engine, "--max-active", str(max(levels) * 2), "--queue-max", "0",
                    "--health-interval", "5"]  # fmt: skip
    rows = []
    with ExitStack() as children:
        children.enter_context(started(engine_args, engine + "/health", timeout=60))
        gateway = children.enter_context(
            started(
                gateway_args,
                via + "/health",
                stderr=subprocess.DEVNULL,
                timeout=60,
                # `python -m` puts the working directory first on sys.path.
                env={**os.environ, "PYTHONPATH": str(args.root)} if args.root else None,
                cwd=str(args.root) if args.root else None,
            )
        )
        for streams in levels:
            aio.run(closed_loop(via, "/v1/completions", body, streams, seconds=2.0))
            raw = folder / f"streams-{streams}.txt"
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(gateway.pid),
                    "--native",
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(max(1, int(args.seconds) - 1)),
                    "-o",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            cpu0 = process_cpu_seconds(gateway.pid)
            result = aio.run(
                closed_loop(via, "/v1/completions", body, streams, seconds=args.seconds)
            )
            cpu = process_cpu_seconds(gateway.pid) - cpu0
            spy.wait()
            shares = profile_shares(raw)
            us_per_token = cpu / max(1, result.tokens) * 1e6
            rows.append((streams, result, cpu, us_per_token, shares))
            print(
                f"  {streams:5} streams: {result.tokens_per_s:9.0f} tok/s, "
                f"{result.requests / result.seconds:7.1f} req/s, gateway {cpu / result.seconds:.2f} "
                f"cores, {us_per_token:.1f} us/token",
                file=sys.stderr,
            )
    _print(rows, args, folder)


def _print(
    rows: list[tuple[int, object, float, float, Counter[str]]],
    args: argparse.Namespace,
    folder: Path,
) -> None:
    names = [name for name, _ in _SYSCALLS] + [name for name, _ in _MODULES] + [_LOOP]
    print(f"\nmax_tokens {args.max_tokens}, ttft {args.ttft_ms} ms, itl {args.itl_ms} ms; "
          f"raw stacks in {folder}\n")  # fmt: skip
    head = "| category | " + " | ".join(f"{r[0]} streams" for r in rows) + " |"
    print(head)
    print("|---|" + "---:|" * len(rows))
    for name in names:
        cells = []
        for _, _, _, us, shares in rows:
            total = sum(shares.values()) or 1
            share = shares.get(name, 0) / total
            cells.append(f"{share * 100:4.1f} % ({share * us:.1f} us)")
        if any(not c.startswith(" 0.0") for c in cells):
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **gateway CPU per token** | " + " | ".join(f"**{r[3]:.1f} us**" for r in rows) + " |")


if __name__ == "__main__":
    main()
