"""How much GPU memory a vLLM engine needs: the model's weights, the KV cache of one sequence at the
configured context length, and an allowance for activations and CUDA graphs. vLLM takes
`gpu_memory_utilization` x the device's memory and refuses to start when these do not fit in it.

Each figure comes from the best source there is, and says which:
- the model's folder (a local path, or its snapshot in the HuggingFace cache): the sizes of its
  `*.safetensors` files are the weights; `config.json` gives the layers, KV heads and head size
  (the KV cache per token) and the model's own context length (vLLM's default max_model_len);
- else the model's name: a size (`14B`, `8B`, `135M`) times the bytes a parameter takes in its
  format (4-bit AWQ/GPTQ 0.68, measured on Qwen2.5-14B-Instruct-AWQ, 9.98 GB for 14.7 B
  parameters, its embeddings unquantised; 8-bit 1.1; else 2: bf16/fp16);
- else, for the KV cache, a table of the presets' architectures (KNOWN_SHAPES).
The KV cache is bf16/fp16 (2 bytes a value) unless `--kv-cache-dtype fp8...` (1). All of it is an
estimate for `doctor` to warn with, not vLLM's own profile run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.stack.spec import EngineSpec

GIB = 1 << 30
ACTIVATIONS = 1 * GIB  # activations at the largest batch, CUDA graphs, sampler: vLLM's rest
# name fragment (lowercase) -> (layers, KV heads, head size, the model's own context length)
KNOWN_SHAPES = {
    "qwen2.5-14b": (48, 8, 128, 32768),
    "llama-3.1-8b": (32, 8, 128, 131072),
}
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True)
class MemoryNeed:
    """The engine's need in bytes (None: not known), and how each part was found."""

    weights: int | None
    weights_how: str
    kv_per_token: int | None
    kv_how: str
    context: int | None
    folder: Path | None  # the model's files, when they are on this machine

    @property
    def kv_one_sequence(self) -> int | None:
        if self.kv_per_token is None or self.context is None:
            return None
        return self.kv_per_token * self.context

    @property
    def total(self) -> int | None:
        """Weights + one sequence's KV cache + ACTIVATIONS; None unless all are known."""
        kv = self.kv_one_sequence
        return None if self.weights is None or kv is None else self.weights + kv + ACTIVATIONS


def model_folder(model: str, hf_cache: Path) -> Path | None:
    """The folder holding `model`: a local path, or its newest snapshot in the hub cache."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    if "/" not in model or model.startswith(("/", ".", "~")):
        return None
    repo = hf_cache / "hub" / f"models--{model.replace('/', '--')}"
    ref = repo / "refs" / "main"
    try:
        snapshot = repo / "snapshots" / ref.read_text().strip()
    except OSError:
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        snapshot = snapshots[-1] if snapshots else repo / "missing"
    return snapshot if snapshot.is_dir() else None


def _config(folder: Path | None) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text()) if folder else {}
    except (OSError, ValueError):
        return {}
    text = data.get("text_config")  # multimodal models keep the language model's shape here
    return {**data, **text} if isinstance(text, dict) else data if isinstance(data, dict) else {}


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def bytes_per_param(engine: EngineSpec, config: dict[str, Any]) -> float:
    """What a parameter takes in the engine's format (see the module docstring)."""
    quant = config.get("quantization_config")
    bits = quant.get("bits") if isinstance(quant, dict) else None
    method = str(quant.get("quant_method", "")) if isinstance(quant, dict) else ""
    words = " ".join([engine.model, _flag(engine.extra_args, "--quantization") or "", method])
    words = words.lower()
    if bits == 4 or re.search(r"awq|gptq|int4|4bit|w4a16|bnb", words):
        return 0.68
    if bits == 8 or re.search(r"fp8|int8|8bit|w8a8", words):
        return 1.1
    return 4.0 if _flag(engine.extra_args, "--dtype") in ("float32", "float") else 2.0


def parameters_in_name(model: str) -> float | None:
    """`Qwen2.5-14B-Instruct` -> 14e9, `SmolLM2-135M` -> 135e6 (the last size in the name)."""
    sizes = _SIZE.findall(model.rsplit("/", 1)[-1])
    if not sizes:
        return None
    number, unit = sizes[-1]
    return float(number) * (1e9 if unit.lower() == "b" else 1e6)


def estimate(engine: EngineSpec, hf_cache: Path) -> MemoryNeed:
    folder = model_folder(engine.model, hf_cache)
    config = _config(folder)
    weights_files = sorted(folder.glob("*.safetensors")) if folder else []
    if weights_files:
        weights: int | None = sum(p.stat().st_size for p in weights_files)
        weights_how = f"{len(weights_files)} safetensors file(s) in {folder}"
    else:
        params = parameters_in_name(engine.model)
        per = bytes_per_param(engine, config)
        weights = int(params * per) if params else None
        weights_how = (
            f"{params / 1e9:g} B parameters x {per:g} bytes (from the model's name)"
            if params
            else "unknown (no weights here and no size in the model's name)"
        )
    kv_bytes = 1 if (_flag(engine.extra_args, "--kv-cache-dtype") or "").startswith("fp8") else 2
    shape = _shape(config)
    kv_how = "config.json"
    if shape is None:
        lowered = engine.model.lower()
        shape = next((s for k, s in KNOWN_SHAPES.items() if k in lowered), None)
        kv_how = "llmctl's table of known models"
    kv_per_token = None
    context = engine.max_model_len
    if shape is not None:
        layers, kv_heads, head_dim, own_context = shape
        kv_per_token = 2 * layers * kv_heads * head_dim * kv_bytes
        context = context or own_context
        kv_how = f"2 x {layers} layers x {kv_heads} KV heads x {head_dim} x {kv_bytes} B ({kv_how})"
    else:
        kv_how = "unknown (no config.json for the model here)"
    return MemoryNeed(weights, weights_how, kv_per_token, kv_how, context, folder)


def _shape(config: dict[str, Any]) -> tuple[int, int, int, int] | None:
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
        context = int(config.get("max_position_embeddings") or 0)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return layers, kv_heads, head_dim, context
