"""Sharing one engine fairly, side by side on the simulator behind the gateway with a tenants file.

    python benchmarks/tenants.py [--profile rtx3090-qwen2.5-14b-awq] [--time-scale 2]
        [--max-active 16] [--seconds 60] [--fair-seconds 30] [--tpm 9000] [--tpm-seconds 150]
        [--parts a,b,c,d] [--reserve 0.25] [--gateway-checkout DIR]

Starts `llmctl sim serve` and `llmctl gateway serve --tenants-file` (classes `interactive`, with a
reserve of `--reserve` of the slots, and `batch`; seven tenants), measures the capacity (requests a
second and mean service time with MAX_ACTIVE requests in flight), then:

(a) noisy neighbour: an interactive tenant offering 20 % of the capacity (Poisson), alone and then
    beside a batch tenant offering 10 times the capacity (Poisson, the queue overflowing), with
    `llmctl bench --mix` levels: its p99 queue wait against one mean service time, and its goodput
    (requests a second with TTFT within one calibrated mean service time) against the run alone;
    once with batch output lengths that vary (x(1 +- 0.5)) and once all of one length;
(b) two equal-weight tenants both saturating (Jain's index of their request throughput), then
    weights 3:1 (the ratio of their throughput);
(c) a tokens-per-minute limit over 60 s windows: one tenant asking for about twice its limit with
    one worker that retries a refused request every 10 ms; every 60 s window's tokens (engine
    usage, at admission: when the answer's head came), refusals while the window was under the
    limit, and each refusal's Retry-After (whole seconds) and retry-after-ms against the time
    until a retry succeeded (a retry the gateway holds for a window that frees within 2.5 s
    succeeds when it is let in);
(d) the gateway's overhead with tenants and classes: benchmarks/gateway_overhead.py --with-tenants.

Prints a table per part and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# Run as `python benchmarks/tenants.py`, so this folder is on sys.path.
from _common import free_port, started

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.report import LevelReport, StreamReport
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, MixStrategy, RateStrategy, StreamSpec
from llmctl.core import aio
from llmctl.core.slo import SLO
from llmctl.gateway.tenants import key_hash

HERE = Path(__file__).resolve().parent
MODEL = "bench-model"
# Part (c) retries a refused request this often; with a round trip on top, a wait is known to
# about RESOLUTION_S.
RETRY_S = 0.01
RESOLUTION_S = 0.02
# name -> (class, weight, extra lines of its table)
TENANTS = {
    "chat": ("interactive", 1, ""),
    "nightly": ("batch", 1, ""),
    "team-a": ("interactive", 1, ""),
    "team-b": ("interactive", 1, ""),
    "heavy": ("interactive", 3, ""),
    "light": ("interactive", 1, ""),
    "metered": ("interactive", 1, "tokens_per_minute = {tpm}\n"),
}


def write_tenants(path: Path, tpm: int, reserve: float) -> dict[str, str]:
    """The tenants file; returns each tenant's key (made for this run, shown to no one)."""
    keys = {name: "sk-bench-" + secrets.token_urlsafe(16) for name in TENANTS}
    text = (
        f"[classes.interactive]\nrank = 0\nreserve = {reserve}\n"
        "[classes.batch]\nrank = 1\nshare = 0.1\naging_s = 60\n"
    )
    for name, (klass, weight, extra) in TENANTS.items():
        text += (
            f'\n[[tenants]]\nname = "{name}"\nclass = "{klass}"\nweight = {weight}\n'
            f'keys = ["{key_hash(keys[name])}"]\n' + extra.format(tpm=tpm)
        )
    path.write_text(text)
    return keys


@dataclass
class Bench:
    gateway: str
    keys: dict[str, str]
    prompts: PromptSpec

    def run(self, levels: list[MixStrategy], seconds: float, slo: SLO = SLO()) -> list[LevelReport]:
        config = BenchConfig(
            target=self.gateway,
            model=MODEL,
            api_keys_by_env={f"KEY_{n}": k for n, k in self.keys.items()},
            levels=levels,
            duration_s=seconds,
            warmup_s=min(5.0, seconds / 6),
            prompts=self.prompts,
            slo=slo,
            reject_backoff_s=0.05,
            sample_interval_s=5.0,
        )
        return run_bench(config).levels


def stream(
    tenant: str, load: ConcurrentStrategy | RateStrategy, spread: float | None = None
) -> StreamSpec:
    return StreamSpec(name=tenant, load=load, api_key_env=f"KEY_{tenant}", output_spread=spread)


def by_name(level: LevelReport) -> dict[str, StreamReport]:
    return {s.name: s for s in level.streams}


def calibrate(bench: Bench, max_active: int, seconds: float) -> tuple[float, float]:
    """Capacity (requests a second) and mean service time (ms) with MAX_ACTIVE in flight."""
    load = stream("team-a", ConcurrentStrategy(concurrency=max_active), spread=0.5)
    (level,) = bench.run([MixStrategy(name="capacity", streams=(load,))], seconds)
    service = level.mean_admitted_e2el_ms or 0.0
    print(
        f"capacity: {level.request_throughput:.2f} req/s at {max_active} in flight, mean service "
        f"time {service:.0f} ms, TTFT p50 {level.median_ttft_ms or 0:.0f} ms",
        flush=True,
    )
    return level.request_throughput, service


def noisy_neighbour(
    bench: Bench, capacity: float, service_ms: float, seconds: float
) -> list[dict[str, Any]]:
    rows = []
    slo = SLO(ttft_s=service_ms / 1000)
    print("\n(a) noisy neighbour: interactive at 20 % of capacity, batch at 10x; "
          f"goodput SLO TTFT <= {service_ms:.0f} ms (one calibrated mean service time)\n")  # fmt: skip
    print("| batch lengths | interactive p99 wait | mean service (mixed) | wait / service | "
          "goodput alone | goodput mixed | mixed / alone | interactive refused | batch served "
          "| batch refused |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spread, words in ((0.5, "x(1 +- 0.5)"), (0.0, "all one length")):
        chat = stream("chat", RateStrategy(rate=0.2 * capacity), spread=spread)
        flood = stream("nightly", RateStrategy(rate=10 * capacity), spread=spread)
        alone, mixed = bench.run(
            [
                MixStrategy(name="alone", streams=(chat,)),
                MixStrategy(name="flood", streams=(chat, flood)),
            ],
            seconds,
            slo,
        )
        quiet, busy = by_name(alone)["chat"], by_name(mixed)
        chat_mixed, batch = busy["chat"], busy["nightly"]
        wait = chat_mixed.p99_queue_wait_ms or 0.0
        service = mixed.mean_admitted_e2el_ms or 0.0
        good_alone, good_mixed = quiet.request_goodput or 0.0, chat_mixed.request_goodput or 0.0
        row = {
            "batch_lengths": words,
            "interactive_p99_wait_ms": wait,
            "mean_service_ms": service,
            "wait_over_service": wait / service if service else None,
            "goodput_alone": good_alone,
            "goodput_mixed": good_mixed,
            "goodput_ratio": good_mixed / good_alone if good_alone else None,
            "interactive_sent": quiet.completed + quiet.failed,
            "interactive_refused": chat_mixed.failed,
            "batch_req_s": batch.request_throughput,
            "batch_refused": batch.failed,
            "lag_p99_ms": mixed.p99_sched_lag_ms,
        }
        rows.append(row)
        print(
            f"| {words} | {wait:.0f} ms | {service:.0f} ms | {row['wait_over_service']:.2f} "
            f"| {good_alone:.3f} req/s | {good_mixed:.3f} req/s | {row['goodput_ratio']:.3f} "
            f"| {chat_mixed.failed} of {chat_mixed.completed + chat_mixed.failed} "
            f"| {batch.request_throughput:.2f} req/s | {batch.failed} |",
            flush=True,
        )
    return rows


def fair_shares(bench: Bench, max_active: int, seconds: float) -> list[dict[str, Any]]:
    saturate = ConcurrentStrategy(concurrency=2 * max_active)
    equal = MixStrategy(
        name="equal", streams=(stream("team-a", saturate), stream("team-b", saturate))
    )
    weighted = MixStrategy(
        name="weights", streams=(stream("heavy", saturate), stream("light", saturate))
    )
    print(f"\n(b) two tenants, each keeping {2 * max_active} requests in flight\n")
    print("| tenants (weights) | req/s | req/s | out tok/s | out tok/s | Jain's index | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for level in bench.run([equal, weighted], seconds):
        a, b = level.streams
        x, y = a.request_throughput, b.request_throughput
        jain = (x + y) ** 2 / (2 * (x * x + y * y))
        names = f"{a.name} : {b.name} ({'1:1' if a.name == 'team-a' else '3:1'})"
        rows.append({"tenants": names, "req_s": [x, y], "jain": jain, "ratio": x / y})
        print(
            f"| {names} | {x:.2f} | {y:.2f} | {a.output_throughput:.0f} | "
            f"{b.output_throughput:.0f} | {jain:.4f} | {x / y:.3f} |",
            flush=True,
        )
    return rows


def usage_tokens(body: bytes) -> int:
    """Prompt plus completion tokens from a stream's usage event."""
    for line in reversed(body.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            usage = json.loads(line[6:]).get("usage")
            if usage:
                return int(usage["prompt_tokens"]) + int(usage["completion_tokens"])
    raise SystemExit("a stream without usage: the gateway should pass it on when asked")


@dataclass
class Metered:
    """What the metered tenant's one worker saw."""

    # (answered, usage tokens): when the answer's head came, as the gateway sends it with the
    # first tokens, since a request whose window frees within 2.5 s is held until it does
    admitted: list[tuple[float, int]] = field(default_factory=list)
    # (sent, Retry-After s, retry-after-ms in s, when the retry that succeeded was answered)
    refusals: list[list[float]] = field(default_factory=list)
    other: int = 0


async def _metered(url: str, key: str, seconds: float, retry_s: float, body: bytes) -> Metered:
    seen = Metered()
    waiting: list[list[float]] = []  # refusals whose retry has not succeeded yet
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sent = time.perf_counter()
            async with session.post(url + "/v1/completions", data=body, headers=headers) as r:
                answered = time.perf_counter()
                text = await r.read()
                if r.status == 429:
                    exact = float(r.headers.get("retry-after-ms", "nan")) / 1000
                    refusal = [sent, float(r.headers["Retry-After"]), exact, 0.0]
                    seen.refusals.append(refusal)
                    waiting.append(refusal)
                elif r.status == 200:
                    seen.admitted.append((answered, usage_tokens(text)))
                    for refusal in waiting:
                        refusal[3] = answered
                    waiting.clear()
                else:
                    seen.other += 1
            if r.status != 200:
                await asyncio.sleep(retry_s)
    seen.refusals = [r for r in seen.refusals if r[3]]  # still waiting at the end: no answer
    return seen


def token_limit(gateway: str, key: str, tpm: int, seconds: float) -> dict[str, Any]:
    body = json.dumps(
        {"model": MODEL, "prompt": " ".join(["word"] * 120), "max_tokens": 64,
         "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    ).encode()  # fmt: skip
    seen = aio.run(_metered(gateway, key, seconds, RETRY_S, body))
    admitted = seen.admitted
    first = admitted[0][0]
    # A window's total only changes when a request is admitted or leaves: check it just after both.
    moments = sorted({t for t, _ in admitted} | {t + 60 for t, _ in admitted})
    totals = [
        sum(n for s, n in admitted if t - 60 < s <= t)
        for t in moments
        if first + 60 <= t <= admitted[-1][0]
    ]
    # A refusal is honest when the last 60 s held the limit (50 ms of slack for the two clocks).
    under = [
        r for r in seen.refusals if sum(n for s, n in admitted if r[0] - 60.05 < s <= r[0]) < tpm
    ]
    episodes = [r for i, r in enumerate(seen.refusals) if i == 0 or seen.refusals[i - 1][3] != r[3]]

    def accuracy(refusals: list[list[float]], index: int, slack: float) -> tuple[float, int]:
        """The share of `refusals` whose prediction is within 20 % (or `slack` s) of the wait."""
        good = [
            r for r in refusals if abs(r[index] - (r[3] - r[0])) <= max(0.2 * (r[3] - r[0]), slack)
        ]
        return (len(good) / len(refusals) if refusals else 1.0), len(refusals)

    long_ones = [r for r in episodes if r[3] - r[0] >= 1.0]
    result: dict[str, Any] = {
        "tpm": tpm,
        "seconds": seconds,
        "admitted": len(admitted),
        "tokens_per_request": sum(n for _, n in admitted) / len(admitted),
        "window_min": min(totals) / tpm,
        "window_max": max(totals) / tpm,
        "windows_checked": len(totals),
        "refusals": len(seen.refusals),
        "refused_under_limit": len(under),
        "episodes": len(episodes),
        "retry_after_within_20pct": accuracy(episodes, 1, 0.0),
        "retry_after_within_20pct_waits_over_1s": accuracy(long_ones, 1, 0.0),
        "retry_after_ms_within_20pct_or_resolution": accuracy(episodes, 2, RESOLUTION_S),
        "episode_waits_s": [round(r[3] - r[0], 3) for r in episodes],
        "episode_retry_after_s": [r[1] for r in episodes],
        "episode_retry_after_ms_s": [round(r[2], 3) for r in episodes],
        "other_errors": seen.other,
    }
    print(f"\n(c) tokens_per_minute = {tpm}, one worker asking for more, {seconds:.0f} s\n")
    print("| 60 s windows checked | least tokens / limit | most tokens / limit | refusals | "
          "refused under the limit | refusal episodes | Retry-After within 20 % | "
          f"(waits >= 1 s) | retry-after-ms within 20 % (or {RESOLUTION_S * 1000:.0f} ms) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def share(pair: tuple[float, int]) -> str:
        return f"{pair[0]:.0%} of {pair[1]}"

    print(
        f"| {len(totals)} | {result['window_min']:.3f} | {result['window_max']:.3f} "
        f"| {len(seen.refusals)} | {len(under)} | {len(episodes)} "
        f"| {share(result['retry_after_within_20pct'])} "
        f"| {share(result['retry_after_within_20pct_waits_over_1s'])} "
        f"| {share(result['retry_after_ms_within_20pct_or_resolution'])} |"
    )
    print(
        "\nepisodes (first refusal of each): wait until a retry succeeded / Retry-After / "
        "retry-after-ms, s:"
    )
    for wait, after, reset in zip(
        result["episode_waits_s"],
        result["episode_retry_after_s"],
        result["episode_retry_after_ms_s"],
        strict=True,
    ):
        print(f"  {wait:8.3f} / {after:4.0f} / {reset:8.3f}")
    return result


def overhead(time_scale: float) -> None:
    print("\n(d) gateway overhead with tenants and classes (benchmarks/gateway_overhead.py "
          "--with-tenants)\n", flush=True)  # fmt: skip
    subprocess.run(
        [sys.executable, str(HERE / "gateway_overhead.py"), "--with-tenants",
         "--time-scale", str(time_scale)],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="rtx3090-qwen2.5-14b-awq")
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument("--max-active", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="per level of part (a)")
    parser.add_argument("--fair-seconds", type=float, default=30.0, help="per level of part (b)")
    parser.add_argument("--tpm", type=int, default=9000)
    parser.add_argument("--tpm-seconds", type=float, default=150.0)
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument(
        "--reserve", type=float, default=0.25, help="the interactive class's reserve (0: none)"
    )
    parser.add_argument(
        "--gateway-checkout",
        type=Path,
        help="Run the gateway from this checkout (PYTHONPATH), to compare gateway versions.",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    sim_port, gw_port = free_port(), free_port()
    sim, gateway = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    py = [sys.executable, "-m", "llmctl"]
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        keys = write_tenants(folder / "tenants.toml", args.tpm, args.reserve)
        stack.enter_context(started(
            [*py, "sim", "serve", "--port", str(sim_port), "--model", MODEL, "--profile",
             args.profile, "--time-scale", str(args.time_scale),
             "--max-num-seqs", str(4 * args.max_active)],
            sim + "/health",
        ))  # fmt: skip
        gateway_py = py
        if args.gateway_checkout is not None:
            gateway_py = ["env", f"PYTHONPATH={args.gateway_checkout.resolve()}", *py]
        stack.enter_context(started(
            [*gateway_py, "gateway", "serve", "--port", str(gw_port), "--upstream", sim,
             "--max-active", str(args.max_active), "--tenants-file", str(folder / "tenants.toml")],
            gateway + "/health", stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        bench = Bench(gateway, keys, PromptSpec(input_len=128, output_len=64))
        print(f"{args.profile} at --time-scale {args.time_scale:g}, MAX_ACTIVE {args.max_active}, "
              "queue max 64; prompts 128 tokens, output 64", flush=True)  # fmt: skip
        if parts & {"a", "b"}:
            capacity, service_ms = calibrate(bench, args.max_active, 20.0)
            results["capacity_req_s"], results["service_ms"] = capacity, service_ms
        if "a" in parts:
            results["noisy_neighbour"] = noisy_neighbour(bench, capacity, service_ms, args.seconds)
        if "b" in parts:
            results["fair_shares"] = fair_shares(bench, args.max_active, args.fair_seconds)
        if "c" in parts:
            results["token_limit"] = token_limit(
                gateway, keys["metered"], args.tpm, args.tpm_seconds
            )
    if "d" in parts:
        overhead(1.0)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
