"""What counting a prompt's tokens at admission costs, on the event loop and through a thread.

    python benchmarks/tokenize_cost.py [--tokenizer FOLDER] [--reps 200]

Loads the gateway's TokenCounter from a model folder (default: SmolLM2-135M-Instruct as
`llmctl models prepare smollm2` builds it, a 49,152-token BPE with a ChatML template; else the tiny
test model) and, for chat and completion prompts of growing size, measures side by side in one
run: the count on the calling thread (what the event loop would spend), the same count handed to
the counter's thread pool and awaited (what a request waits, and the CPU the loop's own thread
spends on it), and the bare thread hop. The median of `--reps` runs each. Prints a Markdown table and one JSON line; the gateway's
INLINE_CHARS is set from it (count inline while that is cheaper than the hop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmctl.core.openai import CHAT, COMPLETIONS, Route
from llmctl.gateway.tokens import INLINE_CHARS, TokenCounter
from llmctl.stack.models import model_dir

SIZES = (100, 300, 1_000, 4_000, 16_000, 64_000)
_WORDS = [
    "the",
    "gateway",
    "counts",
    "every",
    "prompt",
    "before",
    "it",
    "takes",
    "a",
    "slot",
    "on",
    "the",
    "engine",
    "so",
    "a",
    "request",
    "that",
    "is",
    "too",
    "long",
    "never",
    "waits",
    "in",
    "the",
    "queue;",
    "naïve",
    "café",
    "日本語",
    "🚀",
    "numbers",
    "12345",
    "and",
    "punctuation!",
]


def _text(chars: int, rng: random.Random) -> str:
    words: list[str] = []
    total = 0
    while total < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        total += len(word) + 1
    return " ".join(words)[:chars]


def _median_us(run: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


async def _threaded(
    counter: TokenCounter, route: Route, body: dict[str, Any], reps: int
) -> dict[str, float]:
    """The count through the counter's thread pool: what the request waits, and what the event
    loop's own thread spends on it (CPU time); and a bare hop through the same pool. Medians, µs.
    (A ticker's longest gap was tried too: on a shared 2-core machine it measures the neighbours.)"""
    loop = asyncio.get_running_loop()
    pool = counter.pool()
    await loop.run_in_executor(pool, int)  # start the pool's thread outside the timing
    waits, busy, hops = [], [], []
    for _ in range(reps):
        cpu, start = time.thread_time(), time.perf_counter()
        await loop.run_in_executor(pool, counter.count, route, body)
        waits.append(time.perf_counter() - start)
        busy.append(time.thread_time() - cpu)
        start = time.perf_counter()
        await loop.run_in_executor(pool, int)
        hops.append(time.perf_counter() - start)
    return {
        "threaded_us": 1e6 * statistics.median(waits),
        "loop_cpu_us": 1e6 * statistics.median(busy),
        "hop_us": 1e6 * statistics.median(hops),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="A model folder with tokenizer.json.")
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    folder = args.tokenizer
    if folder is None:
        smollm2, tiny = model_dir("smollm2"), model_dir("tiny")
        folder = smollm2 if (smollm2 / "tokenizer.json").is_file() else tiny
    counter = TokenCounter.load(str(folder))
    if counter.tokenizer is None:
        raise SystemExit(f"no tokenizer.json in {folder}: run `llmctl models prepare smollm2`")
    rng = random.Random(0)
    rows = []
    print(f"tokenizer: {folder} ({counter.tokenizer.get_vocab_size()} tokens)\n")
    print(
        "| route | prompt chars | tokens | inline: the loop blocked | thread: the request waits "
        "| thread: the loop's CPU | bare hop |"
    )
    print("|---|---|---|---|---|---|---|")
    for chars in SIZES:
        text = _text(chars, rng)
        bodies: list[tuple[str, Route, dict[str, Any]]] = [
            ("chat", CHAT, {"messages": [{"role": "user", "content": text}]}),
            ("completions", COMPLETIONS, {"prompt": text}),
        ]
        for name, route, body in bodies:
            tokens = counter.count(route, body).tokens
            reps = max(20, args.reps * 1000 // max(chars, 1000))
            inline = _median_us(lambda route=route, body=body: counter.count(route, body), reps)
            row = {"route": name, "chars": chars, "tokens": tokens, "inline_us": inline}
            row |= asyncio.run(_threaded(counter, route, body, reps))
            rows.append(row)
            print(
                f"| {name} | {chars:,} | {tokens:,} | {inline:,.0f} µs | "
                f"{row['threaded_us']:,.0f} µs | {row['loop_cpu_us']:,.0f} µs | "
                f"{row['hop_us']:,.0f} µs |"
            )
    counter.close()
    print(f"\nINLINE_CHARS = {INLINE_CHARS}")
    print(json.dumps({"benchmark": "tokenize_cost", "tokenizer": str(folder), "rows": rows}))


if __name__ == "__main__":
    main()
