"""The current stack as bench, top and tune see it: its endpoints, API and admin keys, SLO defaults,
and where `tune --apply` writes. The one place that decides these."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.core.errors import ConfigError, LlmctlError
from llmctl.stack.secrets import ADMIN_KEY, admin_key
from llmctl.stack.settings import CONFIG_FILE, LoadedStack, load_stack, running_spec, stack_dir


@dataclass(frozen=True)
class StackDefaults:
    """What the current stack gives commands; empty (all None) when no stack config is found."""

    # Service -> URL for the services this stack has (no engine on docker: it is not published).
    endpoints: dict[str, str] = field(default_factory=dict)
    gateway_url: str | None = None
    engine_metrics_url: str | None = None
    admin_key: str | None = None
    api_key: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    preemptions_per_s: float | None = None
    config_path: Path | None = None  # the file --apply edits (None: a preset, not editable)


def stack_defaults(
    config: Path | None, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> StackDefaults:
    """Read the stack (`--config`, else ./llmctl.toml, else the default preset); a broken or
    missing one gives no defaults rather than an error, because tune can run against any gateway."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    try:
        loaded = load_stack(config=config, environ=environ, cwd=cwd)
        endpoints = running_spec(loaded.spec, cwd).endpoints()
    except (LlmctlError, OSError):
        if config is not None:
            raise
        return StackDefaults()
    spec = loaded.spec
    engine = endpoints.get("engine")
    return StackDefaults(
        endpoints=endpoints,
        gateway_url=endpoints["gateway"],
        engine_metrics_url=f"{engine}/metrics" if engine else None,
        admin_key=_admin_key(loaded, environ, cwd),
        api_key=_first_api_key(loaded, environ),
        ttft_s=spec.alerts.slo_p95_ttft_s,
        e2e_s=spec.alerts.slo_p95_latency_s,
        preemptions_per_s=spec.alerts.preemptions_per_s,
        config_path=_editable_path(loaded, config, cwd),
    )


def _admin_key(loaded: LoadedStack, environ: Mapping[str, str], cwd: Path) -> str | None:
    # The stack's own rule first; a gateway started by hand reads LLMCTL_ADMIN_KEY.
    spec = loaded.spec
    return admin_key(spec, stack_dir(spec, cwd), environ) or environ.get(ADMIN_KEY) or None


def _first_api_key(loaded: LoadedStack, environ: Mapping[str, str]) -> str | None:
    var = loaded.spec.gateway.api_keys_env
    keys = [k.strip() for k in environ.get(var or "", "").split(",") if k.strip()]
    return keys[0] if keys else None


def _editable_path(loaded: LoadedStack, config: Path | None, cwd: Path) -> Path | None:
    if config is not None:
        return config
    local = cwd / CONFIG_FILE
    return local if loaded.origin == f"file {CONFIG_FILE}" and local.is_file() else None


_TABLE = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^(\s*max_active\s*=\s*)([^#\n]*?)(\s*(#.*)?)$")


def write_max_active(path: Path, value: int) -> Path:
    """Set `[gateway] max_active` in the stack file, keeping its comments and layout; the file is
    replaced only once the stack loads with the new value."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    section: str | None = None
    header: int | None = None
    for i, line in enumerate(lines):
        table = _TABLE.match(line)
        if table:
            section = table.group(1).strip()
            if section == "gateway":
                header = i
            continue
        key = _KEY.match(line)
        if section == "gateway" and key:
            lines[i] = f"{key.group(1)}{value}{key.group(3)}"
            break
    else:
        if header is None:
            lines += ["", "[gateway]", f"max_active = {value}"]
        else:
            lines.insert(header + 1, f"max_active = {value}")
    text = "\n".join(lines) + "\n"
    try:
        written = tomllib.loads(text).get("gateway", {}).get("max_active")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"could not update {path}: {exc}") from exc
    if written != value:
        raise ConfigError(f"could not set gateway.max_active in {path}; set it to {value} by hand")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    try:
        load_stack(config=tmp, environ={}, cwd=path.parent)
    except LlmctlError:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    return path
