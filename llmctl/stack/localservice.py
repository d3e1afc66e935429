"""What the local runtime runs for a stack: each service's command line, environment, address and
health URL, and its configuration as one comparable text (what `up` compares to decide whether a
running service must restart to take new settings)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmctl.stack import commands, environment
from llmctl.stack.credentials import admin_key
from llmctl.stack.render import render
from llmctl.stack.spec import StackSpec, connect_host, host_port

SERVICES = ("engine", "gateway", "prometheus")


@dataclass(frozen=True)
class LocalService:
    """A service as the local runtime runs it (argv None: skipped, with the reason in `skip`)."""

    name: str
    argv: list[str] | None
    env: dict[str, str]
    health_url: str
    host: str
    port: int
    skip: str = ""


def local_services(
    spec: StackSpec, directory: Path, environ: Mapping[str, str], *, resolve: bool = True
) -> list[LocalService]:
    """What `spec` runs. `resolve=False` skips finding vLLM and its model (which may build one),
    for callers that only look at health or compare: they must stay cheap and side-effect free."""
    ports = spec.ports
    host = connect_host(ports.bind_address)
    # Each service inherits only an allowlist of this environment (see stack.environment).
    base = {**environment.common(environ, spec), "PYTHONUNBUFFERED": "1"}

    tokenizer = None
    if spec.engine.kind == "sim":
        engine_argv = commands.llmctl_argv() + commands.sim_args(
            spec.engine, host="127.0.0.1", port=ports.engine
        )
        engine_env = {**base, **spec.engine.env}
    elif not resolve:
        # Unresolved (the model as written, no interpreter looked up): enough to compare.
        engine_argv = [
            "vllm",
            *commands.vllm_args(spec.engine, host="127.0.0.1", port=ports.engine),
        ]
        engine_env = dict(spec.engine.env)
    else:
        cmd = commands.local_vllm_command(
            spec.engine, host="127.0.0.1", port=ports.engine, environ=environ
        )
        engine_argv = cmd.argv
        engine_env = {**environment.for_vllm(environ, spec), **base, **cmd.env}
        tokenizer = commands.gateway_tokenizer(cmd.model, environ)
    engine = LocalService(
        "engine",
        engine_argv,
        engine_env,
        f"http://127.0.0.1:{ports.engine}/health",
        "127.0.0.1",
        ports.engine,
    )
    gateway = LocalService(
        "gateway",
        commands.llmctl_argv() + _gateway_args(spec, tokenizer),
        {**base, **_gateway_secrets(spec, directory, environ)},
        f"http://{host_port(host, ports.gateway)}/health",
        ports.bind_address,
        ports.gateway,
    )
    return [engine, gateway, _prometheus(spec, directory, base, host)]


def _gateway_args(spec: StackSpec, tokenizer: str | None = None) -> list[str]:
    gw = spec.gateway
    args = commands.gateway_args(
        gw,
        host=spec.ports.bind_address,
        port=spec.ports.gateway,
        upstream=f"http://127.0.0.1:{spec.ports.engine}",
        model=spec.engine.name,
        tokenizer=tokenizer,
    )
    if gw.api_keys_file:
        args += ["--api-keys-file", str(Path(gw.api_keys_file).expanduser().resolve())]
    if gw.tenants_file:
        args += ["--tenants-file", str(Path(gw.tenants_file).expanduser().resolve())]
    if gw.admin_key_file:
        args += ["--admin-key-file", str(Path(gw.admin_key_file).expanduser().resolve())]
    return args


def _gateway_secrets(
    spec: StackSpec, directory: Path, environ: Mapping[str, str]
) -> dict[str, str]:
    """Keys by reference: read from the named variable (or the generated .env) at start."""
    gw = spec.gateway
    env: dict[str, str] = {}
    if gw.api_keys_env and environ.get(gw.api_keys_env):
        env["LLMCTL_API_KEYS"] = environ[gw.api_keys_env]
    # A key file goes to the gateway as --admin-key-file instead (see _gateway_args).
    key = None if gw.admin_key_file else admin_key(spec, directory, environ)
    if key:
        env["LLMCTL_ADMIN_KEY"] = key
    return env


def _prometheus(spec: StackSpec, directory: Path, base: dict[str, str], host: str) -> LocalService:
    ports, obs = spec.ports, spec.observability
    url = f"http://{host_port(host, ports.prometheus)}/-/ready"
    binary = shutil.which("prometheus") if obs.prometheus else None
    if not obs.prometheus:
        return LocalService("prometheus", None, {}, url, host, ports.prometheus, "disabled")
    if binary is None:
        skip = "no `prometheus` on PATH (apt install prometheus)"
        return LocalService("prometheus", None, {}, url, host, ports.prometheus, skip)
    prom_dir = directory / "prometheus"
    argv = [
        binary,
        f"--config.file={prom_dir / 'prometheus.yml'}",
        f"--web.listen-address={host_port(ports.bind_address, ports.prometheus)}",
        f"--storage.tsdb.path={prom_dir / 'data'}",
        f"--storage.tsdb.retention.time={obs.retention}",
        "--web.enable-lifecycle",
    ]
    return LocalService("prometheus", argv, base, url, host, ports.prometheus)


def service_configs(spec: StackSpec, directory: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Service -> its configuration as text, for the services `spec` runs (skipped ones left
    out): the command line, the environment the stack gives it (by reference for secrets: a
    variable's name, not its value) and, for Prometheus, the config files it reads."""
    gw = spec.gateway
    given = {
        "engine": dict(spec.engine.env),
        "gateway": {
            "api_keys_env": gw.api_keys_env,
            "admin_key_env": gw.admin_key_env,
            "generate_admin_key": gw.generate_admin_key,
        },
    }
    configs: dict[str, str] = {}
    rendered: dict[str, str] | None = None
    for service in local_services(spec, directory, environ, resolve=False):
        if service.argv is None:
            continue
        config: dict[str, object] = {"argv": service.argv, "env": given.get(service.name, {})}
        if service.name == "prometheus":
            rendered = rendered or render(spec, environ=environ)
            config["files"] = {k: v for k, v in rendered.items() if k.startswith("prometheus/")}
        configs[service.name] = json.dumps(config, sort_keys=True)
    return configs
