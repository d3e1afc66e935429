"""The stack's `.env`: generated secrets (kept across renders) and compose settings.

Secrets live only here (mode 0600). `compose.yaml` refers to them as `${NAME}`, and user-held
secrets (API keys, HF token) are not copied at all: compose and the local runtime read them from
the environment variable the stack names.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmctl.core.errors import ConfigError
from llmctl.stack import grammar
from llmctl.stack.spec import StackSpec

ENV_FILE = ".env"
GRAFANA_PASSWORD = "GRAFANA_ADMIN_PASSWORD"
ADMIN_KEY = "LLMCTL_ADMIN_KEY"

AdminKeySource = Literal["env", "file", "generated", "none"]


@dataclass(frozen=True)
class StackSecrets:
    """Generated secret values by variable name."""

    values: dict[str, str]

    @classmethod
    def generate(cls, spec: StackSpec, existing: Mapping[str, str] | None = None) -> StackSecrets:
        """Keep every secret already in `existing`; generate the ones the spec needs and lacks."""
        existing = existing or {}
        wanted = [GRAFANA_PASSWORD]
        if admin_key_source(spec) == "generated":
            wanted.append(ADMIN_KEY)
        values = {name: existing.get(name) or secrets.token_urlsafe(24) for name in wanted}
        return cls(values)

    @classmethod
    def load(cls, spec: StackSpec, directory: Path) -> StackSecrets:
        return cls.generate(spec, read_env_file(directory / ENV_FILE))


def admin_key_source(spec: StackSpec) -> AdminKeySource:
    """Where the stack's gateway gets its admin key: the one rule every part of llmctl follows.

    A named variable wins over a file; with neither, a key generated into the stack's .env."""
    gw = spec.gateway
    if gw.admin_key_env:
        return "env"
    if gw.admin_key_file:
        return "file"
    return "generated" if gw.generate_admin_key else "none"


def admin_key(spec: StackSpec, directory: Path, environ: Mapping[str, str]) -> str | None:
    """The admin key value the stack's gateway uses (None: it has none, or it is not set yet).

    `directory` is the stack's folder (`.llmctl/<stack>/`), where a generated key lives."""
    gw = spec.gateway
    source = admin_key_source(spec)
    if source == "env" and gw.admin_key_env:
        return environ.get(gw.admin_key_env) or None
    if source == "file" and gw.admin_key_file:
        try:
            return Path(gw.admin_key_file).expanduser().read_text().strip() or None
        except OSError:
            return None
    if source == "generated":
        return read_env_file(directory / ENV_FILE).get(ADMIN_KEY) or None
    return None


def hf_cache_dir(spec: StackSpec, environ: Mapping[str, str]) -> str:
    """The HuggingFace cache folder the engine mounts: engine.hf_cache_dir, else $HF_HOME, else
    ~/.cache/huggingface, made absolute; checked as .env will carry it (ConfigError naming the
    source otherwise: $HF_HOME comes from the environment, unchecked until here)."""
    source, raw = "$HF_HOME", environ.get("HF_HOME")
    if spec.engine.hf_cache_dir:
        source, raw = "engine.hf_cache_dir", spec.engine.hf_cache_dir
    raw = raw or "~/.cache/huggingface"
    try:
        grammar.path(raw)
        resolved = str(Path(raw).expanduser().resolve())
        return grammar.dotenv_safe(resolved)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ConfigError(f"{source} ({raw!r}), the HuggingFace cache folder: {exc}") from None


def compose_profiles(spec: StackSpec) -> list[str]:
    """The compose profiles a plain `docker compose up` should start (read from COMPOSE_PROFILES)."""
    profiles = []
    if spec.observability.dcgm_exporter:
        profiles.append("dcgm")
    if spec.observability.open_webui:
        profiles.append("webui")
    return profiles


def env_line(name: str, value: str) -> str:
    """`NAME='value'`: single quotes, in which python-dotenv and a shell take every character
    literally (no `#` comment, no `$` expansion); a value they could not all read back the same (a
    quote, a backslash, a control character, or a `$NAME` / `${...}`, which Compose v2 expands even
    there) is a ConfigError naming it."""
    try:
        grammar.env_name(name)
        grammar.dotenv_safe(value)
    except ValueError as exc:
        raise ConfigError(f"{ENV_FILE} cannot hold {name}: {exc}") from None
    return f"{name}='{value}'"


def env_file_text(spec: StackSpec, stack_secrets: StackSecrets, environ: Mapping[str, str]) -> str:
    lines = [
        "# Written by `llmctl render`. Holds generated secrets: keep it private (mode 0600).",
        "# Generated values are kept across renders; delete a line to regenerate it.",
        env_line("COMPOSE_PROJECT_NAME", spec.project_name),
        env_line("COMPOSE_PROFILES", ",".join(compose_profiles(spec))),
        env_line("HF_CACHE_DIR", hf_cache_dir(spec, environ)),
    ]
    lines += [env_line(name, value) for name, value in sorted(stack_secrets.values.items())]
    return "\n".join(lines) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks skipped, one pair of enclosing quotes removed, as
    env_line writes them); a missing file reads as empty."""
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
