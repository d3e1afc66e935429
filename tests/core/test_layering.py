"""The package's dependency direction:
cli -> report -> tune -> {gateway, sim, stack, observe, bench} -> core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "llmctl"
SIBLINGS = {"gateway", "sim", "stack", "observe", "bench"}
ALLOWED = {
    "core": set(),
    **{name: {"core"} for name in SIBLINGS},
    "tune": {"core", *SIBLINGS},
    "report": {"core", "tune", *SIBLINGS},
    "cli": {"core", "tune", "report", *SIBLINGS},
}


def _imported_subpackages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "llmctl" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = _imported_subpackages(path) - ALLOWED[layer] - {layer, "__init__"}
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert not missing, f"modules without a docstring: {missing}"


# Modules that talk HTTP: the CLI never does it itself, it calls the package that owns the peer.
HTTP_CLIENTS = {"httpx", "aiohttp", "requests", "urllib3", "http", "prometheus_api_client"}
# What `up`, `down`, `status` and `logs` decide lives in llmctl.stack.lifecycle; the CLI may not
# reach past it to these.
LIFECYCLE_INTERNALS = {
    "llmctl.stack.runtime": {"make_runtime", "observe", "running_spec"},
    "llmctl.stack.settings": {"save_spec", "saved_spec", "running_spec"},
    "llmctl.stack.render": {"write"},
}


def _imports(path: Path) -> list[tuple[str, set[str]]]:
    """(module, names imported from it) for every import statement in `path`."""
    found: list[tuple[str, set[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, set()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, {alias.name for alias in node.names}))
    return found


def test_the_cli_imports_no_http_client() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in sorted((PACKAGE / "cli").rglob("*.py"))
        for module, _ in _imports(path)
        if module.split(".")[0] in HTTP_CLIENTS
    ]
    assert not offenders, "\n".join(offenders)


def test_the_cli_makes_no_lifecycle_decision() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {sorted(names & LIFECYCLE_INTERNALS[module])} "
        f"from {module}"
        for path in sorted((PACKAGE / "cli").rglob("*.py"))
        for module, names in _imports(path)
        if names & LIFECYCLE_INTERNALS.get(module, set())
    ]
    assert not offenders, "\n".join(offenders)
