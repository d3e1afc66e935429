"""Routing policies side by side on simulated engines: prefix-cache hits, TTFT, balance, failover.

    python benchmarks/routing.py [--engines 4] [--profile rtx3090-qwen2.5-14b-awq]
        [--time-scale 4] [--conversations 64] [--turns 6] [--system-prompts 8]
        [--system-words 1000] [--user-words 150] [--max-tokens 64] [--rate 1] [--think 1]
        [--max-active 8] [--policies round_robin,least_loaded,prefix_affinity] [--rounds 1]
        [--no-kill]

One run, every policy on the same trace: for each policy (in turn, `--rounds` times) it starts
`--engines` fresh `llmctl sim serve` processes (time-scaled, prefix caching on, as vLLM v1) and
one `llmctl gateway serve --routing POLICY` in front of them, then replays a multi-turn chat trace
in an open loop: `--conversations` chats starting as a Poisson process of `--rate` a second, each
opening with one of `--system-prompts` shared system prompts and going on for `--turns` user turns
(think times exponential, mean `--think` s; all timing and text from `--seed`, the same for every
policy), each turn's prompt the whole conversation so far (the assistant's earlier answers as fixed
text of `--max-tokens` words: the engine's own answer text is not sent back, so its output blocks
never hit; real chats would hit them too). Words are at most 4 letters: one simulator token each.

Reported per policy: the engines' prefix-cache hit rate (sum of `vllm:prefix_cache_hits_total`
over `vllm:prefix_cache_queries_total` of every engine: fresh engines, so the run's own), client
side TTFT p50/p90/mean (the first streamed text, measured by llmctl bench's client), requests per
engine (the gateway's `X-Llmctl-Engine`) as the busiest engine over the mean, and failures.

Then (unless `--no-kill`) the failover check: the trace again with `prefix_affinity`, and one engine
killed (SIGKILL) at the first moment after a third of the requests have finished when some engine
is streaming answers (the one streaming the most). Counted: failed requests that had not streamed
any text (must be 0: the gateway retries them on another engine), requests cut mid-stream and
whether each ended with an error event, the gateway's retries, and its active, queued and
per-engine gauges afterwards (must return to 0). Prints Markdown tables and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

# Run as `python benchmarks/routing.py`, so this folder is on sys.path.
from _common import by_label, free_port, get_text, started, started_together, sum_samples

from llmctl.bench.client import StreamingClient, Target
from llmctl.bench.metrics import percentile
from llmctl.bench.record import RequestRecord
from llmctl.core import aio
from llmctl.core import metrics as m
from llmctl.core.openai import CHAT

MODEL = "bench-model"
WORDS = "the of and to in is you that it he was for on are as with his they at be this from or had "
WORDS += "by not word but what some we can out were all your when up use how said an each she "
WORDS += "do time if will way many then them make like him into has look two more go see no "
WORDS_LIST = WORDS.split()


@dataclass(frozen=True)
class Conversation:
    system: str
    users: list[str]
    start_s: float  # when it starts, from the replay's start
    thinks: list[
        float
    ]  # seconds between an answer's end and the next turn, per turn after the first


@dataclass
class Phase:
    """One policy's pass over the trace."""

    policy: str
    engines: list[str]
    records: list[RequestRecord]
    turns: list[int]  # each record's turn in its conversation (0: the first)
    seconds: float
    hits: float = 0.0
    queries: float = 0.0
    killed: str | None = None
    gauges_after: dict[str, float] | None = None
    retries: float = 0.0  # the gateway's llmctl_gateway_retries_total after a kill

    @property
    def ok(self) -> list[RequestRecord]:
        return [r for r in self.records if r.ok]

    def ttft_ms(self, q: float, turn: int | None = None) -> float:
        """The `q`th percentile (0-100) of time to first text of the requests that succeeded (of
        one turn only, when given)."""
        ttft = sorted(
            (r.first_token - r.sent) * 1000
            for r, t in zip(self.records, self.turns, strict=True)
            if r.ok and r.first_token and turn in (None, t)
        )
        return percentile(ttft, q) if ttft else float("nan")

    @property
    def ttft_mean_ms(self) -> float:
        return statistics.fmean((r.first_token - r.sent) * 1000 for r in self.ok if r.first_token)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")

    @property
    def per_engine(self) -> dict[str, int]:
        counts = Counter(r.engine for r in self.records if r.engine)
        return {name: counts.get(name, 0) for name in self.engines}

    @property
    def busiest_over_mean(self) -> float:
        counts = list(self.per_engine.values())
        return max(counts) / (sum(counts) / len(counts)) if sum(counts) else float("nan")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS_LIST) for _ in range(words))


def make_trace(args: argparse.Namespace) -> list[Conversation]:
    """The conversations, their texts and their timing, all from `--seed`: starts a Poisson process
    of `--rate`, think times exponential with mean `--think` (no lockstep between conversations:
    a fixed spacing lets round robin send a conversation's turns to one engine by accident)."""
    rng = random.Random(args.seed)
    systems = [_text(rng, args.system_words) for _ in range(args.system_prompts)]
    trace, start = [], 0.0
    for i in range(args.conversations):
        users = [_text(rng, args.user_words) for _ in range(args.turns)]
        thinks = [rng.expovariate(1 / args.think) for _ in range(args.turns - 1)]
        trace.append(Conversation(systems[i % len(systems)], users, start, thinks))
        start += rng.expovariate(args.rate)
    return trace


async def replay(
    url: str,
    trace: list[Conversation],
    *,
    max_tokens: int,
    on_done: Callable[[int, list[RequestRecord]], None] = lambda done, in_flight: None,
) -> tuple[list[RequestRecord], list[int]]:
    """Open loop: each conversation starts at its `start_s` whatever the engines do; within one,
    each turn is sent its think time after the previous answer ended. Returns each request's record and
    turn (0: a conversation's first). `on_done` hears of every finished request, with the
    requests still in flight."""
    client = StreamingClient(Target(url), api_key=None, timeout_s=300)
    records: list[RequestRecord] = []
    turns: list[int] = []
    in_flight: list[RequestRecord] = []
    answer = " ".join(WORDS_LIST[: max(1, max_tokens)])
    start = time.perf_counter()

    async def chat(conversation: Conversation) -> None:
        await asyncio.sleep(max(0.0, start + conversation.start_s - time.perf_counter()))
        messages = [{"role": "system", "content": conversation.system}]
        for turn, text in enumerate(conversation.users):
            if turn:
                await asyncio.sleep(conversation.thinks[turn - 1])
            messages.append({"role": "user", "content": f"{turn}: {text}"})
            body = {
                "model": MODEL,
                "messages": messages,
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            record = RequestRecord(planned=time.perf_counter())
            in_flight.append(record)
            await client.send(
                client.build(CHAT.path, json.dumps(body).encode()), record, CHAT.text_key
            )
            in_flight.remove(record)
            records.append(record)
            turns.append(turn)
            on_done(len(records), in_flight)
            messages.append({"role": "assistant", "content": answer})

    try:
        await asyncio.gather(*(chat(c) for c in trace))
    finally:
        await client.aclose()
    return records, turns


def gateway_gauges(url: str) -> dict[str, float]:
    """The gateway's active and queued requests, and each engine's active ones."""
    page = get_text(url + "/metrics")
    gauges = {
        "active": sum_samples(page, m.GATEWAY_ACTIVE.series),
        "queued": sum_samples(page, m.GATEWAY_QUEUE_DEPTH.series),
    }
    for name, value in by_label(page, m.GATEWAY_ENGINE_ACTIVE.series, "engine").items():
        gauges[f"active at {name}"] = value
    return gauges


def settled_gauges(url: str, timeout: float = 5.0) -> dict[str, float]:
    """The gateway's gauges once they read 0 (or whatever they read after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        gauges = gateway_gauges(url)
        if not any(gauges.values()) or time.monotonic() > deadline:
            return gauges
        time.sleep(0.1)


def run_phase(
    args: argparse.Namespace, trace: list[Conversation], policy: str, kill: bool
) -> Phase:
    py = [sys.executable, "-m", "llmctl"]
    ports = [free_port() for _ in range(args.engines)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    sims = [
        ([*py, "sim", "serve", "--port", str(p), "--model", MODEL, "--profile", args.profile,
          "--time-scale", str(args.time_scale), "--seed", str(i)], f"{u}/health")
        for i, (p, u) in enumerate(zip(ports, urls, strict=True))
    ]  # fmt: skip
    if args.num_gpu_blocks:
        for command, _ in sims:
            command += ["--num-gpu-blocks", str(args.num_gpu_blocks)]
    gw_port = free_port()
    gateway = f"http://127.0.0.1:{gw_port}"
    gateway_args = [*py, "gateway", "serve", "--port", str(gw_port), "--upstream", ",".join(urls),
                    "--routing", policy, "--max-active", str(args.max_active),
                    "--queue-max", "10000", "--health-interval", "0.5", "--model", MODEL]  # fmt: skip
    names = [u.removeprefix("http://") for u in urls]
    with ExitStack() as children:
        procs = children.enter_context(started_together(sims))
        children.enter_context(started(gateway_args, gateway + "/health"))
        total = len(trace) * args.turns
        victim: list[int] = []

        def on_done(done: int, in_flight: list[RequestRecord]) -> None:
            # From a third of the way on, at the first moment some engine is streaming answers,
            # kill the one streaming the most: some streams are cut mid-way, and the requests
            # queued at it or routed to it before the gateway notices have not started.
            if not kill or victim or done < total // 3:
                return
            streaming = Counter(r.engine for r in in_flight if r.first_token and r.engine)
            if streaming:
                name, count = streaming.most_common(1)[0]
                victim.append(names.index(name))
                procs[victim[0]].kill()
                print(f"  killed {name} after {done} requests, {count} streaming", file=sys.stderr)

        start = time.perf_counter()
        records, turns = aio.run(
            replay(
                gateway,
                trace,
                max_tokens=args.max_tokens,
                on_done=on_done,
            )
        )
        phase = Phase(policy, names, records, turns, time.perf_counter() - start)
        if kill:
            phase.killed = names[victim[0]] if victim else None
            phase.gauges_after = settled_gauges(gateway)
            page = get_text(gateway + "/metrics")
            phase.retries = sum_samples(page, m.GATEWAY_RETRIES.series)
        else:
            for url in urls:
                page = get_text(url + "/metrics")
                phase.hits += sum_samples(page, m.VLLM_PREFIX_CACHE_HITS.series)
                phase.queries += sum_samples(page, m.VLLM_PREFIX_CACHE_QUERIES.series)
    print(
        f"  {policy:15} {'(kill)' if kill else '':6} {len(phase.ok)}/{len(records)} ok in "
        f"{phase.seconds:.1f} s, hit rate {phase.hit_rate:.3f}, TTFT p50 {phase.ttft_ms(50):.1f} ms, "
        f"mean {phase.ttft_mean_ms:.1f} ms, p50 by turn "
        f"{[round(phase.ttft_ms(50, t)) for t in range(args.turns)]}, "
        f"per engine {list(phase.per_engine.values())}",
        file=sys.stderr,
    )
    return phase


def kill_report(phase: Phase) -> dict[str, object]:
    failed = [r for r in phase.records if not r.ok]
    before = [r for r in failed if r.first_token is None]
    cut = [r for r in failed if r.first_token is not None]
    clean = [
        r for r in cut if r.failure == "stream_error" and (r.error or "").startswith("error event")
    ]
    return {
        "requests": len(phase.records),
        "killed": phase.killed,
        "failed_before_streaming": len(before),
        "failed_before_streaming_samples": sorted({r.error or "" for r in before})[:3],
        "cut_mid_stream": len(cut),
        "cut_with_error_event": len(clean),
        "gateway_retries": phase.retries,
        "gauges_after": phase.gauges_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--profile", default="rtx3090-qwen2.5-14b-awq")
    parser.add_argument("--time-scale", type=float, default=4.0)
    parser.add_argument("--num-gpu-blocks", type=int, default=0, help="0: the profile's.")
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--system-prompts", type=int, default=8)
    parser.add_argument("--system-words", type=int, default=1000)
    parser.add_argument("--user-words", type=int, default=150)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1.0, help="Conversations started a second.")
    parser.add_argument("--think", type=float, default=1.0, help="Seconds between turns.")
    parser.add_argument("--max-active", type=int, default=8)
    parser.add_argument("--policies", default="round_robin,least_loaded,prefix_affinity")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-kill", action="store_true", help="Skip the failover check.")
    args = parser.parse_args()
    # A plain `kill` still stops the engines and gateways (their context managers run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    trace = make_trace(args)
    policies = args.policies.split(",")

    phases = [
        run_phase(args, trace, policy, kill=False)
        for _ in range(args.rounds)
        for policy in policies
    ]
    killed = None if args.no_kill else run_phase(args, trace, "prefix_affinity", kill=True)
    print(json.dumps(report(args, policies, phases, killed)))


def report(
    args: argparse.Namespace, policies: list[str], phases: list[Phase], killed: Phase | None
) -> dict[str, object]:
    print(
        f"\n{args.engines} engines ({args.profile}, time-scale {args.time_scale:g}), "
        f"{args.conversations} conversations x {args.turns} turns, {args.system_prompts} system "
        f"prompts of {args.system_words} words, {args.rate:g} conversations/s, {args.think:g} s "
        f"between turns, MAX_ACTIVE {args.max_active} per engine\n"
    )
    print("| policy | requests | failed | prefix-cache hit rate | TTFT p50 ms | TTFT p90 ms |"
          " TTFT mean ms | busiest / mean engine | seconds |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary: dict[str, dict[str, float]] = {}
    for policy in policies:
        mine = [p for p in phases if p.policy == policy]
        records = [r for p in mine for r in p.records]
        row = {
            "requests": len(records),
            "failed": sum(1 for r in records if not r.ok),
            "hit_rate": sum(p.hits for p in mine) / sum(p.queries for p in mine),
            "ttft_p50_ms": statistics.median(p.ttft_ms(50) for p in mine),
            "ttft_p90_ms": statistics.median(p.ttft_ms(90) for p in mine),
            "ttft_mean_ms": statistics.fmean(p.ttft_mean_ms for p in mine),
            "busiest_over_mean": max(p.busiest_over_mean for p in mine),
            "seconds": sum(p.seconds for p in mine),
        }
        summary[policy] = row
        print(f"| {policy} | {row['requests']} | {row['failed']} | {row['hit_rate']:.3f} | "
              f"{row['ttft_p50_ms']:.1f} | {row['ttft_p90_ms']:.1f} | {row['ttft_mean_ms']:.1f} | "
              f"{row['busiest_over_mean']:.2f} | {row['seconds']:.1f} |")  # fmt: skip
    margins = {}
    if "round_robin" in summary and "prefix_affinity" in summary:
        rr, pa = summary["round_robin"], summary["prefix_affinity"]
        margins = {
            "hit_rate_points": 100 * (pa["hit_rate"] - rr["hit_rate"]),
            "ttft_p50_ratio": pa["ttft_p50_ms"] / rr["ttft_p50_ms"],
        }
        print(
            f"\nprefix_affinity vs round_robin: hit rate {margins['hit_rate_points']:+.1f} points, "
            f"TTFT p50 x{margins['ttft_p50_ratio']:.2f}"
        )
    out: dict[str, object] = {"args": vars(args), "policies": summary, "margins": margins}
    if killed is not None:
        kill = kill_report(killed)
        out["kill"] = kill
        print(
            f"\nkilled {kill['killed']} after a third of {kill['requests']} requests "
            f"(prefix_affinity): {kill['failed_before_streaming']} failed before streaming, "
            f"{kill['cut_mid_stream']} cut mid-stream ({kill['cut_with_error_event']} with an "
            f"error event), {kill['gateway_retries']:g} retried by the gateway; gateway gauges "
            f"after: {kill['gauges_after']}"
        )
    return out


if __name__ == "__main__":
    main()
