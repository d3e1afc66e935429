"""The environment each local service gets: a short allowlist of the caller's, plus what the stack
gives it, so no service inherits a secret meant for another (the gateway's API keys never reach
the engine, the HuggingFace token never reaches the gateway).

A service's own settings arrive as flags or as variables the stack sets for it by name (the
gateway's LLMCTL_API_KEYS and LLMCTL_ADMIN_KEY, the engine's HF_TOKEN and `engine.env`); of the
caller's environment only what locates programs and libraries, and the locale, passes. vLLM also
gets its own tuning, hardware and cache variables, which it reads from the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from llmctl.core.config import GATEWAY_ENV
from llmctl.stack.spec import StackSpec

# What any process needs to run as the user expects: find programs and libraries, its home,
# temporary files, the locale and time zone, the CA bundle.
COMMON = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
COMMON_PREFIXES = ("LC_",)

# vLLM reads these itself: GPUs and their libraries, threads, caches, model downloads (and the
# proxies and CA bundle a download may need).
VLLM = frozenset(
    {
        "LD_LIBRARY_PATH",
        "XDG_CACHE_HOME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    }
)
VLLM_PREFIXES = (
    "CUDA_",
    "NVIDIA_",
    "NCCL_",
    "VLLM_",
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TORCH",
    "PYTORCH_",
    "TRITON_",
    "OMP_",
    "MKL_",
    "KMP_",
)
# Tokens the hub client would read by themselves: the engine gets the stack's token only as the
# HF_TOKEN it sets (from engine.hf_token_env), never one that happens to be in the caller's shell.
HUB_TOKENS = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN"})


def secret_names(spec: StackSpec) -> frozenset[str]:
    """Variables that hold the stack's secrets or the gateway's settings: never inherited."""
    gw, eng = spec.gateway, spec.engine
    named = {gw.api_keys_env, gw.admin_key_env, eng.hf_token_env}
    return frozenset({n for n in named if n} | set(GATEWAY_ENV) | HUB_TOKENS)


def allowed(
    environ: Mapping[str, str],
    names: Iterable[str],
    prefixes: tuple[str, ...],
    never: frozenset[str],
) -> dict[str, str]:
    """The variables of `environ` in `names` or starting with a prefix, except those in `never`."""
    wanted = frozenset(names)
    return {
        key: value
        for key, value in environ.items()
        if key not in never and (key in wanted or key.startswith(prefixes))
    }


def common(environ: Mapping[str, str], spec: StackSpec) -> dict[str, str]:
    """What every service (and log copier) inherits."""
    return allowed(environ, COMMON, COMMON_PREFIXES, secret_names(spec))


def for_vllm(environ: Mapping[str, str], spec: StackSpec) -> dict[str, str]:
    """What a local vLLM inherits: the common set plus its own variables."""
    return allowed(environ, COMMON | VLLM, COMMON_PREFIXES + VLLM_PREFIXES, secret_names(spec))
