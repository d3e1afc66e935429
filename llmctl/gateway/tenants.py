"""Tenants: who a key belongs to, its class, weight and limits; the tenants file that says so.

The tenants file (TOML) replaces a plain list of API keys:

    [classes.interactive]          # rank 0 is served first
    rank = 0
    reserve = 0.25                 # slots batch leaves free for it while it is in use
    [classes.batch]
    rank = 1
    share = 0.2                    # slots batch may hold while interactive requests wait
    aging_s = 30                   # a batch request waiting this long is served as interactive

    [[tenants]]
    name = "chat-ui"
    class = "interactive"
    weight = 3
    keys = ["sha256:9f86d0818..."] # SHA-256 of each key: the file holds no key itself
    requests_per_minute = 600
    tokens_per_minute = 200000     # prompt + output tokens
    max_concurrent = 16
    default_max_tokens = 512       # the output estimate of a request that sets no max_tokens

Keys are compared in constant time against every stored hash. `llmctl tenants add-key` makes a key,
stores its hash and prints the key once. Tenant names become metric labels: bounded by the file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmctl.core.errors import ConfigError
from llmctl.core.files import write_file
from llmctl.core.validation import explain
from llmctl.gateway.fairness import ClassPolicy
from llmctl.gateway.ratelimit import WindowLimit

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
DEFAULT_TENANT = "default"
CLASS_HEADER = "X-Llmctl-Class"


def key_hash(key: str) -> str:
    """The form a key is stored in: `sha256:<hex digest>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class ClassSpec(BaseModel):
    """One priority class."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=0, description="0 is served first.")
    share: float = Field(0.0, ge=0, le=1, description="Slots held while higher classes wait.")
    aging_s: float | None = Field(None, gt=0, description="Served as the top class after this.")
    reserve: float = Field(
        0.0, ge=0, lt=1, description="Slots lower classes leave free for it while it is in use."
    )


class TenantSpec(BaseModel):
    """One tenant."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    class_: str = Field("interactive", alias="class")
    weight: float = Field(1.0, gt=0, le=1000)
    keys: list[str] = Field(default_factory=list)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    default_max_tokens: int = Field(256, ge=1)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("letters, digits, '.', '_' and '-' (a metric label), 1-63 characters")
        return value

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _HASH.match(item):
                raise ValueError(
                    "each key is stored as 'sha256:<64 hex digits>' (use `llmctl tenants add-key`)"
                )
        return value


def _default_classes() -> dict[str, ClassSpec]:
    return {
        "interactive": ClassSpec(rank=0, reserve=0.25),
        "batch": ClassSpec(rank=1, share=0.1, aging_s=60.0),
    }


class TenantsSpec(BaseModel):
    """The whole tenants file."""

    model_config = ConfigDict(extra="forbid")

    classes: dict[str, ClassSpec] = Field(default_factory=_default_classes)
    tenants: list[TenantSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TenantsSpec:
        ranks = [c.rank for c in self.classes.values()]
        if len(set(ranks)) != len(ranks):
            raise ValueError("two classes have the same rank")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError("two tenants have the same name")
        hashes = [k for t in self.tenants for k in t.keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("a key belongs to two tenants")
        for tenant in self.tenants:
            if tenant.class_ not in self.classes:
                raise ValueError(
                    f"tenant {tenant.name}: no class {tenant.class_!r} "
                    f"(classes: {', '.join(self.classes)})"
                )
        return self


def load_tenants(path: Path) -> TenantsSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the tenants file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return TenantsSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain(exc, what=f"tenants file {path}", model=TenantsSpec)) from exc


@dataclass(eq=False)
class Tenant:
    """A tenant at run time: its spec, class rank, limits' logs and requests in flight."""

    name: str
    rank: int
    class_name: str
    weight: float
    max_concurrent: int | None = None
    default_max_tokens: int = 256
    requests: WindowLimit | None = None
    tokens: WindowLimit | None = None
    active: int = 0
    hashes: tuple[bytes, ...] = field(default=(), repr=False)


class Tenancy:
    """Every tenant, found by key; the classes' order."""

    def __init__(self, spec: TenantsSpec, legacy_keys: tuple[str, ...] = ()) -> None:
        self.classes = {name: c.rank for name, c in spec.classes.items()}
        self.policies = [
            ClassPolicy(name, c.rank, c.share, c.aging_s, c.reserve)
            for name, c in spec.classes.items()
        ]
        top = min(spec.classes.items(), key=lambda item: item[1].rank)[0]
        self.tenants = [self._tenant(t, spec) for t in spec.tenants]
        if legacy_keys:
            # Plain API keys keep working: they belong to a tenant of their own.
            hashes = tuple(key_hash(k).encode() for k in legacy_keys)
            self.tenants.append(
                Tenant(DEFAULT_TENANT, spec.classes[top].rank, top, 1.0, hashes=hashes)
            )
        self.by_name = {t.name: t for t in self.tenants}

    @staticmethod
    def _tenant(t: TenantSpec, spec: TenantsSpec) -> Tenant:
        return Tenant(
            t.name,
            spec.classes[t.class_].rank,
            t.class_,
            t.weight,
            t.max_concurrent,
            t.default_max_tokens,
            WindowLimit(t.requests_per_minute) if t.requests_per_minute else None,
            WindowLimit(t.tokens_per_minute) if t.tokens_per_minute else None,
            hashes=tuple(k.encode() for k in t.keys),
        )

    def identify(self, token: str) -> Tenant | None:
        """The tenant whose key `token` is; every stored hash is compared, in constant time."""
        candidate = key_hash(token).encode()
        found = None
        for tenant in self.tenants:
            for stored in tenant.hashes:
                if hmac.compare_digest(candidate, stored):
                    found = tenant
        return found

    def rank_of(self, tenant: Tenant, asked: str | None) -> tuple[int, str]:
        """The class a request runs in: its tenant's, or a lower one it asks for (never higher)."""
        if asked is None or asked not in self.classes:
            return tenant.rank, tenant.class_name
        rank = self.classes[asked]
        return (rank, asked) if rank >= tenant.rank else (tenant.rank, tenant.class_name)


# --- editing the file (llmctl tenants ...) ------------------------------------------------------


def _document(path: Path) -> Any:
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _save(path: Path, document: Any) -> None:
    text = tomlkit.dumps(document)
    try:
        TenantsSpec.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        raise ConfigError(explain(exc, what=f"tenants file {path}", model=TenantsSpec)) from exc
    write_file(path, text, private=True)


def add_tenant(
    path: Path, name: str, *, class_name: str, weight: float, **limits: int | None
) -> None:
    """Add a tenant (no keys yet) to the tenants file, creating the file if needed."""
    document = _document(path)
    tenants = document.setdefault("tenants", tomlkit.aot())
    if any(t.get("name") == name for t in tenants):
        raise ConfigError(f"{path} already has a tenant {name!r}")
    table = tomlkit.table()
    table["name"] = name
    table["class"] = class_name
    table["weight"] = weight
    table["keys"] = tomlkit.array()
    for key, value in limits.items():
        if value is not None:
            table[key] = value
    tenants.append(table)
    _save(path, document)


def add_key(path: Path, name: str) -> str:
    """Make a key for tenant `name`, store its hash, and return the key (shown once)."""
    document = _document(path)
    tenant = next((t for t in document.get("tenants", []) if t.get("name") == name), None)
    if tenant is None:
        raise ConfigError(f"{path} has no tenant {name!r} (add it with `llmctl tenants add`)")
    key = "sk-llmctl-" + secrets.token_urlsafe(32)
    tenant.setdefault("keys", tomlkit.array()).append(key_hash(key))
    _save(path, document)
    return key
