"""The time model: how long one engine step takes, given the work the scheduler put into it.

One step of vLLM on a GPU costs, in seconds,

    step_s                                     launching the step, scheduling, synchronising
  + seq_s       x sequences in the step        sampling and per-request bookkeeping
  + max(weights_s, token_s x tokens)           the matrix multiplies: reading every weight once
                                               (memory-bound) or computing every token in the
                                               step, prefill and decode alike (compute-bound)
  + pair_s      x prefill attention pairs      each new prompt token against every token before
                                               it and itself: quadratic in the prompt
  + context_s   x decode context               each decoding sequence reads its whole KV cache

Around the engine sits vLLM's API server, one process that works through its jobs in order:
`request_s` per request (HTTP, tokenisation, hand-off) before the scheduler sees it, and for each
step that produced tokens `output_step_s` (its pass over the engine's outputs) plus `output_s` per
output token (detokenising, streaming) before the client sees them (`output_seconds`). So decode
is flat in the batch size until the batch's compute outweighs the weight reads, grows with the
context of the decoding sequences, long prompts cost more than linearly, and a busy API server
delays new requests. The constants are per profile (profiles.py); docs/simulator.md gives their sources and
the fits that produced them. Pure arithmetic, no clock and no I/O, so policies can ask what a step
would cost.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class StepCosts:
    """The time model's constants for one GPU + model, in seconds (before `--time-scale`)."""

    step_s: float
    seq_s: float
    token_s: float
    weights_s: float = 0.0
    pair_s: float = 0.0
    context_s: float = 0.0
    request_s: float = 0.0
    output_s: float = 0.0
    output_step_s: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must not be negative")


def attention_pairs(start: int, tokens: int) -> int:
    """Causal attention pairs of a prefill chunk: `tokens` new tokens at positions `start`..
    each attend to every earlier token and to themselves."""
    return tokens * start + tokens * (tokens + 1) // 2


def step_seconds(
    costs: StepCosts, *, seqs: int, tokens: int, pairs: int = 0, context: int = 0
) -> float:
    """Seconds one engine step takes.

    `seqs`: sequences in the step (decoding, or prefilling a chunk); `tokens`: tokens they compute
    (one per decoding sequence plus the prefill chunks); `pairs`: the prefill chunks' attention
    pairs (`attention_pairs`); `context`: tokens already cached, summed over the decoding sequences.
    """
    return (
        costs.step_s
        + costs.seq_s * seqs
        + max(costs.weights_s, costs.token_s * tokens)
        + costs.pair_s * pairs
        + costs.context_s * context
    )


def output_seconds(costs: StepCosts, tokens: int) -> float:
    """Seconds of the API server's work on one step's `tokens` output tokens: one pass over the
    step's outputs plus each token's detokenising and streaming; nothing for a step without any."""
    return costs.output_step_s + costs.output_s * tokens if tokens else 0.0
