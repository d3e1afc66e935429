"""Render a StackSpec into compose, Prometheus and Grafana files; writing them is a separate step.

Every `templates/**/*.j2` but another target's (`templates/kubernetes/`) goes through one Jinja
environment (StrictUndefined, so a typo in a template is an error, not an empty string) into
`.llmctl/<stack>/<path without .j2>`.

A docker stack's folder is self-contained, so it can be moved to the GPU host: when llmctl runs
from a checkout (which has docker/gateway.Dockerfile), the llmctl image's build context is copied
into `build/` and compose builds from that relative path; installed from a wheel, compose uses
the image `gateway.image` names, built or pulled beforehand.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from llmctl.core import metrics
from llmctl.core.errors import ConfigError, LlmctlError
from llmctl.core.files import write_file
from llmctl.core.modelfiles import is_hub_id
from llmctl.core.resources import data_dir
from llmctl.stack import commands
from llmctl.stack.credentials import (
    ADMIN_KEY,
    ENV_FILE,
    GRAFANA_PASSWORD,
    StackSecrets,
    admin_key_source,
    env_file_text,
)
from llmctl.stack.spec import StackSpec, connect_host, host_port

DASHBOARDS_OUT = "grafana/dashboards"
GATEWAY_DOCKERFILE = "docker/gateway.Dockerfile"
BUILD_DIR = "build"
# What the image's build needs of a checkout (as the root .dockerignore lets through).
BUILD_SOURCES = ("pyproject.toml", "README.md", "llmctl", "templates", "dashboards", "stacks")
# Templates of the other render targets (kubernetes/: llmctl.stack.kubernetes renders them).
OTHER_TARGETS = ("kubernetes/",)
# Folders whose contents render() owns completely: stale files there are removed by write().
MANAGED_DIRS = ("prometheus/rules", DASHBOARDS_OUT, BUILD_DIR)

ENGINE_PORT = 8000  # inside the compose network
GATEWAY_PORT = 8080
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
DCGM_PORT = 9400
OPEN_WEBUI_PORT = 8080


def yaml_str(value: object) -> str:
    """`value` as a double-quoted YAML scalar in plain ASCII, which no value can break out of:
    `"` and `\\` escaped, everything outside printable ASCII written as `\\uXXXX` or `\\UXXXXXXXX`.

    (json.dumps is not enough: it writes a character beyond the BMP, an emoji, as a UTF-16
    surrogate pair, which YAML parsers reject, and with ensure_ascii off it writes line
    separators such as U+2028 raw, which YAML 1.1 parsers take for line breaks.)"""
    out = ['"']
    for char in str(value):
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _compose_str(value: object) -> str:
    """A YAML scalar for compose.yaml, where `$` starts an interpolation unless doubled."""
    return yaml_str(str(value).replace("$", "$$"))


def _compose_list(values: list[str]) -> str:
    return "[" + ", ".join(_compose_str(v) for v in values) + "]"


def environment(templates: Path | None = None) -> jinja2.Environment:
    """The one Jinja environment every llmctl template renders in."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates or data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(q=yaml_str, cq=_compose_str, clist=_compose_list)
    return env


def context(spec: StackSpec, *, cwd: Path | None = None) -> dict[str, Any]:
    """The variables templates see: spec, alerts, secrets refs, m (metric names), targets, ..."""
    cwd = cwd or Path.cwd()
    docker = spec.runtime == "docker"
    eng, gw = spec.engine, spec.gateway
    upstream = f"http://engine:{ENGINE_PORT}"
    local_host = connect_host(spec.ports.bind_address)
    return {
        "spec": spec,
        "alerts": spec.alerts,
        "m": metrics,
        "secrets": {
            "grafana_admin_password": _required(GRAFANA_PASSWORD),
            "admin_key": _admin_key_ref(spec),
            "api_keys": f"${{{gw.api_keys_env}:-}}" if gw.api_keys_env else None,
            "hf_token": f"${{{eng.hf_token_env}:-}}" if eng.hf_token_env else None,
        },
        "files": {
            "api_keys": _abspath(gw.api_keys_file, cwd),
            "tenants": _abspath(gw.tenants_file, cwd),
            "admin_key": _abspath(gw.admin_key_file, cwd),
        },
        "targets": _targets(spec, local_host) if not docker else _docker_targets(spec),
        "build": _build_context() if docker else None,
        "ports_in": {
            "engine": ENGINE_PORT,
            "gateway": GATEWAY_PORT,
            "prometheus": PROMETHEUS_PORT,
            "grafana": GRAFANA_PORT,
            "dcgm": DCGM_PORT,
            "open_webui": OPEN_WEBUI_PORT,
        },
        "engine_command": (
            commands.sim_args(eng, host="0.0.0.0", port=ENGINE_PORT)
            if eng.kind == "sim"
            else commands.vllm_args(eng, host="0.0.0.0", port=ENGINE_PORT)
        ),
        "vllm_entrypoint": ["python3", "-m", commands.VLLM_MODULE],
        "gateway_command": commands.gateway_args(
            gw,
            host="0.0.0.0",
            port=GATEWAY_PORT,
            upstream=upstream,
            model=eng.name,
            tokenizer=_gateway_tokenizer(spec),
        ),
        "gateway_tokenizer": _gateway_tokenizer(spec),
        "grafana_datasource_uid": metrics.GRAFANA_DATASOURCE_UID,
    }


def _gateway_tokenizer(spec: StackSpec) -> str | None:
    """The hub id the docker gateway counts prompt tokens with: the vLLM engine's model, read from
    the HF cache the engine downloads it into (mounted read-only; the gateway starts once the
    engine is healthy, so the files are there). Local stacks decide in stack/local.py."""
    eng = spec.engine
    if spec.runtime != "docker" or eng.kind != "vllm" or not is_hub_id(eng.model):
        return None
    return eng.model


def render(
    spec: StackSpec,
    stack_secrets: StackSecrets | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    templates: Path | None = None,
    dashboards: Path | None = None,
) -> dict[str, str]:
    """Every output file of the stack, relative path -> text. Nothing touches the disk."""
    environ = os.environ if environ is None else environ
    stack_secrets = stack_secrets or StackSecrets.generate(spec)
    env = environment(templates)
    ctx = context(spec, cwd=cwd)
    files: dict[str, str] = {}
    for name in sorted(env.list_templates(filter_func=_compose_template)):
        try:
            files[name.removesuffix(".j2")] = env.get_template(name).render(ctx)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template {name}: {exc}") from exc
    dash_dir = dashboards or _dashboards_dir()
    if dash_dir is not None:
        for path in sorted(dash_dir.glob("*.json")):
            files[f"{DASHBOARDS_OUT}/{path.name}"] = path.read_text()
    if ctx["build"] is not None:
        files.update(build_files())
    files[ENV_FILE] = env_file_text(spec, stack_secrets, environ)
    return files


def _compose_template(name: str) -> bool:
    return name.endswith(".j2") and not name.startswith(OTHER_TARGETS)


def write(files: Mapping[str, str], outdir: Path) -> list[Path]:
    """Write rendered files under `outdir` (.env with mode 0600); drop stale managed files."""
    try:
        return _write(files, outdir)
    except OSError as exc:
        where = exc.filename or outdir
        raise ConfigError(f"cannot write the stack's files to {where}: {exc.strerror}") from exc


def _write(files: Mapping[str, str], outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for rel, text in files.items():
        path = outdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, text, private=rel == ENV_FILE)
        written.append(path)
    for managed in MANAGED_DIRS:
        folder = outdir / managed
        if folder.is_dir():
            for stale in folder.rglob("*"):
                if stale.is_file() and stale.relative_to(outdir).as_posix() not in files:
                    stale.unlink()
    return written


def render_stack(
    spec: StackSpec, outdir: Path, *, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """Render and write, keeping the secrets an earlier render generated."""
    return write(render(spec, StackSecrets.load(spec, outdir), environ=environ), outdir)


def _dashboards_dir() -> Path | None:
    try:
        return data_dir("dashboards")
    except LlmctlError:  # a build without dashboards still renders everything else
        return None


def _checkout() -> Path | None:
    """The checkout llmctl runs from, when it is one (it has the image's Dockerfile)."""
    root = data_dir("templates").parent
    return root if (root / GATEWAY_DOCKERFILE).is_file() else None


def _build_context() -> dict[str, str] | None:
    """Build the llmctl image from the copy of this checkout in the stack's folder (relative, so
    the folder can move), when there is a checkout to copy (not in a wheel)."""
    if _checkout() is None:
        return None
    return {"context": f"./{BUILD_DIR}", "dockerfile": GATEWAY_DOCKERFILE}


@functools.cache
def build_files() -> dict[str, str]:
    """The image's build context, `build/<path>` -> text, read once per process."""
    root = _checkout()
    if root is None:
        return {}
    paths = [root / GATEWAY_DOCKERFILE]
    for name in BUILD_SOURCES:
        source = root / name
        paths += sorted(source.rglob("*")) if source.is_dir() else [source]
    files = {f"{BUILD_DIR}/.dockerignore": "**/__pycache__\n**/*.pyc\n"}
    for path in paths:
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"{BUILD_DIR}/{path.relative_to(root).as_posix()}"] = path.read_text()
    return files


def _required(name: str) -> str:
    """A compose reference to a generated .env value that fails loudly when .env is missing."""
    return "${" + name + ":?run llmctl render}"


def _admin_key_ref(spec: StackSpec) -> str | None:
    source = admin_key_source(spec)
    if source == "env":
        return f"${{{spec.gateway.admin_key_env}:-}}"
    if source == "generated":
        return _required(ADMIN_KEY)
    return None  # a file is mounted instead (see files.admin_key), or there is no admin key


def _abspath(raw: str | None, cwd: Path) -> str | None:
    if raw is None:
        return None
    path = Path(raw).expanduser()
    return str(path if path.is_absolute() else (cwd / path).resolve())


def _targets(spec: StackSpec, host: str) -> dict[str, Any]:
    """Scrape targets for the local runtime: everything on this host's ports."""
    engine = f"127.0.0.1:{spec.ports.engine}"
    gpu = {"address": engine, "path": "/dcgm/metrics"} if spec.engine.kind == "sim" else None
    return {
        "gateway": host_port(host, spec.ports.gateway),
        "engine": engine,
        "gpu": gpu,
        "prometheus": host_port(host, spec.ports.prometheus),
    }


def _docker_targets(spec: StackSpec) -> dict[str, Any]:
    """Scrape targets for compose: service names on the stack's network."""
    engine = f"engine:{ENGINE_PORT}"
    gpu: dict[str, str] | None = None
    if spec.engine.kind == "sim":
        gpu = {"address": engine, "path": "/dcgm/metrics"}
    elif spec.observability.dcgm_exporter:
        gpu = {"address": f"dcgm-exporter:{DCGM_PORT}", "path": "/metrics"}
    return {
        "gateway": f"gateway:{GATEWAY_PORT}",
        "engine": engine,
        "gpu": gpu,
        "prometheus": f"localhost:{PROMETHEUS_PORT}",
    }
