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
import socket
import subprocess
import sys
import time
import urllib.request

# One token frame of a streamed completion carries exactly one of these (the finish frame has a
# finish_reason, the usage frame has no choices).
_MARKER = b'"finish_reason":null'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (Linux /proc), 0 where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    cpu_start = _cpu_seconds(args.server_pid)
    await asyncio.sleep(seconds)
    tokens, elapsed = counts[0] - start_count, time.perf_counter() - start
    sim_cpu = (_cpu_seconds(args.server_pid) - cpu_start) / elapsed
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
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    run(_client(args))


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"simulator not ready at {url}")


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
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llmctl", "sim", "serve", "--port", str(port),
         "--profile", args.profile],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health")
        client_args = [a for a in sys.argv[1:] if a not in ("--client-only",)]
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), *client_args, "--client-only",
             "--port", str(port), "--server-pid", str(server.pid)],
            check=True,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
