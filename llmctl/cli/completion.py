"""Shell completion of the names llmctl knows: presets, and the services of the stack at hand.

Typer calls these while the shell completes a word (`llmctl init --preset l<TAB>`); they must
never fail or print, so a stack that cannot be loaded completes the usual service names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmctl.core.errors import LlmctlError
from llmctl.stack.settings import list_presets, load_stack

# What a stack runs when its file cannot be read (local runtime; docker adds grafana and more).
USUAL_SERVICES = ("engine", "gateway", "prometheus", "grafana")


def presets(incomplete: str) -> list[str]:
    """The presets whose names start with `incomplete`."""
    return [name for name in list_presets() if name.startswith(incomplete)]


def service_names(config: Path | None = None, preset: str | None = None) -> list[str]:
    """The services of the stack `config`/`preset` name (else ./llmctl.toml, else the default)."""
    try:
        spec = load_stack(config=config, preset=preset).spec
    except (LlmctlError, OSError):
        return list(USUAL_SERVICES)
    return list(dict.fromkeys(["engine", *spec.endpoints()]))


def services(ctx: Any, incomplete: str) -> list[str]:
    """The services of the stack the command line names so far, starting with `incomplete`."""
    params = getattr(ctx, "params", {}) or {}
    names = service_names(params.get("config"), params.get("preset"))
    return [name for name in names if name.startswith(incomplete)]
