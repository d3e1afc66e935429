"""The fits behind the simulator's profiles: replay workloads in-process, fit constants to data.

    python benchmarks/profile_fit.py h100-prefill          # token_s, pair_s from Figure 2's TTFTs
    python benchmarks/profile_fit.py cpu benchmarks/data/vllm-cpu-live-*.json   # cpu-tiny-llama
    python benchmarks/profile_fit.py client-gap     # yobitel c=4's TTFT against the client's gap

`replay()` runs a closed loop through the simulator's own scheduler and time model on a virtual
clock, in the event order engine.py uses (the API server's queue with its ±50 % request jitter,
async admission, token delivery after the API server's work), so a fit takes seconds instead of
hours of real-time replays. The cpu fit reads `fidelity.py --live --json` output (or the vLLM
medians alone, as kept in benchmarks/data/: the sweeps the profile was fitted to); it
minimises squared log ratios (output throughput, median TTFT and ITL weighted 1, TPOT 0.5) with a
Nelder-Mead search over the constants' logarithms. docs/simulator.md records the results.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from published_points import H100_POINTS

from llmctl.sim.profiles import EngineProfile, get_profile
from llmctl.sim.scheduler import Scheduler, SimRequest
from llmctl.sim.timing import StepCosts, output_seconds, step_seconds

WEIGHTS = {"output_tps": 1.0, "ttft_ms": 1.0, "itl_ms": 1.0, "tpot_ms": 0.5}
CPU_FIELDS = ("step_s", "seq_s", "token_s", "pair_s", "context_s", "request_s", "output_s",
              "output_step_s")  # fmt: skip


def replay(profile: EngineProfile, concurrency: int, requests: int, input_len: int,
           output_len: int, seed: int = 0,
           gap_ms: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:  # fmt: skip
    """Closed loop of `concurrency` clients on a virtual clock: what the simulator would measure.

    A client sends its next request the instant the last token is delivered, or, with `gap_ms`,
    a time drawn uniformly from that range (milliseconds) later, as a real client's own latency."""
    p, costs, rng = profile, profile.costs, random.Random(seed)
    gap_rng = random.Random(seed + 1)
    sched = Scheduler(max_num_seqs=p.max_num_seqs, num_blocks=p.num_gpu_blocks,
                      block_size=p.block_size, max_num_batched_tokens=p.max_num_batched_tokens)  # fmt: skip
    arrivals: deque[tuple[float, SimRequest]] = deque()
    api_free = now = api_busy = 0.0
    sent = finished = tokens = 0
    ttft: list[float] = []
    gaps: list[float] = []
    tpot: list[float] = []
    seen: dict[int, tuple[float, float]] = {}  # id -> (first token seen, last token seen)

    def send(at: float) -> None:
        nonlocal sent, api_free, api_busy
        if sent < requests:
            sent += 1
            req = SimRequest(input_len, output_len, "length", arrival=at)
            work = costs.request_s * rng.uniform(0.5, 1.5)
            api_free, api_busy = max(api_free, at) + work, api_busy + work
            arrivals.append((api_free, req))

    for _ in range(concurrency):
        send(0.0)
    previous: float | None = None
    while finished < requests:
        if sched.has_work():
            cutoff = previous if p.async_scheduling and previous is not None else now
        else:
            now = cutoff = max(now, arrivals[0][0])
        while arrivals and arrivals[0][0] <= cutoff:
            sched.add(arrivals.popleft()[1])
        if not sched.has_work():
            previous = None
            continue
        plan = sched.schedule(now)
        previous, now = now, now + step_seconds(costs, seqs=len(plan.scheduled), tokens=plan.tokens,
                                                pairs=plan.prefill_pairs, context=plan.decode_context)  # fmt: skip
        result = sched.complete(plan, now)
        tokens += len(result.emitted)
        work = output_seconds(costs, len(result.emitted))
        api_free, api_busy = max(api_free, now) + work, api_busy + work
        for req in result.emitted:
            if req.num_output == 1:
                ttft.append(api_free - req.arrival)
                seen[id(req)] = (api_free, api_free)
            else:
                gaps.append(api_free - seen[id(req)][1])
                seen[id(req)] = (seen[id(req)][0], api_free)
        for req in result.finished:
            finished += 1
            tpot.append((api_free - seen.pop(id(req))[0]) / max(req.num_output - 1, 1))
            send(api_free + gap_rng.uniform(*gap_ms) / 1000)
    return {"output_tps": tokens / now, "ttft_ms": statistics.median(ttft) * 1000,
            "itl_ms": statistics.median(gaps or [0.0]) * 1000,
            "tpot_ms": statistics.median(tpot) * 1000, "api_busy": api_busy / now}  # fmt: skip


def nelder_mead(f: Callable[[list[float]], float], x0: list[float], step: float = 0.3,
                iterations: int = 300) -> list[float]:  # fmt: skip
    """Minimise f from x0 (plain Nelder-Mead; a few hundred evaluations are enough here)."""
    n = len(x0)
    simplex = [x0] + [[x + (step if i == j else 0.0) for j, x in enumerate(x0)] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centre = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]

        def toward(
            t: float, centre: list[float] = centre, worst: list[float] = worst
        ) -> list[float]:
            return [c + t * (w - c) for c, w in zip(centre, worst, strict=True)]

        reflected = toward(-1.0)
        fr = f(reflected)
        if fr < values[0]:
            expanded = toward(-2.0)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = toward(0.5)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, s, strict=True)]
                                    for s in simplex[1:]]  # fmt: skip
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]


def fit_cpu(paths: list[Path]) -> None:
    """Fit every time cost of cpu-tiny-llama to live sweeps (geometric mean of the runs)."""
    runs: dict[tuple[int, int], list[dict[str, float]]] = {}
    for path in paths:
        for row in json.loads(path.read_text()):
            point = row[0] if isinstance(row, list) else row  # fidelity rows or plain points
            key = (point["concurrency"], point["input_len"] // 100 * 100)
            runs.setdefault(key, []).append(point)
    # Sweeps that measured the API server's busy share pin its costs to it (weight 1).
    every = [r for rs in runs.values() for r in rs]
    weights = WEIGHTS | ({"api_busy": 1.0} if all(r.get("api_busy") for r in every) else {})
    targets = [(c, statistics.mean(r["input_len"] for r in rs),
                {m: math.exp(statistics.mean(math.log(r[m]) for r in rs)) for m in weights})
               for (c, _), rs in sorted(runs.items())]  # fmt: skip
    base = get_profile("cpu-tiny-llama")

    def profile(x: list[float]) -> EngineProfile:
        values = dict(zip(CPU_FIELDS, map(math.exp, x), strict=True))
        return replace(base, costs=replace(base.costs, **values))

    def error(x: list[float]) -> float:
        total = 0.0
        for c, input_len, target in targets:
            sim = replay(profile(x), c, {1: 30, 4: 60}.get(c, 200), round(input_len), 128)
            total += sum(w * math.log(sim[m] / target[m]) ** 2 for m, w in weights.items())
        return total

    # A cost the profile does not have yet starts at 0.1 ms (a logarithm needs a positive start).
    x = [math.log(getattr(base.costs, f) or 1e-4) for f in CPU_FIELDS]
    for _ in range(3):  # restarted from its best with a fresh simplex: eight constants stall one
        x = nelder_mead(error, x)
    best = profile(x)
    print({f: float(f"{getattr(best.costs, f):.3g}") for f in CPU_FIELDS})
    for c, input_len, target in targets:
        sim = replay(best, c, {1: 30, 4: 60}.get(c, 200), round(input_len), 128)
        print(f"c={c} in={input_len:.0f}: " + ", ".join(
            f"{m} {target[m]:.2f} / {sim[m]:.2f} = {sim[m] / target[m]:.2f}" for m in weights))  # fmt: skip


def fit_h100_prefill() -> None:
    """token_s and pair_s from Figure 2's TTFT markers ("fit" points); the others held out."""
    base = get_profile("h100-llama3.1-8b")
    points = [p for p in H100_POINTS if p.name.startswith("blog fig2")]

    def ttft(costs: StepCosts, input_len: int) -> float:
        return replay(replace(base, costs=costs), 1, 1, input_len, 2)["ttft_ms"]

    def costs(x: list[float]) -> StepCosts:
        return replace(base.costs, token_s=math.exp(x[0]), pair_s=math.exp(x[1]))

    def error(x: list[float]) -> float:
        return sum(math.log(ttft(costs(x), p.input_len) / (p.ttft_ms or 1)) ** 2
                   for p in points if p.role == "fit")  # fmt: skip

    best = costs(nelder_mead(error, [math.log(base.costs.token_s), math.log(base.costs.pair_s)]))
    print(f"token_s {best.token_s * 1e6:.2f} us, pair_s {best.pair_s * 1e9:.3f} ns")
    for p in points:
        sim = ttft(best, p.input_len)
        print(f"{p.name} ({p.role}): {p.ttft_ms} / {sim:.0f} = {sim / (p.ttft_ms or 1):.3f}")


def client_gap() -> None:
    """yobitel at concurrency 4 in-process, for clients that send their next request after a gap:
    its median TTFT is bimodal in whole steps, and the gap decides which mode the median is in.
    Fixed gaps of a fraction of a step, then gaps at random phase over one and two steps."""
    point = next(p for p in H100_POINTS if p.name == "yobitel c=4")
    assert point.ttft_ms is not None
    profile = get_profile(point.profile)

    def run(gap: tuple[float, float]) -> dict[str, float]:
        return replay(
            profile, point.concurrency, 400, point.input_len, point.output_len, gap_ms=gap
        )

    step = run((0.0, 0.0))["tpot_ms"]
    gaps = [
        (0.0, 0.0),
        (0.25, 0.25),
        (0.5, 0.5),
        (1.0, 1.0),
        (2.0, 2.0),
        (0.0, step),
        (0.0, 2 * step),
    ]
    print(f"{point.name}: published TTFT p50 {point.ttft_ms} ms, TPOT {point.tpot_ms} ms")
    for gap in gaps:
        sim = run(gap)
        print(f"client gap {gap[0]:.2f}-{gap[1]:.2f} ms: TTFT p50 {sim['ttft_ms']:.2f} ms "
              f"({sim['ttft_ms'] / point.ttft_ms:.2f}), {sim['output_tps']:.0f} tok/s, "
              f"TPOT {sim['tpot_ms']:.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["cpu", "h100-prefill", "client-gap"])
    parser.add_argument("runs", nargs="*", type=Path, help="cpu: fidelity.py --live --json files")
    args = parser.parse_args()
    if args.what == "cpu":
        if not args.runs:
            sys.exit("give one or more `fidelity.py --live --json` files")
        fit_cpu(args.runs)
    elif args.what == "client-gap":
        client_gap()
    else:
        fit_h100_prefill()


if __name__ == "__main__":
    main()
