"""Which stack a command talks to, and how: its endpoints, keys, SLO and editable file.

One resolver (`resolve`) turns "the current folder, its flags and environment" into the running
stack's addresses and keys, for bench, top, tune and chat alike. It reads the stack the way `up`
did (the saved spec when one is recorded, so a stack brought up with other ports is still found)
and never raises for a missing or broken stack file unless one was named explicitly: those
commands can target any server by URL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.core.errors import LlmctlError
from llmctl.core.slo import SLO
from llmctl.stack.credentials import ADMIN_KEY, admin_key
from llmctl.stack.settings import (
    CONFIG_FILE,
    LoadedStack,
    Override,
    load_stack,
    running_spec,
    stack_dir,
)
from llmctl.stack.spec import StackSpec

# Where the services listen when there is no stack at all (no stack file or preset loads).
DEFAULT_URLS = {
    "prometheus": "http://127.0.0.1:9090",
    "gateway": "http://127.0.0.1:8080",
    "engine": "http://127.0.0.1:8000",
}


@dataclass(frozen=True)
class StackEndpoints:
    """What the current stack gives commands; `spec` None when no stack config loads."""

    spec: StackSpec | None = None
    # Service -> URL for the services this stack has (a docker stack publishes no engine; one
    # without Prometheus has none). DEFAULT_URLS when there is no stack.
    urls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_URLS))
    admin_key: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    slo: SLO = field(default_factory=SLO)
    preemptions_per_s: float | None = None
    config_path: Path | None = None  # the file `tune --apply` edits (None: a preset)

    @property
    def gateway_url(self) -> str | None:
        """The stack's gateway; None when there is no stack (DEFAULT_URLS is then a guess)."""
        return self.urls["gateway"] if self.spec is not None else None

    @property
    def engine_metrics_url(self) -> str | None:
        engine = self.urls.get("engine") if self.spec is not None else None
        return f"{engine}/metrics" if engine else None

    def owns(self, url: str) -> bool:
        """Whether `url` is this stack's gateway (its keys may be sent there)."""
        return self.gateway_url is not None and url.rstrip("/") == self.gateway_url


def resolve(
    config: Path | None = None,
    *,
    preset: str | None = None,
    overrides: Sequence[Override] = (),
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> StackEndpoints:
    """The stack in `cwd` (`--config`, `--preset`, ./llmctl.toml, else the default preset).

    A broken or missing stack gives the defaults rather than an error, unless `config` or
    `preset` named it."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    try:
        loaded = load_stack(config=config, preset=preset, flags=overrides, environ=environ, cwd=cwd)
    except (LlmctlError, OSError):
        if config is not None or preset is not None:
            raise
        return StackEndpoints()
    spec = running_spec(loaded.spec, cwd)
    return StackEndpoints(
        spec=spec,
        urls=spec.endpoints(),
        admin_key=_admin_key(spec, environ, cwd),
        api_key=first_api_key(spec, environ),
        slo=spec.alerts.slo,
        preemptions_per_s=spec.alerts.preemptions_per_s,
        config_path=_editable_path(loaded, config, cwd),
    )


def _admin_key(spec: StackSpec, environ: Mapping[str, str], cwd: Path) -> str | None:
    # The stack's own rule first; a gateway started by hand reads LLMCTL_ADMIN_KEY.
    return admin_key(spec, stack_dir(spec, cwd), environ) or environ.get(ADMIN_KEY) or None


def first_api_key(spec: StackSpec, environ: Mapping[str, str]) -> str | None:
    """The first key of the variable the stack's gateway reads its API keys from, if set."""
    var = spec.gateway.api_keys_env
    keys = [k.strip() for k in environ.get(var or "", "").split(",") if k.strip()]
    return keys[0] if keys else None


def _editable_path(loaded: LoadedStack, config: Path | None, cwd: Path) -> Path | None:
    if config is not None:
        return config
    local = cwd / CONFIG_FILE
    return local if loaded.origin == f"file {CONFIG_FILE}" and local.is_file() else None
