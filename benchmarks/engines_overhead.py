"""What the gateway costs with several engines: streamed tokens and time to first token, via it vs.
direct, one engine beside N (issue 17). The single-engine streaming cost of issue 20 is gateway_overhead.py.

    python benchmarks/engines_overhead.py [--profile rtx3090-qwen2.5-14b-awq] [--time-scale 1]
        [--streams 1,64,256] [--rounds 3] [--requests 1] [--max-tokens 128] [--ttft-samples 200]
        [--with-tenants] [--engines 4 [--engines-time-scale 0.25]]

Starts `llmctl sim serve` and `llmctl gateway serve` (MAX_ACTIVE above the largest stream count,
so admission never queues) as child processes, then, in this process, runs N concurrent streams
that each send `--requests` streamed completions of exactly `--max-tokens` tokens back to back,
alternating direct and via-gateway rounds so both see the same machine noise. Throughput is the
tokens counted from each stream's `usage` frame over the round's wall time. TTFT samples alternate
direct/via one request at a time (one stream), 70 ms apart so the engine is idle at each arrival.
Prints a Markdown table and one JSON line.

`--with-tenants` adds a third target, side by side in the same rotation: a second gateway with a
tenants file (two classes; the tenant has a weight, request, token and concurrency limits set high
enough never to bind, so every check runs and every answer carries the x-ratelimit headers), whose
requests carry the tenant's key and an X-Llmctl-Class header. Its TTFT requests ask for no usage, so
the gateway rewrites their bodies to ask the engine for it, as it does for such clients.

`--engines N` (N > 1) adds N engines in all (the first is the single engine above) and two more
targets in the same rotation: `directN`, the streams spread evenly over the N engines (stream i to
engine i mod N; TTFT samples take the engines in turn), and `viaN`, one gateway in front of all N
(its default routing, `least_loaded`, polling each engine's /metrics). `viaN/directN` beside
`via/direct` says what several engines add to the gateway's cost. On a small machine N engines
stream N times the tokens, so the gateway competes with them for the CPU; `--engines-time-scale`
runs the N engines as separate processes slowed so that together they stream about what the
single engine does, which keeps the machine's load the same and leaves only the gateway's
handling of N engines to differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp

# Run as `python benchmarks/gateway_overhead.py`, so this folder is on sys.path.
from _common import (
    TENANT_KEY,
    free_port,
    process_cpu_seconds,
    started,
    started_together,
    tenants_file,
)

from llmctl.core import aio
from llmctl.gateway.tenants import CLASS_HEADER

MODEL = "bench-model"
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens":\s*(\d+)')


@dataclass
class Round:
    target: str
    streams: int
    tokens: int
    seconds: float
    gateway_cpu_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class Target:
    name: str
    bases: list[str]  # stream i (and TTFT sample i) goes to bases[i % len(bases)]
    headers: dict[str, str]
    baseline: str | None = None  # a gateway: the direct target it is compared with


async def _one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, requests: int, headers: dict[str, str]
) -> int:
    tokens = 0
    for _ in range(requests):
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json", **headers}
        ) as r:
            if r.status != 200:
                raise SystemExit(f"{url} answered {r.status}: {await r.text()}")
            last = b""
            async for chunk in r.content.iter_any():
                last = last[-256:] + chunk
            match = _COMPLETION_TOKENS.search(last[last.rfind(b'"usage"') :])
            if match is None:
                raise SystemExit("no usage frame in the stream")
            tokens += int(match.group(1))
    return tokens


async def _round(target: Target, streams: int, requests: int, max_tokens: int) -> tuple[int, float]:
    body = json.dumps(
        {
            "model": MODEL,
            "prompt": "Write a story about a fox.",
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        urls = [base + "/v1/completions" for base in target.bases]
        start = time.perf_counter()
        counts = await asyncio.gather(
            *(
                _one_stream(session, urls[i % len(urls)], body, requests, target.headers)
                for i in range(streams)
            )
        )
        return sum(counts), time.perf_counter() - start


async def _ttft_samples(targets: list[Target], samples: int) -> dict[str, list[float]]:
    body = json.dumps(
        {"model": MODEL, "prompt": "Hello there", "max_tokens": 2, "stream": True}
    ).encode()
    out: dict[str, list[float]] = {t.name: [] for t in targets}
    warm = 5 * len(targets)
    async with aiohttp.ClientSession() as session:
        for i in range(samples * len(targets) + warm):
            target = targets[i % len(targets)]
            url = target.bases[(i // len(targets)) % len(target.bases)] + "/v1/completions"
            headers = {"Content-Type": "application/json", **target.headers}
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as r:
                first = await r.content.readany()
                elapsed = time.perf_counter() - start
                if b"data:" not in first:
                    raise SystemExit(f"unexpected first chunk from {target.name}: {first[:200]!r}")
                await r.read()
            if i >= warm:  # the first few warm the connections up
                out[target.name].append(elapsed)
            # Let the engine go idle: the simulator starts a step that follows an idle gap of
            # under 50 ms at its previous step's end (in the past), which would hide added latency.
            await asyncio.sleep(0.07)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="rtx3090-qwen2.5-14b-awq")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--streams", default="1,64,256")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per target and stream count.")
    parser.add_argument("--requests", type=int, default=1, help="Requests per stream per round.")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ttft-samples", type=int, default=200)
    parser.add_argument(
        "--engines",
        type=int,
        default=1,
        help="With N > 1, also N engines, direct (streams spread over them) and through one "
        "gateway in front of all N, side by side with the single engine.",
    )
    parser.add_argument(
        "--engines-time-scale",
        type=float,
        default=None,
        help="Run the N engines as N more processes at this time scale (1/N of --time-scale: "
        "together they stream what the single engine does, so the machine's load is the same).",
    )
    parser.add_argument(
        "--with-tenants",
        action="store_true",
        help="Also measure a gateway with a tenants file and classes, side by side.",
    )
    args = parser.parse_args()
    stream_counts = [int(s) for s in args.streams.split(",")]

    py = [sys.executable, "-m", "llmctl"]
    # The single engine, then the N engines: the same processes, unless the N run at their own
    # time scale (then N more).
    apart = args.engines > 1 and args.engines_time_scale is not None
    scales = [args.time_scale] * args.engines
    if apart:
        scales = [args.time_scale] + [args.engines_time_scale] * args.engines
    sim_ports = [free_port() for _ in scales]
    engines = [f"http://127.0.0.1:{p}" for p in sim_ports]
    sims = [
        ([*py, "sim", "serve", "--port", str(port), "--model", MODEL, "--profile", args.profile,
          "--time-scale", str(scale), "--max-num-seqs", str(max(stream_counts) * 2)],
         f"{url}/health")
        for port, url, scale in zip(sim_ports, engines, scales, strict=True)
    ]  # fmt: skip
    many = engines[1:] if apart else engines

    def gateway(upstreams: list[str]) -> tuple[list[str], str]:
        port = free_port()
        command = [*py, "gateway", "serve", "--port", str(port), "--upstream", ",".join(upstreams),
                   "--max-active", str(max(stream_counts) * 2), "--queue-max", "0"]  # fmt: skip
        return command, f"http://127.0.0.1:{port}"

    gateway_args, via = gateway(engines[:1])
    targets = [Target("direct", engines[:1], {}), Target("via", [via], {}, "direct")]
    with ExitStack() as children:
        children.enter_context(started_together(sims))
        gateways = {
            "via": children.enter_context(
                started(gateway_args, via + "/health", stderr=subprocess.DEVNULL)
            ),
        }
        if args.engines > 1:
            # The same streams spread over every engine, direct and through one gateway.
            n = args.engines
            many_args, via_many = gateway(many)
            gateways[f"via{n}"] = children.enter_context(
                started(many_args, via_many + "/health", stderr=subprocess.DEVNULL)
            )
            targets += [
                Target(f"direct{n}", many, {}),
                Target(f"via{n}", [via_many], {}, f"direct{n}"),
            ]
        if args.with_tenants:
            folder = Path(children.enter_context(tempfile.TemporaryDirectory()))
            tenant_port = free_port()
            tenant_url = f"http://127.0.0.1:{tenant_port}"
            tenant_args = [*gateway_args, "--tenants-file", str(tenants_file(folder))]
            tenant_args[tenant_args.index("--port") + 1] = str(tenant_port)
            gateways["tenants"] = children.enter_context(
                started(tenant_args, tenant_url + "/health", stderr=subprocess.DEVNULL)
            )
            auth = {"Authorization": f"Bearer {TENANT_KEY}", CLASS_HEADER: "interactive"}
            targets.append(Target("tenants", [tenant_url], auth, "direct"))
        rounds: list[Round] = []
        for streams in stream_counts:
            for _ in range(args.rounds):
                for target in targets:
                    proc = gateways.get(target.name)
                    cpu0 = process_cpu_seconds(proc.pid) if proc else 0.0
                    tokens, seconds = aio.run(
                        _round(target, streams, args.requests, args.max_tokens)
                    )
                    cpu = process_cpu_seconds(proc.pid) - cpu0 if proc else 0.0
                    rounds.append(Round(target.name, streams, tokens, seconds, cpu))
                    print(
                        f"  {target.name:8} {streams:4} streams: {tokens / seconds:9.1f} tok/s "
                        f"({tokens} tokens in {seconds:.2f} s, gateway cpu {cpu:.2f} s)",
                        file=sys.stderr,
                    )
        ttft = aio.run(_ttft_samples(targets, args.ttft_samples))

    report = _report(args, stream_counts, rounds, ttft, targets)
    print(json.dumps(report))


def _report(
    args: argparse.Namespace,
    stream_counts: list[int],
    rounds: list[Round],
    ttft: dict[str, list[float]],
    targets: list[Target],
) -> dict[str, object]:
    names = [t.name for t in targets]
    gateways = {t.name: t.baseline for t in targets if t.baseline is not None}
    what = {"via": "via gateway", "tenants": "via gateway with tenants"}
    print(f"\nprofile {args.profile}, time-scale {args.time_scale}, max_tokens {args.max_tokens}\n")
    head = "| streams |"
    rule = "|---:|"
    for target in targets:
        if target.baseline is None:
            head += f" {target.name} tok/s |"
            rule += "---:|"
        else:
            label = what.get(target.name, f"{target.name} (gateway)")
            head += f" {label} tok/s | {target.name}/{target.baseline} | CPU per 1k tokens |"
            rule += "---:|---:|---:|"
    print(head)
    print(rule)
    throughput: dict[int, dict[str, float]] = {}
    for streams in stream_counts:
        mine = [r for r in rounds if r.streams == streams]
        per = {}
        cpu_per_1k = {}
        for target in names:
            rs = [r for r in mine if r.target == target]
            per[target] = sum(r.tokens for r in rs) / sum(r.seconds for r in rs)
            cpu_ms = 1000 * sum(r.gateway_cpu_s for r in rs)
            cpu_per_1k[target] = cpu_ms / (sum(r.tokens for r in rs) / 1000)
        throughput[streams] = dict(per)
        line = f"| {streams} |"
        for name in names:
            baseline = gateways.get(name)
            if baseline is None:
                line += f" {per[name]:.1f} |"
                continue
            ratio = per[name] / per[baseline]
            throughput[streams][f"{name}_ratio"] = ratio
            line += f" {per[name]:.1f} | {ratio:.3f} | {cpu_per_1k[name]:.1f} ms |"
        print(line)
    p50 = {k: statistics.median(v) * 1000 for k, v in ttft.items()}
    added = {name: p50[name] - p50[baseline] for name, baseline in gateways.items()}
    print(
        "\nTTFT p50 at one stream: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in p50.items())
        + "; added by the gateway: "
        + ", ".join(f"{k} {v:+.2f} ms" for k, v in added.items())
        + f" ({len(ttft['direct'])} samples each)"
    )
    return {
        "profile": args.profile,
        "time_scale": args.time_scale,
        "max_tokens": args.max_tokens,
        "engines": args.engines,
        "engines_time_scale": args.engines_time_scale,
        "throughput": throughput,
        "ttft_p50_ms": p50,
        "ttft_added_p50_ms": added,
    }


if __name__ == "__main__":
    main()
