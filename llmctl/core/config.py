"""Settings shared by several parts: the gateway's admission settings and how to read them.

The gateway reads the earlier single-file gateway's environment variables (VLLM_BASE_URL, MODEL_NAME,
MAX_ACTIVE, QUEUE_MODE, QUEUE_MAX, QUEUE_TIMEOUT_S, REQUEST_TIMEOUT_S) so its users can move over;
the stack config and CLI flags set the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from llmctl.core.errors import ConfigError
from llmctl.core.modelfiles import is_hub_id
from llmctl.core.slo import SLO
from llmctl.core.validation import explain

QueueMode = Literal["queue", "reject"]
LimitMode = Literal["static", "adaptive"]
LogFormat = Literal["text", "json"]
BaseModelT = TypeVar("BaseModelT", bound=BaseModel)

# Upper bounds of the limits: far above any real engine's batch or any sane wait, low enough that a
# typo (or a hostile admin call) cannot ask for a queue that fills memory or a wait of 1e308 s.
MAX_ACTIVE_MAX = 10_000
QUEUE_MAX_MAX = 100_000
DAY_S = 86_400.0


class AdmissionLimits(BaseModel):
    """The live-tunable admission settings (what `GET/PUT /admin/limits` reads and writes)."""

    # No infinite or NaN timeouts: "inf" would turn a deadline off and serialize as invalid JSON.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_active: int = Field(
        4, ge=1, le=MAX_ACTIVE_MAX, description="Requests allowed at each engine at once."
    )
    max_active_total: int | None = Field(
        None,
        ge=1,
        le=MAX_ACTIVE_MAX,
        description="Requests allowed at all engines together; unset: no cap.",
    )
    queue_mode: QueueMode = Field("queue", description="`queue`: wait for a slot; `reject`: 429.")
    queue_max: int = Field(
        64,
        ge=0,
        le=QUEUE_MAX_MAX,
        description="Requests allowed to wait; 0 means no queue (reject when full).",
    )
    queue_timeout_s: float = Field(
        30.0, gt=0, le=DAY_S, description="Longest wait for a slot, then 503."
    )
    limit_mode: LimitMode = Field(
        "static",
        description="`static`: MAX_ACTIVE stays as set; `adaptive`: the gateway moves it within "
        "[adaptive_min, adaptive_max] to keep the adaptive SLO (docs/gateway.md).",
    )
    adaptive_min: int = Field(
        1, ge=1, le=MAX_ACTIVE_MAX, description="Adaptive mode: the lowest MAX_ACTIVE."
    )
    adaptive_max: int = Field(
        64, ge=1, le=MAX_ACTIVE_MAX, description="Adaptive mode: the highest MAX_ACTIVE."
    )
    adaptive_ttft_s: float | None = Field(
        2.0,
        gt=0,
        le=DAY_S,
        description="Adaptive mode: p95 TTFT target of admitted requests, seconds.",
    )
    adaptive_itl_s: float | None = Field(
        None, gt=0, le=DAY_S, description="Adaptive mode: p95 inter-token latency target, seconds."
    )
    adaptive_interval_s: float = Field(
        1.0, ge=0.05, le=60, description="Adaptive mode: seconds between decisions."
    )

    @model_validator(mode="after")
    def _adaptive_bounds(self) -> AdmissionLimits:
        if self.adaptive_min > self.adaptive_max:
            raise ValueError(
                f"adaptive_min ({self.adaptive_min}) is above adaptive_max ({self.adaptive_max})"
            )
        return self

    @property
    def adaptive_slo(self) -> SLO:
        return SLO(ttft_s=self.adaptive_ttft_s, itl_s=self.adaptive_itl_s)


class GatewaySettings(AdmissionLimits):
    """The gateway's behaviour, shared by `llmctl gateway serve` (GatewayConfig) and the stack
    file's `[gateway]` table (the stack's GatewaySpec): declared once, here."""

    request_timeout_s: float = Field(
        600.0, gt=0, le=DAY_S, description="Deadline from admission to the last byte, seconds."
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Larger request bodies get 413.")
    health_interval_s: float = Field(2.0, gt=0, description="Seconds between engine probes.")
    routing: Literal["round_robin", "least_loaded", "prefix_affinity"] = Field(
        "least_loaded", description="How a request's engine is chosen among several."
    )
    priority_to_engine: bool = Field(
        False,
        description="Send each request's class rank as vLLM's `priority` (the engine runs with "
        "--scheduling-policy priority).",
    )
    affinity_slack: float = Field(
        0.25,
        ge=0,
        le=10,
        description="prefix_affinity: how much busier (share of an engine) than the least loaded "
        "the engine holding a prefix may be and still get the request.",
    )
    poll_interval_s: float = Field(
        0.5, ge=0, description="Seconds between reads of each engine's load (/metrics); 0: never."
    )
    dns_interval_s: float = Field(
        5.0, gt=0, description="Seconds between re-resolutions of a DNS upstream."
    )
    rejoin_ramp_s: float = Field(
        10.0,
        ge=0,
        description="Seconds over which an engine that comes back climbs from 1 to its full limit.",
    )
    cache: bool = Field(
        False,
        description="Answer repeated deterministic requests (temperature 0, or a seed) from a "
        "response cache, and send identical ones in flight to the engine once.",
    )
    cache_max_bytes: int = Field(
        64 << 20, ge=1024, description="The response cache's size bound (least recently used out)."
    )
    cache_ttl_s: float = Field(600.0, gt=0, description="Seconds a cached answer is served.")

    idle_timeout_s: float = Field(
        30.0, gt=0, le=DAY_S, description="A connection with no request in progress closes after."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=DAY_S,
        description="A request head must be complete this long after its start.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        le=DAY_S,
        description="A request body must be complete this long after its head.",
    )
    max_connections: int = Field(
        1024, ge=1, le=1_000_000, description="Open client connections at most; more get 503."
    )
    fd_reserve: int = Field(
        128,
        ge=0,
        le=1_000_000,
        description="File descriptors kept free of client connections (engine pool, logs).",
    )
    access_log: bool = Field(
        True,
        description="A log line per completion request: id, route, status, reason, queue wait, "
        "TTFT, duration, tokens, tenant.",
    )
    log_format: LogFormat = Field(
        "text", description="The gateway's log lines as `text` or `json` (one object a line)."
    )


def parse_upstream(spec: str) -> tuple[str, int | None]:
    """`http://h:8000` or `http://h:8000?max_active=8` -> (base URL, its own limit or None).
    A trailing `/v1` is accepted."""
    parts = urlsplit(spec.strip())
    limit: int | None = None
    if parts.query:
        try:
            query = parse_qs(parts.query, strict_parsing=True)
        except ValueError as exc:
            raise ValueError(f"{spec}: the only option is ?max_active=N") from exc
        unknown = set(query) - {"max_active"}
        if unknown:
            raise ValueError(f"{spec}: unknown option(s) {sorted(unknown)}; use ?max_active=N")
        raw = query["max_active"][-1]
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{spec}: max_active must be a whole number of at least 1")
        limit = int(raw)
    base = parts._replace(query="", fragment="").geturl().rstrip("/").removesuffix("/v1")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{spec!r} must be an http:// or https:// URL with a host")
    return base, limit


class GatewayConfig(GatewaySettings):
    """Everything `llmctl gateway serve` needs: the settings plus where it listens and forwards."""

    upstreams: tuple[str, ...] = Field(
        ("http://127.0.0.1:8000",),
        validation_alias=AliasChoices("upstreams", "upstream_url"),
        description="Engine base URLs (`?max_active=N` gives one its own limit; a trailing /v1 "
        "is accepted); a comma list in VLLM_BASE_URL.",
    )
    upstream_dns: str | None = Field(
        None,
        description="An http://NAME:PORT whose addresses are the engines, re-resolved every "
        "dns_interval_s (a Kubernetes headless Service); replaces `upstreams`.",
    )
    model_name: str | None = Field(None, description="Filled into requests that name no model.")
    tokenizer: str | None = Field(
        None,
        description="The model's folder, or its hub id in the HF cache: prompt tokens are counted "
        "with its tokenizer and chat template (never downloaded); none: estimated.",
    )
    api_keys: tuple[SecretStr, ...] = Field((), description="Accepted bearer keys; empty: open.")
    tenants_file: Path | None = Field(
        None,
        description="Tenants, classes and their limits (TOML; docs/tenants.md); its keys are "
        "accepted as well as api_keys.",
    )
    admin_key: SecretStr | None = Field(None, description="Key for /admin; unset: admin API off.")
    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port.")

    @field_validator("upstreams", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part for part in value.split(",") if part.strip())
        return value

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one engine URL")
        checked = []
        for spec in value:
            base, limit = parse_upstream(spec)
            checked.append(base if limit is None else f"{base}?max_active={limit}")
        return tuple(checked)

    @field_validator("tokenizer")
    @classmethod
    def _check_tokenizer(cls, value: str | None) -> str | None:
        # A hub id may not be in the cache (yet): the gateway then estimates and says so. A path
        # that is not there is a mistake.
        if value is not None and not is_hub_id(value) and not Path(value).expanduser().is_dir():
            raise ValueError(f"{value} is not a folder (give a model folder or a hub id)")
        return value

    @field_validator("upstream_dns")
    @classmethod
    def _check_dns(cls, value: str | None) -> str | None:
        if value is None:
            return None
        base, limit = parse_upstream(value)
        if limit is not None:
            raise ValueError("a DNS upstream takes no ?max_active (set MAX_ACTIVE)")
        return base

    @property
    def upstream_url(self) -> str:
        """The first engine's URL (for messages)."""
        return self.upstream_dns or parse_upstream(self.upstreams[0])[0]

    @property
    def limits(self) -> AdmissionLimits:
        return AdmissionLimits.model_validate(
            {name: getattr(self, name) for name in AdmissionLimits.model_fields}
        )


# Environment variable -> GatewayConfig field, the one table (the stack maps the ones that are
# GatewaySettings to `gateway.<field>`). The first seven are the earlier single-file gateway's.
GATEWAY_ENV = {
    "VLLM_BASE_URL": "upstreams",
    "LLMCTL_UPSTREAM_DNS": "upstream_dns",
    "MODEL_NAME": "model_name",
    "MAX_ACTIVE": "max_active",
    "LLMCTL_LIMIT_MODE": "limit_mode",
    "QUEUE_MODE": "queue_mode",
    "QUEUE_MAX": "queue_max",
    "QUEUE_TIMEOUT_S": "queue_timeout_s",
    "REQUEST_TIMEOUT_S": "request_timeout_s",
    "LLMCTL_MAX_BODY_BYTES": "max_body_bytes",
    "LLMCTL_HEALTH_INTERVAL_S": "health_interval_s",
    "LLMCTL_IDLE_TIMEOUT_S": "idle_timeout_s",
    "LLMCTL_HEADER_TIMEOUT_S": "header_timeout_s",
    "LLMCTL_BODY_TIMEOUT_S": "body_timeout_s",
    "LLMCTL_MAX_CONNECTIONS": "max_connections",
    "LLMCTL_FD_RESERVE": "fd_reserve",
    "LLMCTL_ACCESS_LOG": "access_log",
    "LLMCTL_LOG_FORMAT": "log_format",
    "LLMCTL_API_KEYS": "api_keys",
    "LLMCTL_ADMIN_KEY": "admin_key",
    "LLMCTL_TENANTS_FILE": "tenants_file",
    "LLMCTL_TOKENIZER": "tokenizer",
    "LLMCTL_GATEWAY_HOST": "host",
    "LLMCTL_GATEWAY_PORT": "port",
}


# GatewayConfig field -> its `llmctl gateway serve` flag. The stack renders the gateway's command
# line from this table (so every GatewaySettings field reaches the gateway); keys are never flags.
GATEWAY_FLAGS = {
    "upstreams": "--upstream",
    "upstream_dns": "--upstream-dns",
    "routing": "--routing",
    "priority_to_engine": "--priority-to-engine",
    "affinity_slack": "--affinity-slack",
    "poll_interval_s": "--poll-interval",
    "dns_interval_s": "--dns-interval",
    "rejoin_ramp_s": "--rejoin-ramp",
    "model_name": "--model",
    "tokenizer": "--tokenizer",
    "cache": "--cache",
    "cache_max_bytes": "--cache-max-bytes",
    "cache_ttl_s": "--cache-ttl",
    "max_active": "--max-active",
    "max_active_total": "--max-active-total",
    "limit_mode": "--limit-mode",
    "adaptive_min": "--adaptive-min",
    "adaptive_max": "--adaptive-max",
    "adaptive_ttft_s": "--adaptive-ttft",
    "adaptive_itl_s": "--adaptive-itl",
    "adaptive_interval_s": "--adaptive-interval",
    "queue_mode": "--queue-mode",
    "queue_max": "--queue-max",
    "queue_timeout_s": "--queue-timeout",
    "request_timeout_s": "--request-timeout",
    "max_body_bytes": "--max-body-bytes",
    "health_interval_s": "--health-interval",
    "tenants_file": "--tenants-file",
    "idle_timeout_s": "--idle-timeout",
    "header_timeout_s": "--header-timeout",
    "body_timeout_s": "--body-timeout",
    "max_connections": "--max-connections",
    "fd_reserve": "--fd-reserve",
    # A setting that is on by default needs its off switch: `--on/--off` declares both.
    "access_log": "--access-log/--no-access-log",
    "log_format": "--log-format",
    "host": "--host",
    "port": "--port",
}


def gateway_values_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The GatewayConfig fields set by environment variables (empty values are ignored)."""
    values: dict[str, Any] = {}
    for var, field in GATEWAY_ENV.items():
        raw = environ.get(var, "").strip()
        if not raw:
            continue
        if field == "api_keys":
            values[field] = tuple(k.strip() for k in raw.split(",") if k.strip())
        else:
            values[field] = raw
    return values


def env_var_of(field: str) -> str | None:
    """The environment variable that sets GatewayConfig `field`, if one does."""
    return next((var for var, name in GATEWAY_ENV.items() if name == field), None)


def build_config(
    model: type[BaseModelT],
    values: Mapping[str, Any],
    *,
    source: str,
    names: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> BaseModelT:
    """Validate `values` into `model`, turning pydantic's errors into one ConfigError naming keys
    (`names`: how the user wrote a field, e.g. its flag; `sources`: where a value came from)."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        message = explain(exc, what=source, model=model, names=names, sources=sources)
        raise ConfigError(message) from exc


def load_gateway_config(
    environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None, *, flags: bool = False
) -> GatewayConfig:
    """Defaults, then environment variables, then explicit overrides (`flags`: they are the
    command line's, and errors name them by their GATEWAY_FLAGS flag)."""
    values = gateway_values_from_env(environ)
    sources = {field: f"env {var}" for var, field in GATEWAY_ENV.items() if field in values}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(given)
    names = {field: GATEWAY_FLAGS[field] for field in given if field in GATEWAY_FLAGS}
    return build_config(
        GatewayConfig,
        values,
        source="gateway settings",
        names=names if flags else None,
        sources={k: v for k, v in sources.items() if k not in given},
    )


class AlertThresholds(BaseModel):
    """Alert thresholds, set per stack (`[alerts]` in llmctl.toml) and rendered into the rules."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    slo_p95_ttft_s: float = Field(2.0, gt=0, description="p95 time-to-first-token SLO.")
    slo_p95_itl_s: float | None = Field(None, gt=0, description="p95 inter-token latency SLO.")
    slo_p95_e2e_s: float = Field(30.0, gt=0, description="p95 end-to-end latency SLO.")
    queue_near_full_ratio: float = Field(0.8, gt=0, le=1, description="Queue depth / QUEUE_MAX.")
    rejection_rate_ratio: float = Field(0.05, gt=0, le=1, description="Share of 429/503 answers.")
    kv_cache_near_full_ratio: float = Field(0.95, gt=0, le=1, description="vLLM KV cache use.")
    preemptions_per_s: float = Field(0.1, ge=0, description="Sustained preemption rate.")
    gpu_memory_near_full_ratio: float = Field(0.97, gt=0, le=1, description="FB used / total.")
    gpu_temp_c: float = Field(85.0, gt=0, description="GPU temperature.")
    for_duration: str = Field("5m", pattern=r"^[0-9]+[smh]$", description="How long before firing.")

    @property
    def slo(self) -> SLO:
        """The latency SLO these alerts watch (also tune's and the adaptive limit's default)."""
        return SLO(ttft_s=self.slo_p95_ttft_s, itl_s=self.slo_p95_itl_s, e2e_s=self.slo_p95_e2e_s)
