"""Adaptive vs static MAX_ACTIVE through a workload that changes under load.

    python benchmarks/adaptive.py [--time-scale 0.5] [--phase-s 60] [--best 72,30,56,72]
                                  [--json adaptive.json] [--svg docs/figures/adaptive/limit.svg]

One simulated H100 + Llama-3.1-8B (`--profile h100-llama3.1-8b`) behind the gateway, an open-loop
Poisson load of streamed completions (128 output tokens), and four phases of --phase-s simulated
seconds each, after a warm-up of the first phase's conditions:

  1. steady        512-token prompts at 80 % of the capacity at the best limit;
  2. decode 2x     the simulator's `slowdown` 2 (another process took GPU time), same load;
  3. prompts 3x    1,536-token prompts, decode back to normal, same arrival rate;
  4. burst         512-token prompts arriving at twice the steady capacity.

Side by side in one run, each on a fresh simulator and gateway with the same seeded arrivals:
the preset's static limit (`stacks/llama3.1-8b-h100.toml`: 64), the best static limit of each
phase (found by `llmctl tune`'s search against that phase's conditions and switched at each
boundary: an oracle no static configuration has), and adaptive mode (bounds 4..192, its SLO the
same as tune's). Everything is in simulated time (wall time x --time-scale): the SLO, the
controller's interval, the queue timeout, the phases.

Goodput is user-felt, from the client: requests per second, among those sent in the phase, whose
time to first token (queue included) is within 1 s and whose time per output token is within
30 ms. Recovery: after each event, how long the rolling p95 (5 s windows) of admitted TTFT and of
TPOT stays above the SLO. Steadiness: the limit's largest distance from its mean over each
phase's last half. Exit status 1 when a target misses: adaptive >= 90 % of the best static goodput
in every phase and above the default static overall, recovery within 10 s, steadiness within 15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Run as `python benchmarks/adaptive.py`, so this folder is on sys.path.
from _common import free_port, started
from prometheus_client.parser import text_string_to_metric_families

from llmctl.bench.client import StreamingClient, Target
from llmctl.bench.config import PromptSpec
from llmctl.bench.prompts import PromptSource
from llmctl.bench.record import RequestRecord
from llmctl.bench.strategies import planned_offsets
from llmctl.core import aio
from llmctl.core.slo import SLO
from llmctl.report.chart import PALETTE, Figure, Guide, Point, Series
from llmctl.report.svg import render_svg
from llmctl.tune.limits import GatewayAdmin
from llmctl.tune.report import TuneSettings
from llmctl.tune.runner import tune_max_active
from llmctl.tune.trial import TrialPlan

LLMCTL = [sys.executable, "-m", "llmctl"]
ADMIN_KEY = "adaptive-bench-admin"
PROFILE = "h100-llama3.1-8b"
MODEL = "llama-sim"
DEFAULT_STATIC = 64  # stacks/llama3.1-8b-h100.toml
BOUNDS = (4, 192)
TTFT_SLO_S = 1.0  # p95 admitted TTFT (the controller, tune) and per request TTFT (goodput)
ITL_SLO_S = 0.030
OUTPUT_LEN = 128
WARMUP_S = 20.0  # simulated seconds of phase 1's conditions before phase 1 counts
ROLLING_S = 5.0
QUEUE_TIMEOUT_S = 0.5  # below the TTFT SLO: a request that would miss it is refused at once
TARGETS = {"goodput_share": 0.90, "recovery_s": 10.0, "band": 0.15}


@dataclass(frozen=True)
class Phase:
    name: str
    conditions: dict[str, float]  # PUT /sim/conditions at the phase's start
    input_len: int
    load: float  # arrival rate as a multiple of the steady capacity


PHASES = (
    Phase("steady", {"slowdown": 1.0}, 512, 0.7),
    Phase("decode 2x slower", {"slowdown": 2.0}, 512, 0.7),
    Phase("prompts 3x longer", {"slowdown": 1.0}, 1536, 0.7),
    Phase("burst 2x capacity", {"slowdown": 1.0}, 512, 2.0),
)


@dataclass
class Sample:
    t: float  # simulated seconds since the load started
    limit: float
    queued: float
    active: float


@dataclass
class RunResult:
    name: str
    records: list[tuple[int, RequestRecord]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    start: float = 0.0  # perf_counter at the load's start


@dataclass
class Env:
    ts: float
    phase_s: float
    seed: int
    tmp: Path

    def wall(self, virtual_s: float) -> float:
        return virtual_s / self.ts

    def virtual(self, wall_s: float) -> float:
        return wall_s * self.ts


@dataclass
class Stack:
    sim: str
    gateway: str


@contextmanager
def stack(env: Env, limits: dict[str, Any]) -> Iterator[Stack]:
    """A fresh simulator and gateway on free ports, stopped on exit."""
    sim_port, gw_port = free_port(), free_port()
    key = env.tmp / "admin.key"
    key.write_text(ADMIN_KEY)
    sim = [*LLMCTL, "sim", "serve", "--profile", PROFILE, "--model", MODEL, "--port", str(sim_port)]
    sim += ["--time-scale", str(env.ts), "--seed", str(env.seed)]
    gw = [*LLMCTL, "gateway", "serve", "--port", str(gw_port), "--model", MODEL]
    gw += ["--upstream", f"http://127.0.0.1:{sim_port}", "--admin-key-file", str(key)]
    gw += ["--queue-max", "4096", "--queue-timeout", f"{env.wall(QUEUE_TIMEOUT_S):g}"]
    gw += ["--request-timeout", f"{env.wall(300):g}", "--poll-interval", f"{env.wall(0.5):g}"]
    gw += ["--adaptive-min", str(BOUNDS[0]), "--adaptive-max", str(BOUNDS[1])]
    gw += [
        "--adaptive-ttft",
        f"{env.wall(TTFT_SLO_S):g}",
        "--adaptive-itl",
        f"{env.wall(ITL_SLO_S):g}",
    ]
    gw += ["--adaptive-interval", f"{env.wall(1.0):g}"]
    for name, value in limits.items():
        gw += [f"--{name.replace('_', '-')}", str(value)]
    log = (env.tmp / "servers.log").open("ab")
    with ExitStack() as stop:
        stop.callback(log.close)
        stop.enter_context(
            started(sim, f"http://127.0.0.1:{sim_port}/health", stdout=log, stderr=log)
        )
        stop.enter_context(
            started(gw, f"http://127.0.0.1:{gw_port}/health", stdout=log, stderr=log)
        )
        yield Stack(f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}")


def set_conditions(sim: str, conditions: dict[str, float]) -> None:
    httpx.put(f"{sim}/sim/conditions", json=conditions, timeout=10).raise_for_status()


def set_limit(gateway: str, max_active: int) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    resp = httpx.put(
        f"{gateway}/admin/limits", json={"max_active": max_active}, headers=headers, timeout=10
    )
    resp.raise_for_status()


# --- the best static limit of each phase, and the capacity --------------------------------------


def tune_phase(env: Env, phase: Phase) -> tuple[int, float]:
    """`llmctl tune`'s search against `phase`'s conditions: (best MAX_ACTIVE, its req/s, wall)."""
    with stack(env, {"max_active": DEFAULT_STATIC}) as s:
        set_conditions(s.sim, phase.conditions)
        settings = TuneSettings(
            gateway=s.gateway,
            engine_metrics=[f"{s.sim}/metrics"],
            slo=SLO(ttft_s=env.wall(TTFT_SLO_S), itl_s=env.wall(ITL_SLO_S)),
            min_max_active=BOUNDS[0],
            max_max_active=BOUNDS[1],
            trial_duration_s=env.wall(15.0),
            warmup_s=env.wall(4.0),
            input_len=phase.input_len,
            output_len=OUTPUT_LEN,
        )
        admin = GatewayAdmin(s.gateway, ADMIN_KEY)
        try:
            report = tune_max_active(TrialPlan(settings, model=MODEL, seed=env.seed), admin)
        finally:
            admin.close()
    best = report.recommendation.max_active
    if best is None:
        raise SystemExit(f"tune found no limit meeting the SLO in phase {phase.name!r}")
    trial = next(t for t in report.trials if t.max_active == best)
    print(f"  tune, {phase.name}: best MAX_ACTIVE {best} ({report.recommendation.reason})")
    return best, trial.request_throughput


# --- one run through the four phases -------------------------------------------------------------


def gauges(page: str) -> dict[str, float]:
    """Unlabelled samples of a /metrics page (summed over labels when there are several)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def _sample(env: Env, s: Stack, run: RunResult, stop: asyncio.Event) -> None:
    """The gateway's limit, queue and active requests every half simulated second."""
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            try:
                values = gauges((await client.get(f"{s.gateway}/metrics")).text)
            except (httpx.HTTPError, ValueError):
                values = {}
            run.samples.append(
                Sample(
                    t=env.virtual(time.perf_counter() - run.start),
                    limit=values.get("llmctl_gateway_max_active", math.nan),
                    queued=values.get("llmctl_gateway_queue_depth", math.nan),
                    active=values.get("llmctl_gateway_active_requests", math.nan),
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), env.wall(0.5))


async def _load(
    env: Env, s: Stack, run: RunResult, rates: Sequence[float], best: Sequence[int] | None
) -> None:
    """Open-loop arrivals through warm-up and the four phases; each phase's conditions (and, for
    the oracle, its best limit) are set at its start."""
    client = StreamingClient(Target(s.gateway), api_key=None, timeout_s=env.wall(300))
    tasks: set[asyncio.Task[None]] = set()
    starts = [WARMUP_S + i * env.phase_s for i in range(len(PHASES))]
    loop = asyncio.get_running_loop()

    async def one(index: int, source: PromptSource, planned: float) -> None:
        record = RequestRecord(planned=planned)
        body, record.prompt_estimate = source.next_body()
        await client.send(client.build(source.path, body), record, source.token_key)
        run.records.append((index, record))

    try:
        for index in range(-1, len(PHASES)):  # -1: the warm-up
            phase = PHASES[max(index, 0)]
            begin = 0.0 if index < 0 else starts[index]
            end = starts[0] if index < 0 else begin + env.phase_s
            if index >= 0:
                await loop.run_in_executor(None, set_conditions, s.sim, phase.conditions)
                if best is not None:
                    await loop.run_in_executor(None, set_limit, s.gateway, best[index])
            spec = PromptSpec(
                endpoint="completions", input_len=phase.input_len, output_len=OUTPUT_LEN
            )
            source = PromptSource(spec, MODEL, env.seed + index)
            rate = rates[max(index, 0)]
            offsets = planned_offsets(rate, "poisson", 1.0, env.seed + index)
            phase_start = run.start + env.wall(begin)
            for offset in offsets:
                planned = phase_start + offset
                if planned >= run.start + env.wall(end):
                    break
                delay = planned - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(index, source, planned))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
    finally:
        await client.aclose()


async def _run(
    env: Env, s: Stack, name: str, rates: Sequence[float], best: Sequence[int] | None
) -> RunResult:
    run = RunResult(name, start=time.perf_counter())
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(env, s, run, stop))
    try:
        await _load(env, s, run, rates, best)
    finally:
        stop.set()
        await sampler
    return run


def run_config(
    env: Env, name: str, limits: dict[str, Any], rates: Sequence[float], best: Sequence[int] | None
) -> RunResult:
    print(f"  run: {name}")
    with stack(env, limits) as s:
        return aio.run(_run(env, s, name, rates, best))


# --- what the runs show --------------------------------------------------------------------------


def p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Served:
    """One request in simulated seconds since the load started."""

    phase: int
    ok: bool
    status: int
    first: float | None  # first token, since the load started
    end: float
    ttft: float | None  # from the client's send, queue included
    admitted_ttft: float | None  # from the slot's grant
    tpot: float | None

    @property
    def good(self) -> bool:
        return (
            self.ok
            and self.ttft is not None
            and self.ttft <= TTFT_SLO_S
            and (self.tpot is None or self.tpot <= ITL_SLO_S)
        )


def served(env: Env, run: RunResult) -> list[Served]:
    out = []
    for phase, r in run.records:
        first = ttft = admitted = tpot = None
        if r.ok and r.first_token is not None:
            first = env.virtual(r.first_token - run.start)
            ttft = env.virtual(r.first_token - r.sent)
            wait = (r.queue_wait_ms or 0.0) / 1000
            admitted = env.virtual(r.first_token - r.sent - wait)
            tokens = r.output_tokens
            if tokens > 1 and r.token_times:
                tpot = env.virtual((r.token_times[-1] - r.first_token) / (tokens - 1))
        out.append(
            Served(
                phase, r.ok, r.status, first, env.virtual(r.end - run.start), ttft, admitted, tpot
            )
        )
    return out


def phase_starts(env: Env) -> list[float]:
    return [WARMUP_S + i * env.phase_s for i in range(len(PHASES))]


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def goodput(env: Env, requests: list[Served]) -> list[dict[str, float | None]]:
    rows: list[dict[str, float | None]] = []
    for index in range(len(PHASES)):
        mine = [q for q in requests if q.phase == index]
        rows.append(
            {
                "sent": len(mine),
                "ok": sum(q.ok for q in mine),
                "refused": sum(q.status in (429, 503) for q in mine),
                "goodput": sum(q.good for q in mine) / env.phase_s,
                "ttft_p50_s": _median([q.ttft for q in mine]),
                "ttft_p95_s": p95([q.ttft for q in mine if q.ttft is not None]),
                "admitted_ttft_p50_s": _median([q.admitted_ttft for q in mine]),
                "tpot_p50_s": _median([q.tpot for q in mine]),
                "tpot_p95_s": p95([q.tpot for q in mine if q.tpot is not None]),
            }
        )
    return rows


def recovery(env: Env, requests: list[Served], metric: str, by: str) -> list[float | None]:
    """Per event (phases 2..4): simulated seconds from the event to the end of the last 5 s
    window whose p95 of `metric` is above the SLO (0: never above; None: too few samples)."""
    slo = TTFT_SLO_S if metric == "admitted_ttft" else ITL_SLO_S
    out: list[float | None] = []
    for start in phase_starts(env)[1:]:
        points = sorted(
            (getattr(q, by), getattr(q, metric))
            for q in requests
            if getattr(q, metric) is not None and start <= getattr(q, by) < start + env.phase_s
        )
        last_bad: float | None = 0.0
        seen = 0
        t = start + 0.5
        while t <= start + env.phase_s:
            window = [v for at, v in points if t - ROLLING_S <= at < t]
            if len(window) >= 5:
                seen += 1
                value = p95(window)
                if value is not None and value > slo:
                    last_bad = t - start
            t += 0.5
        out.append(last_bad if seen else None)
    return out


def steadiness(env: Env, run: RunResult) -> list[float | None]:
    """Per phase: the limit's largest distance from its mean over the phase's second half."""
    out: list[float | None] = []
    for start in phase_starts(env):
        limits = [
            s.limit
            for s in run.samples
            if start + env.phase_s / 2 <= s.t < start + env.phase_s and not math.isnan(s.limit)
        ]
        if not limits:
            out.append(None)
            continue
        mean = statistics.fmean(limits)
        out.append(max(abs(v - mean) for v in limits) / mean)
    return out


def figure(env: Env, runs: Sequence[RunResult]) -> Figure:
    series = []
    for color, run in zip(PALETTE, runs, strict=False):
        points = tuple(
            Point(round(s.t, 2), s.limit) for s in run.samples if not math.isnan(s.limit)
        )
        series.append(Series(run.name, color, points))
    starts = phase_starts(env)
    note = "; ".join(f"{p.name} from {t:g} s" for p, t in zip(PHASES, starts, strict=True))
    return Figure(
        key="adaptive-limit",
        title="MAX_ACTIVE over time",
        x_title=f"simulated seconds ({note})",
        y_title="MAX_ACTIVE",
        series=tuple(series),
        guides=(Guide(BOUNDS[1], "adaptive_max"),),
        small_marks=True,
    )


# --- parallel runs: each tune search or configuration in its own process ---------------------


def _worker_args(env: Env) -> list[str]:
    return [sys.executable, __file__, "--time-scale", f"{env.ts}", "--phase-s", f"{env.phase_s}",
            "--seed", str(env.seed)]  # fmt: skip


def _parallel(commands: Sequence[list[str]], outs: Sequence[Path]) -> list[Any]:
    """Run `commands` at once (one per core on a quiet machine) and read the JSON each wrote."""
    procs = [subprocess.Popen(command) for command in commands]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise SystemExit(f"a parallel run failed (exit codes {codes})")
    return [json.loads(out.read_text()) for out in outs]


def _dump_run(env: Env, run: RunResult, out: Path) -> None:
    served_rows = [asdict(q) for q in served(env, run)]
    out.write_text(json.dumps({"name": run.name, "served": served_rows,
                               "samples": [asdict(s) for s in run.samples]}))  # fmt: skip


def _load_run(data: dict[str, Any]) -> tuple[RunResult, list[Served]]:
    run = RunResult(data["name"], samples=[Sample(**s) for s in data["samples"]])
    return run, [Served(**q) for q in data["served"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-scale", type=float, default=0.5)
    parser.add_argument("--phase-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--best",
        help="the best static limits of the four phases and the steady capacity in "
        "req/s (wall), e.g. 72,30,56,72@21.5: skips the tune runs",
    )
    parser.add_argument(
        "--only",
        help="run only these configurations (0 preset, 1 oracle, 2 adaptive), e.g. 2: a quick look, no verdict",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="the tune searches at once, then the three configurations at once, each in its "
        "own process (about 10 cores busy: for a quiet machine with many cores)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--svg", type=Path)
    parser.add_argument("--worker-tune", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(args.time_scale, args.phase_s, args.seed, Path(tmp))
        if args.worker_tune is not None:
            best_limit, rps = tune_phase(env, PHASES[args.worker_tune])
            args.worker_out.write_text(json.dumps([best_limit, rps]))
            return 0
        if args.best:
            limits_text, _, capacity_text = args.best.partition("@")
            best = [int(v) for v in limits_text.split(",")]
            capacity = float(capacity_text)
        else:
            print("best static limit per phase (llmctl tune's search):")
            found: dict[str, tuple[int, float]] = {}
            keys = [json.dumps([phase.conditions, phase.input_len]) for phase in PHASES]
            distinct = [keys.index(key) for key in dict.fromkeys(keys)]
            if args.parallel:
                outs = [env.tmp / f"tune-{i}.json" for i in distinct]
                commands = [
                    [*_worker_args(env), "--worker-tune", str(i), "--worker-out", str(out)]
                    for i, out in zip(distinct, outs, strict=True)
                ]
                for i, (limit, rps) in zip(distinct, _parallel(commands, outs), strict=True):
                    found[keys[i]] = (int(limit), float(rps))
            for i in distinct:
                if keys[i] not in found:
                    found[keys[i]] = tune_phase(env, PHASES[i])
            best = [found[key][0] for key in keys]
            capacity = found[json.dumps([PHASES[0].conditions, PHASES[0].input_len])][1]
        rates = [p.load * capacity for p in PHASES]
        print(f"steady capacity {capacity / env.ts:.1f} req/s simulated; best static {best}")
        configs = [
            (f"static {DEFAULT_STATIC} (preset)", {"max_active": DEFAULT_STATIC}, None),
            ("best static per phase", {"max_active": best[0]}, best),
            ("adaptive", {"max_active": DEFAULT_STATIC, "limit_mode": "adaptive"}, None),
        ]
        if args.worker_config is not None:
            name, limits, oracle = configs[args.worker_config]
            _dump_run(env, run_config(env, name, limits, rates, oracle), args.worker_out)
            return 0
        if args.only:
            picked = [configs[int(i)] for i in args.only.split(",")]
            for name, limits, oracle in picked:
                run = run_config(env, name, limits, rates, oracle)
                rows = goodput(env, served(env, run))
                for phase, row in zip(PHASES, rows, strict=True):
                    print(f"  {phase.name:<20} {json.dumps(row)}")
                print(
                    "  limit:",
                    [round(s.limit) for s in run.samples[:: max(1, len(run.samples) // 40)]],
                )
            return 0
        if args.parallel:
            outs = [env.tmp / f"config-{i}.json" for i in range(len(configs))]
            best_text = ",".join(map(str, best)) + f"@{capacity}"
            commands = [
                [
                    *_worker_args(env),
                    "--best",
                    best_text,
                    "--worker-config",
                    str(i),
                    "--worker-out",
                    str(out),
                ]
                for i, out in enumerate(outs)
            ]
            loaded = [_load_run(data) for data in _parallel(commands, outs)]
            runs = [run for run, _ in loaded]
            results = {run.name: requests for run, requests in loaded}
        else:
            runs = [
                run_config(env, name, limits, rates, oracle) for name, limits, oracle in configs
            ]
            results = {run.name: served(env, run) for run in runs}
    table = {name: goodput(env, requests) for name, requests in results.items()}
    adaptive, oracle = table[runs[2].name], table[runs[1].name]
    shares = [
        a["goodput"] / o["goodput"] if o["goodput"] else None
        for a, o in zip(adaptive, oracle, strict=True)
    ]
    overall = {
        name: sum(row["goodput"] for row in rows) / len(rows) for name, rows in table.items()
    }
    ttft_recovery = recovery(env, results[runs[2].name], "admitted_ttft", "first")
    itl_recovery = recovery(env, results[runs[2].name], "tpot", "end")
    bands = steadiness(env, runs[2])
    print("\ngoodput (requests/s meeting TTFT <= 1 s and TPOT <= 30 ms, simulated time)")
    header = f"{'phase':<20}" + "".join(f"{r.name:>26}" for r in runs) + f"{'adaptive/best':>15}"
    print(header)
    for index, phase in enumerate(PHASES):
        cells = "".join(f"{table[r.name][index]['goodput']:>26.2f}" for r in runs)
        share = shares[index]
        print(f"{phase.name:<20}{cells}{'-' if share is None else f'{share:.2f}':>15}")
    print(f"{'overall (mean)':<20}" + "".join(f"{overall[r.name]:>26.2f}" for r in runs))
    print("\nadaptive: after each event, seconds until admitted TTFT p95 / TPOT p95 are back under")
    for phase, t1, t2 in zip(PHASES[1:], ttft_recovery, itl_recovery, strict=True):
        print(f"  {phase.name:<20} TTFT {t1!s:>6}  TPOT {t2!s:>6}")
    print("adaptive: the limit's largest distance from its mean over each phase's second half")
    for phase, band in zip(PHASES, bands, strict=True):
        print(f"  {phase.name:<20} {'-' if band is None else f'{band * 100:.1f} %'}")
    missed = []
    if any(s is None or s < TARGETS["goodput_share"] for s in shares):
        missed.append("adaptive below 90 % of the best static limit in a phase")
    if overall[runs[2].name] <= overall[runs[0].name]:
        missed.append("adaptive not above the preset's static limit overall")
    if any(t is None or t > TARGETS["recovery_s"] for t in ttft_recovery):
        missed.append("admitted TTFT p95 not back under the SLO within 10 s of an event")
    if any(b is None or b > TARGETS["band"] for b in bands):
        missed.append("the limit moved more than 15 % in a steady phase")
    print("\n" + ("targets met" if not missed else "missed: " + "; ".join(missed)))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "time_scale": env.ts,
                    "phase_s": env.phase_s,
                    "phases": [asdict(p) for p in PHASES],
                    "best_static": best,
                    "capacity_req_s_simulated": capacity / env.ts,
                    "goodput": table,
                    "adaptive_share_of_best": shares,
                    "overall": overall,
                    "recovery_ttft_s": ttft_recovery,
                    "recovery_tpot_s": itl_recovery,
                    "steady_band": bands,
                    "limits": {r.name: [[s.t, s.limit] for s in r.samples] for r in runs},
                    "missed": missed,
                },
                indent=1,
            )
        )
    if args.svg:
        args.svg.write_text(render_svg(figure(env, runs)))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
