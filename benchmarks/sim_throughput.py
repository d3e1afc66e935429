"""How many streamed tokens per second one simulator process delivers to many concurrent streams.

    python benchmarks/sim_throughput.py [--streams 256] [--seconds 10] [--max-tokens 512]

Starts `llmctl sim serve --profile tiny` as one child process and a lean raw-asyncio client as
another, so the client's parsing does not share the simulator's core. Prints one JSON line: the
streamed tokens/s, the ceiling the profile's time model allows at that batch size, and how many CPU
cores the simulator process used meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

# Run as `python benchmarks/sim_throughput.py`, so this folder is on sys.path.
from _common import free_port, process_cpu_seconds, started

from llmctl.core import aio

# One token frame of a streamed completion carries exactly one of these (the finish frame has a
# finish_reason, the usage frame has no choices).
_MARKER = b'"finish_reason":null'


async def _stream_forever(port: int, body: bytes, counts: list[int], stop: asyncio.Event) -> None:
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    keep = len(_MARKER) - 1
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        tail = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            window = tail + data
            counts[0] += window.count(_MARKER)
            tail = window[-keep:]
        writer.close()


def _ceiling(profile_name: str, streams: int) -> float:
    """Tokens/s the profile's time model allows at this concurrency (decode steps only)."""
    from llmctl.sim.profiles import get_profile

    profile = get_profile(profile_name)
    batch = min(streams, profile.max_num_seqs)
    return batch / profile.step_seconds(0, batch)


async def _client(args: argparse.Namespace) -> None:
    port, streams, seconds, warmup = args.port, args.streams, args.seconds, args.warmup
    body = json.dumps(
        {"model": "llmctl-sim", "prompt": "hello " * 16, "max_tokens": args.max_tokens,
         "ignore_eos": True, "stream": True}
    ).encode()  # fmt: skip
    counts = [0]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_stream_forever(port, body, counts, stop)) for _ in range(streams)]
    await asyncio.sleep(warmup)
    start_count, start = counts[0], time.perf_counter()
    cpu_start = process_cpu_seconds(args.server_pid)
    await asyncio.sleep(seconds)
    tokens, elapsed = counts[0] - start_count, time.perf_counter() - start
    sim_cpu = (process_cpu_seconds(args.server_pid) - cpu_start) / elapsed
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({
        "profile": args.profile, "streams": streams, "seconds": round(elapsed, 2),
        "tokens": tokens, "tokens_per_s": round(tokens / elapsed),
        "time_model_ceiling_tokens_per_s": round(_ceiling(args.profile, streams)),
        "sim_cpu_cores": round(sim_cpu, 2),
    }))  # fmt: skip


def _run_client(args: argparse.Namespace) -> None:
    aio.run(_client(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--client-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_only:
        _run_client(args)
        return
    port = free_port()
    server_args = [sys.executable, "-m", "llmctl", "sim", "serve", "--port", str(port),
                   "--profile", args.profile]  # fmt: skip
    with started(server_args, f"http://127.0.0.1:{port}/health") as server:
        client_args = [a for a in sys.argv[1:] if a not in ("--client-only",)]
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), *client_args, "--client-only",
             "--port", str(port), "--server-pid", str(server.pid)],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
