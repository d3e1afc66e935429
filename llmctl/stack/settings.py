"""Load a StackSpec from its layers and remember where every effective value came from.

Precedence, lowest first: the model's defaults < the stack file (`llmctl.toml`, or a preset from
`stacks/`) < environment variables < command-line flags. Presets set every value that matters for
their hardware, so the environment has to sit above the file for "pick a stack, set MAX_ACTIVE,
`llmctl up`" to work; flags are the one-off override for this invocation. Because an old
`MAX_ACTIVE` left in a shell would otherwise win unnoticed, every environment value that replaces a
file value is listed in `LoadedStack.notes` (printed by `up`, `render` and `config`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmctl.core.config import GATEWAY_ENV, GatewaySettings
from llmctl.core.errors import ConfigError, StackFileError
from llmctl.core.files import write_file
from llmctl.core.resources import data_dir
from llmctl.core.validation import Locate, explain
from llmctl.stack import stackfile
from llmctl.stack.spec import StackSpec

CONFIG_FILE = "llmctl.toml"
DEFAULT_PRESET = "local-sim"
STATE_DIR = ".llmctl"
SAVED_SPEC = "stack.json"

# The gateway's own variables (MAX_ACTIVE, QUEUE_MAX, ...: core.config's one table) set the same
# settings of the stack's gateway, so `MAX_ACTIVE=8 llmctl up` works like `MAX_ACTIVE=8 llmctl
# gateway serve`; LLMCTL_RUNTIME picks the runtime.
NAMED_ENV = {
    **{
        var: f"gateway.{field}"
        for var, field in GATEWAY_ENV.items()
        if field in GatewaySettings.model_fields
    },
    "LLMCTL_RUNTIME": "runtime",
}
# Keys that were renamed: old dotted key -> new one (an old file keeps working, with a note).
RENAMED_KEYS = {"alerts.slo_p95_latency_s": "alerts.slo_p95_e2e_s"}
# Any other key: LLMCTL__SECTION__KEY, e.g. LLMCTL__PORTS__GATEWAY=18080.
GENERIC_ENV_PREFIX = "LLMCTL__"


@dataclass(frozen=True)
class Override:
    """One value from a layer above the defaults: dotted key, value, and a label for humans."""

    key: str
    value: Any
    source: str


@dataclass
class LoadedStack:
    """The effective spec plus provenance: dotted key -> "default", "env X", "file F", "flag --y"."""

    spec: StackSpec
    origin: str
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")

    def effective_values(self) -> list[tuple[str, Any, str]]:
        """Every leaf value of the spec with its source, in model order."""
        return [(k, v, self.source_of(k)) for k, v in flatten(self.spec.model_dump(mode="json"))]


def preset_path(name: str) -> Path:
    path = data_dir("stacks") / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no preset named {name!r}; presets: {', '.join(list_presets())}")
    return path


def env_var_for(key: str) -> str:
    """The environment variable that sets dotted stack `key`: its own name (MAX_ACTIVE), else
    the generic LLMCTL__SECTION__KEY."""
    named = {dotted: var for var, dotted in NAMED_ENV.items()}
    return named.get(key) or GENERIC_ENV_PREFIX + key.upper().replace(".", "__")


def list_presets() -> list[str]:
    return sorted(p.stem for p in data_dir("stacks").glob("*.toml"))


def read_toml(path: Path) -> dict[str, Any]:
    return stackfile.parse(stackfile.read_text(path), path)


def env_overrides(environ: Mapping[str, str]) -> list[Override]:
    """The stack values set by environment variables (empty values are ignored)."""
    found: list[Override] = []
    for var, key in NAMED_ENV.items():
        raw = environ.get(var, "").strip()
        if raw:
            found.append(Override(key, raw, f"env {var}"))
    for var, raw in sorted(environ.items()):
        if var.startswith(GENERIC_ENV_PREFIX) and raw.strip():
            key = var[len(GENERIC_ENV_PREFIX) :].lower().replace("__", ".")
            found.append(Override(key, _env_value(raw.strip()), f"env {var}"))
    return found


def parse_set(assignment: str) -> Override:
    """`--set KEY=VALUE`; VALUE is read as a TOML value when it is one, else as a string."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return Override(key.strip(), value, f"flag --set {key.strip()}")


def resolve_config_path(config: Path | None, preset: str | None, cwd: Path) -> tuple[Path, str]:
    """Which file defines the stack: --config, --preset, ./llmctl.toml, else the default preset."""
    if config is not None and preset is not None:
        raise ConfigError("give --config or --preset, not both")
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"stack file {config} does not exist (create one with `llmctl init`)")
        return config, f"file {config}"
    if preset is not None:
        return preset_path(preset), f"preset {preset}"
    local = cwd / CONFIG_FILE
    if local.is_file():
        return local, f"file {CONFIG_FILE}"
    return preset_path(DEFAULT_PRESET), f"preset {DEFAULT_PRESET}"


def load_stack(
    *,
    config: Path | None = None,
    preset: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Iterable[Override] = (),
    cwd: Path | None = None,
) -> LoadedStack:
    """Build the effective StackSpec from defaults, environment, stack file and flags."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    path, origin = resolve_config_path(config, preset, cwd)
    text = stackfile.read_text(path)
    shown = path.relative_to(cwd) if path.is_relative_to(cwd) else path  # as the user wrote it
    try:
        return _build(
            stackfile.parse(text, shown),
            origin,
            {origin: (str(shown), stackfile.locator(text))},
            [*env_overrides(environ), *flags],
        )
    except ConfigError as exc:
        raise StackFileError(str(exc), str(path)) from exc


def _build(
    file_values: Mapping[str, Any],
    origin: str,
    files: Mapping[str, tuple[str, Locate]],
    overrides: Iterable[Override],
) -> LoadedStack:
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    for key, value in flatten(file_values):
        if key in RENAMED_KEYS:
            notes.append(f"{key} is now called {RENAMED_KEYS[key]} ({origin})")
            key = RENAMED_KEYS[key]
        _set(merged, key, value)
        sources[key] = origin
    for item in overrides:
        if item.value is None:
            continue
        if item.source.startswith("env ") and sources.get(item.key) == origin:
            notes.append(f"{item.key}: {item.source} overrides {origin}")
        _set(merged, item.key, item.value)
        sources[item.key] = item.source
    try:
        spec = StackSpec.model_validate(merged)
    except ValidationError as exc:
        message = explain(
            exc, what="stack configuration", model=StackSpec, sources=sources, files=files
        )
        raise ConfigError(f"{message}\n  (stack: {origin})") from exc
    return LoadedStack(spec=spec, origin=origin, sources=sources, notes=notes)


def edit_stack_file(path: Path, changes: Mapping[str, Any]) -> Path:
    """Set dotted keys in the stack file at `path`, keeping its comments, layout and line endings;
    the file changes only when the result is a valid stack (else ConfigError, file untouched)."""
    text = stackfile.read_text(path)
    new = stackfile.edited(text, changes, path)
    origin = f"file {path}"
    _build(stackfile.parse(new, path), origin, {origin: (str(path), stackfile.locator(new))}, [])
    return write_file(path, new)


def stack_dir(spec: StackSpec, cwd: Path | None = None) -> Path:
    """Where a stack's rendered files and run state live: ./.llmctl/<name>/."""
    return (cwd or Path.cwd()) / STATE_DIR / spec.name


def save_spec(spec: StackSpec, directory: Path) -> None:
    """Record the spec a stack was brought up with, so `down`/`status` act on that one."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot record the stack in {directory}: {exc.strerror}") from exc
    write_file(directory / SAVED_SPEC, spec.model_dump_json(indent=2) + "\n")


def saved_spec(directory: Path) -> StackSpec | None:
    path = directory / SAVED_SPEC
    if not path.is_file():
        return None
    try:
        return StackSpec.model_validate_json(path.read_text())
    except ValidationError:
        return None  # written by another llmctl version; the current config is the next best


def running_spec(spec: StackSpec, cwd: Path | None = None) -> StackSpec:
    """The spec the stack was brought up with (ports and all), else `spec` itself."""
    return saved_spec(stack_dir(spec, cwd)) or spec


def flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested tables as (dotted key, leaf value) pairs, in order."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is a value, not a table ({dotted})")
        node = child
    node[parts[-1]] = value


def _env_value(raw: str) -> Any:
    # Lists and tables (extra_args, env) are given as JSON; scalars stay strings for pydantic.
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"environment value {raw!r} looks like JSON but is not: {exc}"
            ) from exc
    return raw
