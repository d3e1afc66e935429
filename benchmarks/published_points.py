"""Published vLLM measurements the simulator's GPU profiles are fitted to and checked against.

Each point is one workload as its source ran it (input and output lengths, concurrency, request
count) and the numbers it reported. `role` says how the point is used: "fit" (a constant was fitted
to it), "held-out" (not used by any fit: a test of the model) or "excluded" (reported for
completeness; `note` says why it cannot be compared). A metric a source did not publish is None.
Sources, and how each number was read, are in docs/simulator.md ("Calibration").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["fit", "held-out", "excluded"]

BLOG = "vLLM blog, FP8 KV cache (2026-04-22)"
YOBITEL = "yobitelcomm/bench concurrency sweep (vLLM 0.21)"


@dataclass(frozen=True)
class PublishedPoint:
    """One published run: its workload, what it reported, and how this project uses it."""

    name: str
    source: str
    profile: str
    concurrency: int
    requests: int
    input_len: int
    output_len: int
    spread: float = 0.0  # input and output lengths uniform within mean x (1 +- spread)
    output_tps: float | None = None  # output tokens/s over the run
    ttft_ms: float | None = None  # median time to first token
    itl_ms: float | None = None  # median inter-token latency (pooled gaps)
    tpot_ms: float | None = None  # median of each request's mean inter-token time
    role: Role = "fit"
    excluded: tuple[str, ...] = ()  # metrics of this point left out of the acceptance check
    note: str = ""
    time_scale: float = 10.0  # how much faster than real time the replay runs
    duration_s: float | None = None  # replay for this long (after a 3 s warm-up), not `requests`
    # Live sweeps: the API server's CPU seconds per second (its busy share), which the time model's
    # request_s, output_step_s and output_s must account for.
    api_busy: float | None = None


def _fig2(input_len: int, ttft_ms: float, role: Role) -> PublishedPoint:
    # Concurrency 1, 128 output tokens (`vllm bench serve`). ITL: the post's fitted line
    # (6.44 ms + 4.37e-5 ms per input token); TTFT: Figure 2's bf16 marker, read off the image.
    return PublishedPoint(
        name=f"blog fig2 c=1 in={input_len}",
        source=BLOG,
        profile="h100-llama3.1-8b",
        concurrency=1,
        requests=3,
        input_len=input_len,
        output_len=128,
        itl_ms=6.44 + 4.37e-5 * input_len,
        ttft_ms=ttft_ms,
        role=role,
        time_scale=2.0,
    )


def _yobitel(
    concurrency: int,
    tps: float,
    ttft: float,
    tpot: float,
    role: Role = "fit",
    excluded: tuple[str, ...] = (),
    note: str = "",
) -> PublishedPoint:
    # llm.inference.chatbot-short: short built-in prompts (~42 tokens with Llama-3.1's chat
    # template, an estimate), max_tokens 128 (median output 128), closed loop for 120 s. Replayed
    # as a closed loop in its steady state too: 30 s after a 3 s warm-up, so the first requests,
    # which all arrive at once, are not an eighth of the sample as they would be in 8 requests per
    # client. `requests` is the number of distinct prompts, more than the replay sends.
    return PublishedPoint(
        name=f"yobitel c={concurrency}",
        source=YOBITEL,
        profile="h100-llama3.1-8b",
        concurrency=concurrency,
        requests=60 * concurrency,
        duration_s=30.0,
        input_len=42,
        output_len=128,
        output_tps=tps,
        ttft_ms=ttft,
        tpot_ms=tpot,
        role=role,
        excluded=excluded,
        note=note,
        time_scale=1.0,
    )


CLIENT_GAP = (
    "throughput is client-limited: 128 tokens at the published TTFT and TPOT take 837 ms, so one "
    "stream would make 153 tok/s; the published 122 tok/s leaves ~200 ms per request in the client"
)
CLIENT_CEILING = (
    "client-limited: c=16 and c=64 deliver the same ~1,350 tok/s (c=64's TPOT x concurrency is "
    "1,364 tok/s), the ceiling of the LiteLLM-in-threads client, not of the H100"
)

H100_POINTS: tuple[PublishedPoint, ...] = (
    _fig2(32_768, 1321, "fit"),
    _fig2(65_536, 3569, "fit"),
    _fig2(130_944, 10116, "fit"),
    _fig2(49_152, 2375, "held-out"),
    _fig2(81_920, 5100, "held-out"),
    _fig2(98_304, 6776, "held-out"),
    _fig2(114_688, 8749, "held-out"),
    PublishedPoint(
        name="blog table4 bf16 c=8",
        source=BLOG,
        profile="h100-llama3.1-8b",
        concurrency=8,
        requests=150,
        input_len=20_000,
        output_len=2_000,
        spread=0.15,
        output_tps=450.3,
        ttft_ms=763.6,
        itl_ms=15.18,
        time_scale=4.0,
    ),
    _yobitel(1, 122.2, 13.98, 6.48, excluded=("output_tps",), note=CLIENT_GAP),
    _yobitel(4, 580.3, 22.75, 6.59, role="held-out"),
    _yobitel(16, 1384.2, 41.69, 10.94, role="excluded", note=CLIENT_CEILING),
    _yobitel(64, 1312.3, 86.92, 46.91, role="excluded", note=CLIENT_CEILING),
)

ALL_POINTS = H100_POINTS
