"""Locate the data shipped with llmctl (templates, dashboards, stack presets).

In a wheel they live inside the package (`llmctl/templates`, ...); in a source checkout they are the
top-level folders beside the package.
"""

from __future__ import annotations

from pathlib import Path

from llmctl.core.errors import LlmctlError

_PACKAGE = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """The folder `name` ("templates", "dashboards" or "stacks")."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise LlmctlError(f"llmctl's {name}/ folder is missing from this installation")
