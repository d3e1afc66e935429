"""Render a StackSpec for Kubernetes: a kustomize base (`llmctl render --target kubernetes`).

The same stack file gives the same gateway settings, alert and recording rules and dashboards as
the compose target; only the shapes change. The engine is a StatefulSet behind a headless Service
whose name the gateway re-resolves (`--upstream-dns`); the gateway is one Deployment replica (its
limits live in one process); its settings are a generated ConfigMap that its command line refers
to. Keys live only in Secrets that kustomize makes from `secrets/*`: render creates those files
once (empty, or with the admin key llmctl generated) and never reads a key the user holds.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

from llmctl.core import metrics
from llmctl.core.config import GATEWAY_ENV, GATEWAY_FLAGS
from llmctl.core.errors import ConfigError, LlmctlError
from llmctl.core.files import write_file
from llmctl.core.resources import data_dir
from llmctl.stack import commands, render
from llmctl.stack.credentials import ADMIN_KEY, StackSecrets, admin_key_source, read_env_file
from llmctl.stack.spec import StackSpec

TEMPLATES = "kubernetes"
OUT = "kubernetes"  # under .llmctl/<stack>/
SECRETS = "secrets"  # files the secret generators read: created once, never overwritten
RULE_TEMPLATES = ("prometheus/rules/alerts.yml.j2", "prometheus/rules/recording.yml.j2")
ENGINE, GATEWAY = "llmctl-engine", "llmctl-gateway"
ENGINE_PORT, GATEWAY_PORT = render.ENGINE_PORT, render.GATEWAY_PORT
HF_HOME = "/root/.cache/huggingface"
TENANTS_DIR = "/etc/llmctl/tenants"
# The llmctl image's user (docker/gateway.Dockerfile).
LLMCTL_UID = 10001
# Requests and limits where the stack file has no key: the gateway is one asyncio process.
GATEWAY_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}
ENGINE_DEFAULTS = {"vllm": ("8", "32Gi"), "sim": ("1", "512Mi")}
PROBE_PERIOD_S = 10

_BINARY = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SUFFIXES = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def namespace(spec: StackSpec) -> str:
    """The stack's namespace: kubernetes.namespace, else `llmctl-<name>` as a DNS label."""
    if spec.kubernetes.namespace:
        return spec.kubernetes.namespace
    return _label("llmctl-" + re.sub(r"[^a-z0-9-]", "-", spec.name))


def engine_dns(spec: StackSpec) -> str:
    """The headless Service's name, whose addresses are the ready engine pods."""
    domain = spec.kubernetes.cluster_domain
    return f"http://{ENGINE}.{namespace(spec)}.svc.{domain}:{ENGINE_PORT}"


def memory_bytes(text: str) -> int:
    """`32Gi` (Kubernetes) or `8g` (Docker's shm_size, binary units) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|[bkmgt]?)", text)
    if match is None:
        raise ConfigError(f"{text!r} is not an amount of memory (e.g. 32Gi)")
    number, unit = match.groups()
    return int(number) * (_SUFFIXES.get(unit) or _BINARY[unit])


def quantity(size: int) -> str:
    """Bytes as the largest Kubernetes binary unit that holds them exactly."""
    for suffix, factor in sorted(_SUFFIXES.items(), key=lambda item: -item[1]):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def gateway_settings(spec: StackSpec) -> dict[str, str]:
    """The gateway's settings ConfigMap: variable -> value, one per set GatewayConfig field.

    A field the gateway reads from the environment keeps that variable's name (MAX_ACTIVE, ...);
    the others are LLMCTL_GATEWAY_<FIELD>. Plain on/off flags are not settings with a value, so
    they stay on the command line (see gateway_command)."""
    if not spec.engine.name.isprintable():
        # kustomize reads gateway-settings.env line by line, each value taken as written.
        raise ConfigError(
            f"engine.served_name / engine.model {spec.engine.name!r}: the kubernetes target "
            "writes it into a ConfigMap (gateway-settings.env), which takes printable text only"
        )
    values = commands.gateway_values(
        spec.gateway,
        host="0.0.0.0",
        port=GATEWAY_PORT,
        model=spec.engine.name,
        upstream_dns=engine_dns(spec),
    )
    return {
        _setting_var(name): commands.flag_text(value)
        for name, value in values.items()
        if value is not None and not isinstance(value, bool)
    }


def gateway_command(spec: StackSpec) -> list[str]:
    """`llmctl` arguments for the gateway: every setting as `--flag $(VAR)` (Kubernetes fills
    each from the ConfigMap), so editing the ConfigMap is how settings change."""
    by_var = {_setting_var(name): name for name in GATEWAY_FLAGS}
    args = ["gateway", "serve"]
    for var in gateway_settings(spec):
        args += [GATEWAY_FLAGS[by_var[var]], f"$({var})"]
    if spec.gateway.priority_to_engine:
        args.append(GATEWAY_FLAGS["priority_to_engine"])
    if spec.gateway.tenants_file:
        args += ["--tenants-file", f"{TENANTS_DIR}/tenants.toml"]
    return args


def _setting_var(field: str) -> str:
    known = {name: var for var, name in GATEWAY_ENV.items()}
    return known.get(field) or f"LLMCTL_GATEWAY_{field.upper()}"


def context(
    spec: StackSpec, stack_secrets: StackSecrets, dashboards: list[str], env: jinja2.Environment
) -> dict[str, Any]:
    """What the kubernetes templates see (`dashboards`: the file names shipped as ConfigMaps;
    `env` renders the compose rule templates the PrometheusRule carries)."""
    eng, kube = spec.engine, spec.kubernetes
    cpu, memory = ENGINE_DEFAULTS[eng.kind]
    cpu, memory = kube.engine_cpu or cpu, kube.engine_memory or memory
    shm = memory_bytes(eng.shm_size) if eng.kind == "vllm" else 0
    instance = _label(spec.name)
    return {
        "spec": spec,
        "m": metrics,
        "namespace": namespace(spec),
        "names": {"engine": ENGINE, "gateway": GATEWAY},
        "labels": {c: _labels(instance, c) for c in ("engine", "gateway", "monitoring")},
        "selectors": {c: _selector(instance, c) for c in ("engine", "gateway")},
        "ports": {"engine": ENGINE_PORT, "gateway": GATEWAY_PORT},
        "engine_image": eng.image if eng.kind == "vllm" else spec.gateway.image,
        "engine_command": (
            ["python3", "-m", commands.VLLM_MODULE] if eng.kind == "vllm" else ["llmctl"]
        ),
        "engine_args": [
            _literal(arg)
            for arg in (
                commands.vllm_args(eng, host="0.0.0.0", port=ENGINE_PORT)
                if eng.kind == "vllm"
                else commands.sim_args(eng, host="0.0.0.0", port=ENGINE_PORT)
            )
        ],
        "engine_resources": {
            "requests": {"cpu": cpu, "memory": memory},
            # /dev/shm is memory the pod is charged for: the limit makes room for it.
            "limits": {"cpu": cpu, "memory": quantity(memory_bytes(memory) + shm)},
        },
        "shm": quantity(shm),
        "startup_failures": math.ceil(eng.startup_timeout_s / PROBE_PERIOD_S),
        "probe_period": PROBE_PERIOD_S,
        "hf_home": HF_HOME,
        "gateway_resources": GATEWAY_RESOURCES,
        "gateway_command": gateway_command(spec),
        "gateway_settings": gateway_settings(spec),
        "tenants_dir": TENANTS_DIR,
        "uid": LLMCTL_UID,
        "dashboards": dashboards,
        "rule_groups": _rule_groups(spec, env),
        "datasource_uid": metrics.GRAFANA_DATASOURCE_UID,
        "demand_query": _demand_query(spec),
        "secrets": _secret_files(spec, stack_secrets),
    }


def render_kubernetes(
    spec: StackSpec,
    stack_secrets: StackSecrets | None = None,
    *,
    templates: Path | None = None,
    dashboards: Path | None = None,
) -> dict[str, str]:
    """Every file of the kustomize base, relative path -> text. Nothing touches the disk."""
    stack_secrets = stack_secrets or StackSecrets.generate(spec)
    env = _environment(templates)
    shipped = _dashboards(dashboards) if spec.observability.grafana else []
    ctx = context(spec, stack_secrets, [path.name for path in shipped], env)
    files: dict[str, str] = {}
    for name in sorted(env.list_templates(filter_func=_ours)):
        try:
            text = env.get_template(name).render(ctx)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template {name}: {exc}") from exc
        if text.strip():  # a template for a part the stack does not have renders empty
            files[name.removeprefix(TEMPLATES + "/").removesuffix(".j2")] = text
    files.update({f"dashboards/{path.name}": path.read_text() for path in shipped})
    files.update(ctx["secrets"])
    return files


def write_kubernetes(files: Mapping[str, str], outdir: Path) -> list[Path]:
    """Write the base under `outdir`: secrets/* only where absent (0600); stale files go."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        written = []
        for rel, text in files.items():
            path = outdir / rel
            secret = rel.startswith(SECRETS + "/")
            if secret and path.exists():
                continue  # the user's keys: never overwritten
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(write_file(path, text, private=secret))
        for stale in outdir.rglob("*"):
            rel = stale.relative_to(outdir).as_posix()
            if stale.is_file() and rel not in files and not rel.startswith(SECRETS + "/"):
                stale.unlink()
        return written
    except OSError as exc:
        raise ConfigError(f"cannot write the kubernetes files to {outdir}: {exc}") from exc


def render_stack(spec: StackSpec, stack_dir: Path) -> list[Path]:
    """Render and write `<stack_dir>/kubernetes/`, reusing an admin key llmctl generated."""
    files = render_kubernetes(spec, StackSecrets.load(spec, stack_dir))
    return write_kubernetes(files, stack_dir / OUT)


def notes(spec: StackSpec, environ: Mapping[str, str], base: Path) -> list[str]:
    """What the user still has to do before `kubectl apply -k base`: render copies no key they
    hold (`environ` only tells which are set here; a key already in secrets/ needs nothing)."""
    gw, eng, where = spec.gateway, spec.engine, base / SECRETS
    held = admin_key_source(spec) in ("env", "file")
    vllm_token = eng.kind == "vllm" and eng.hf_token_env and environ.get(eng.hf_token_env)
    cases = [  # what, where the user holds it (None: nothing to do), variable, secrets file
        ("API keys", gw.api_keys_file or _set_here(gw.api_keys_env, environ), "LLMCTL_API_KEYS"),
        (
            "the admin key",
            (gw.admin_key_file or f"${gw.admin_key_env}") if held else None,
            ADMIN_KEY,
        ),
        ("the HuggingFace token", f"${eng.hf_token_env}" if vllm_token else None, "HF_TOKEN"),
    ]
    said = []
    for what, source, var in cases:
        file = where / ("engine.env" if var == "HF_TOKEN" else "gateway.env")
        if source and not read_env_file(file).get(var):
            said.append(f"{what} ({source}): render does not copy keys; set {var} in {file}")
    if gw.tenants_file and not (where / "tenants.toml").exists():
        said.append(f"copy the tenants file {gw.tenants_file} to {where / 'tenants.toml'}")
    if eng.kind == "vllm" and eng.model.startswith(("/", "~", ".")):
        said.append(f"engine.model {eng.model} is a path: it must exist inside the engine pods")
    return said


def _set_here(var: str | None, environ: Mapping[str, str]) -> str | None:
    return f"${var}" if var and environ.get(var) else None


def _literal(arg: str) -> str:
    """An argument Kubernetes passes as written: it expands $(VAR) and turns $$ into $."""
    return arg.replace("$", "$$")


@functools.lru_cache(maxsize=4)
def _environment(templates: Path | None) -> jinja2.Environment:
    """render's environment with this target's filters, kept so each template compiles once."""
    env = render.environment(templates)
    env.filters.update(yml=_yaml_block, flow=_flow)
    return env


def _ours(name: str) -> bool:
    return name.startswith(TEMPLATES + "/") and name.endswith(".j2")


def _secret_files(spec: StackSpec, stack_secrets: StackSecrets) -> dict[str, str]:
    """The first contents of secrets/*: empty keys, and the admin key llmctl generated."""
    head = "# Read by kustomize's secretGenerator into a Secret; `llmctl render` wrote this once and never rewrites it.\n"
    gateway = head + "# LLMCTL_API_KEYS: accepted API keys, a comma list (empty: no key needed).\n"
    gateway += "LLMCTL_API_KEYS=\n"
    source = admin_key_source(spec)
    if source != "none":
        generated = stack_secrets.values.get(ADMIN_KEY, "") if source == "generated" else ""
        gateway += (
            f"# {ADMIN_KEY}: the key of /admin/limits (llmctl tune).\n{ADMIN_KEY}={generated}\n"
        )
    files = {f"{SECRETS}/gateway.env": gateway}
    if spec.engine.kind == "vllm" and spec.engine.hf_token_env:
        files[f"{SECRETS}/engine.env"] = head + "# HF_TOKEN: for gated models.\nHF_TOKEN=\n"
    return files


def _rule_groups(spec: StackSpec, env: jinja2.Environment) -> list[Any]:
    """The compose stack's alert and recording rule groups, rendered from the same templates."""
    ctx = render.context(spec)
    groups: list[Any] = []
    for name in RULE_TEMPLATES:
        groups += yaml.safe_load(env.get_template(name).render(ctx))["groups"]
    return groups


def _demand_query(spec: StackSpec) -> str:
    """Engines' worth of demand: requests holding or waiting for a slot, over the live limit."""
    where = f'{{job="{metrics.JOB_GATEWAY}", namespace="{namespace(spec)}"}}'
    active, queued = metrics.GATEWAY_ACTIVE.series, metrics.GATEWAY_QUEUE_DEPTH.series
    limit = metrics.GATEWAY_MAX_ACTIVE.series
    return f"(sum({active}{where}) + sum({queued}{where})) / max({limit}{where})"


def _labels(instance: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "llmctl",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "llmctl",
    }


def _selector(instance: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": instance, "app.kubernetes.io/component": component}


def _label(text: str) -> str:
    """`text` cut to a valid label value / DNS label (63 characters, alphanumeric ends)."""
    return re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", text[:63]) or "llmctl"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as `|-` blocks, as the compose rule files write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml_block(value: object, indent: int = 0) -> str:
    """`value` as block YAML whose lines after the first are indented by `indent`."""
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
    return text.rstrip("\n").replace("\n", "\n" + " " * indent)


def _flow(values: list[str]) -> str:
    """A YAML flow list of quoted strings that no value can break out of."""
    return "[" + ", ".join(render.yaml_str(value) for value in values) + "]"


def _dashboards(folder: Path | None) -> list[Path]:
    """The dashboards to ship (none from a build without them)."""
    if folder is None:
        try:
            folder = data_dir("dashboards")
        except LlmctlError:
            return []
    return sorted(folder.glob("*.json"))
