"""Where the gateway's CPU goes, at N streams: perf for CPU time, py-spy for the Python part.

    python benchmarks/gateway_profile.py [--streams 1,64,256,1024] [--seconds 8] [--max-tokens 128]
        [--ttft-ms 10] [--itl-ms 10] [--sim] [--root CHECKOUT] [--keep DIR]

Starts an engine (benchmarks/fake_engine.py: prebuilt chunks, a token every --itl-ms per stream;
or with --sim the simulator at real-GPU pacing, one token per stream per ~22 ms step) and
`llmctl gateway serve` (from --root, another checkout, when given) as child processes, and runs N
closed-loop streams through the gateway (benchmarks/_streams.py). While they run, two samplers
watch the gateway:

- `perf record -e cpu-clock -g`: samples only while the gateway is on a CPU, so the split is one of
  CPU time even on a busy machine. Each sample goes to the system call it is in (socket writes,
  socket reads, epoll, other kernel work) or to the user-space library it is in (the Python
  interpreter, uvloop, aiohttp's C parts, libc).
- `py-spy record --nonblocking`: which Python code (ours, aiohttp's, asyncio's) the interpreter
  runs. py-spy samples runnable threads, so on a busy machine it over-weights the points where the
  gateway gets preempted; use it for the split of the Python part only.

Each share is also given in microseconds per streamed token (the gateway's CPU time over the
tokens it carried). `--max-tokens 1 --streams 1` profiles the per-request path. Needs `perf`
(linux-tools) and py-spy (`pip install py-spy`); either is skipped when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from _common import free_port, process_cpu_seconds, started
from _streams import closed_loop

from llmctl.core import aio

HERE = Path(__file__).resolve().parent

_KERNEL = (  # (category, a kernel function on the way in)
    ("kernel: socket writes", ("ksys_write", "__sys_sendto", "sock_write_iter")),
    ("kernel: socket reads", ("ksys_read", "__sys_recvfrom", "sock_read_iter")),
    ("kernel: epoll", ("do_epoll_wait", "do_epoll_ctl")),
)
_KERNEL_OTHER = "kernel: other (accept, connect, close, timers, scheduling)"
_USER = (  # (category, part of the library's file name)
    ("Python interpreter", ("libpython",)),
    ("uvloop (C)", ("uvloop", "loop.cpython")),
    ("aiohttp, multidict, yarl (C)", ("_http_parser", "_http_writer", "_helpers", "multidict", "yarl", "propcache")),
    ("libc", ("libc.so",)),
)  # fmt: skip
_USER_OTHER = "other native code"
_PYTHON = (  # (category, part of a Python frame's file), innermost frame first
    ("SSE byte scans (text, usage)", ("llmctl/core/openai.py",)),
    ("metrics", ("gateway/histogram.py", "gateway/metrics.py", "prometheus_client/")),
    ("body parse and checks", ("gateway/payload.py", "json/")),
    ("admission and routing", ("gateway/admission.py", "gateway/fairness.py", "gateway/router.py",
                               "gateway/routing.py", "gateway/engines.py")),
    ("relay, engine connections (ours)", ("gateway/relay.py", "gateway/wire.py",
                                          "gateway/pool.py", "gateway/framing.py")),
    ("proxy (ours)", ("gateway/proxy.py",)),
    ("request handler (ours)", ("llmctl/gateway/",)),
    ("aiohttp: the engine's answer (client)", ("aiohttp/streams.py", "aiohttp/client_proto.py",
                                               "aiohttp/client.py", "aiohttp/client_reqrep.py",
                                               "aiohttp/connector.py")),
    ("aiohttp: response writing", ("aiohttp/http_writer.py", "aiohttp/web_response.py")),
    ("aiohttp: request handling (server)", ("aiohttp/", "multidict/", "yarl/")),
    ("asyncio (tasks, futures, timeouts)", ("asyncio/",)),
)  # fmt: skip
_PYTHON_OTHER = "other Python code"
# Frames through which the event loop is entered (py-spy does not show uvloop's C frames).
_LOOP_ENTRY = ("asyncio/runners.py", "uvloop/__init__.py", "run_forever", "run_until_complete")


def perf_category(frames: list[str]) -> str:
    """`frames`: one perf sample's stack, innermost first, as `symbol (library)`."""
    if "[kernel.kallsyms]" in frames[0]:
        for name, needles in _KERNEL:
            if any(n in f for f in frames for n in needles):
                return name
        return _KERNEL_OTHER
    for name, needles in _USER:
        if any(n in frames[0] for n in needles):
            return name
    return _USER_OTHER


def perf_shares(data: Path) -> Counter[str]:
    text = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "ip,sym,dso"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    shares: Counter[str] = Counter()
    for sample in text.split("\n\n"):
        frames = [line.strip() for line in sample.splitlines() if line.strip()]
        if frames:
            shares[perf_category(frames)] += 1
    return shares


def python_category(stack: str) -> str | None:
    """The category of a py-spy stack (outermost frame first): the innermost frame that says what
    the work is, among those the event loop called; None when the loop called no Python code (the
    sample was in uvloop or the kernel, which perf accounts for)."""
    frames = stack.split(";")
    entry = [i for i, f in enumerate(frames) if any(e in f for e in _LOOP_ENTRY)]
    called = frames[entry[-1] + 1 :] if entry else []
    for frame in reversed(called):
        for name, needles in _PYTHON:
            if any(n in frame for n in needles):
                return name
    return _PYTHON_OTHER if called else None


def pyspy_shares(raw: Path) -> Counter[str]:
    shares: Counter[str] = Counter()
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        category = python_category(stack) if stack else None
        if category is not None:
            shares[category] += int(count)
    return shares


@dataclass
class Level:
    streams: int
    tokens_per_s: float
    requests_per_s: float
    cores: float
    us_per_token: float
    perf: Counter[str] = field(default_factory=Counter)
    python: Counter[str] = field(default_factory=Counter)


def _samplers(
    pid: int, seconds: float, folder: Path, streams: int
) -> list[subprocess.Popen[bytes]]:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = []
    if shutil.which("perf"):
        out = folder / f"perf-{streams}.data"
        procs.append(subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999",
                                       "-g", "-p", str(pid), "-o", str(out)], **quiet))  # type: ignore[call-overload]  # fmt: skip
    if shutil.which("py-spy"):
        out = folder / f"pyspy-{streams}.txt"
        procs.append(subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--nonblocking",
                                       "--format", "raw", "--rate", "200", "--duration",
                                       str(max(1, int(seconds))), "-o", str(out)], **quiet))  # type: ignore[call-overload]  # fmt: skip
    return procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1,64,256,1024")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ttft-ms", type=float, default=10.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--sim", action="store_true", help="the simulator at real-GPU pacing")
    parser.add_argument("--root", type=Path, help="run the gateway of another checkout")
    parser.add_argument("--keep", type=Path, help="keep the raw profiles in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    folder.mkdir(parents=True, exist_ok=True)
    levels = [int(s) for s in args.streams.split(",")]

    engine_port, gw_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    via = f"http://127.0.0.1:{gw_port}"
    body = json.dumps(
        {"model": "fake", "prompt": "Write a story about a fox.", "max_tokens": args.max_tokens,
         "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    ).encode()  # fmt: skip
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
            samplers = _samplers(gateway.pid, args.seconds, folder, streams)
            cpu0 = process_cpu_seconds(gateway.pid)
            result = aio.run(
                closed_loop(via, "/v1/completions", body, streams, seconds=args.seconds)
            )
            cpu = process_cpu_seconds(gateway.pid) - cpu0
            for proc in samplers:
                if proc.args[0] == "perf":  # type: ignore[index]
                    proc.send_signal(2)
                proc.wait()
            level = Level(streams, result.tokens_per_s, result.requests / result.seconds,
                          cpu / result.seconds, cpu / max(1, result.tokens) * 1e6)  # fmt: skip
            if (folder / f"perf-{streams}.data").exists():
                level.perf = perf_shares(folder / f"perf-{streams}.data")
            level.python = pyspy_shares(folder / f"pyspy-{streams}.txt")
            rows.append(level)
            print(
                f"  {streams:5} streams: {level.tokens_per_s:9.0f} tok/s, "
                f"{level.requests_per_s:7.1f} req/s, gateway {level.cores:.2f} cores, "
                f"{level.us_per_token:.1f} us/token",
                file=sys.stderr,
            )
    engine_name = (
        "simulator (real-GPU pacing)" if args.sim else f"fake engine, itl {args.itl_ms} ms"
    )
    print(f"\n{engine_name}, max_tokens {args.max_tokens}; raw profiles in {folder}\n")
    _table("CPU time (perf)", [n for n, _ in _KERNEL] + [_KERNEL_OTHER] + [n for n, _ in _USER]
           + [_USER_OTHER], rows, lambda r: r.perf)  # fmt: skip
    _table("within the Python interpreter (py-spy)", [n for n, _ in _PYTHON] + [_PYTHON_OTHER],
           rows, lambda r: r.python, scale="python")  # fmt: skip


def _table(title: str, names: list[str], rows: list[Level], pick: object, scale: str = "") -> None:
    print(f"| {title} | " + " | ".join(f"{r.streams} streams" for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        cells = []
        for r in rows:
            shares: Counter[str] = pick(r)  # type: ignore[operator]
            total = sum(shares.values()) or 1
            us = r.us_per_token
            if scale == "python" and r.perf:
                us *= r.perf.get("Python interpreter", 0) / (sum(r.perf.values()) or 1)
            share = shares.get(name, 0) / total
            cells.append(f"{share * 100:.0f} % ({share * us:.1f} us)")
        if any(not c.startswith("0 %") for c in cells):
            print(f"| {name} | " + " | ".join(cells) + " |")
    if not scale:
        print("| **gateway CPU per token** | "
              + " | ".join(f"**{r.us_per_token:.1f} us**" for r in rows) + " |")  # fmt: skip
    print()


if __name__ == "__main__":
    main()
