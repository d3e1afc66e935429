"""Profiles hold the numbers docs/simulator.md derives; overrides and unknown names behave."""

from __future__ import annotations

import pytest

from llmctl.core.errors import ConfigError
from llmctl.sim.profiles import H100_LLAMA31_8B, PROFILES, RTX3090_QWEN25_14B_AWQ, get_profile


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_memory_and_batch_shape_are_plausible(name: str) -> None:
    p = get_profile(name)
    assert p.fb_base_mib + p.kv_pool_mib < p.fb_total_mib
    # Decode is memory-bound: a full batch costs more per step but far less per token.
    single = p.step_seconds(0, 1)
    full = p.step_seconds(0, p.max_num_seqs)
    assert full > single
    assert full / p.max_num_seqs < single / 4


def test_single_stream_decode_rates_match_the_documented_numbers() -> None:
    # docs/simulator.md: 12.7 ms and 6.45 ms per single-stream decode step.
    assert 75 <= 1 / RTX3090_QWEN25_14B_AWQ.step_seconds(0, 1) <= 82
    assert 150 <= 1 / H100_LLAMA31_8B.step_seconds(0, 1) <= 160
    # 256 short-context streams: ~60 ms per step, ~4,300 tokens/s (an extrapolation of the fit).
    h100_256 = 256 / H100_LLAMA31_8B.step_seconds(0, 256)
    assert 4_000 <= h100_256 <= 4_600


def test_h100_kv_capacity_is_the_published_fitted_value() -> None:
    # IBM inference-sim's defaults.yaml, Llama-3.1-8B-Instruct on one H100: total_kv_blocks 29205.
    assert H100_LLAMA31_8B.num_gpu_blocks == 29_205
    assert H100_LLAMA31_8B.kv_tokens == 29_205 * 16


def test_overrides_replace_only_what_is_given() -> None:
    p = get_profile("tiny").with_overrides(max_num_seqs=8, num_gpu_blocks=72)
    assert (p.max_num_seqs, p.num_gpu_blocks) == (8, 72)
    assert p.block_size == get_profile("tiny").block_size
    with pytest.raises(ConfigError, match="block-size must be at least 1"):
        p.with_overrides(block_size=0)
    with pytest.raises(ConfigError, match="known: tiny"):
        get_profile("a100")
