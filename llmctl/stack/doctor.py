"""`llmctl doctor`: what this machine has for running stacks, and what a given stack needs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from llmctl.core.command import run_command
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


def check_docker(need: bool, need_gpu: bool) -> list[Check]:
    """Docker, graded for a stack: the very checks `up` runs before it starts (DockerRunner's
    probe), so doctor cannot pass where up fails, nor fail where up works."""
    from python_on_whales import DockerClient

    from llmctl.stack.dockercli import DockerRunner

    bad: Level = "fail" if need else "warn"
    checks = []
    for finding in DockerRunner(DockerClient()).probe(gpu=True):
        if finding.ok:
            checks.append(Check(finding.name, "ok", finding.detail))
            continue
        level: Level = bad
        if finding.name == "nvidia container runtime":
            level = "fail" if need_gpu else "warn"
        checks.append(Check(finding.name, level, finding.detail))
    return checks


def check_prometheus(need: bool) -> Check:
    path = shutil.which("prometheus")
    if path is None:
        level: Level = "warn" if need else "ok"
        return Check(
            "prometheus", level, "not on PATH: local stacks run without it (apt install prometheus)"
        )
    result = run_command([path, "--version"], timeout_s=10.0)
    version = result.text.splitlines()[0] if result.ok and result.text else "unknown version"
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
        result = run_command([python, "-c", "import vllm; print(vllm.__version__)"], timeout_s=120)
        last = result.text.splitlines()[-1] if result.text else "no output"
        if result.ok:
            return Check("vllm", "ok", f"{last} in {python}")
        return Check("vllm", bad, f"{python} cannot import vllm: {last}")
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
