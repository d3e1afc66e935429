"""The stack file (`llmctl.toml`, `stacks/*.toml`) as pydantic models.

Secrets are never values here: API keys, the admin key and the HuggingFace token are named by the
environment variable (or file) that holds them, so a stack file can be committed and shared.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmctl.core.config import AlertThresholds, GatewaySettings
from llmctl.core.metrics import RECORDING_WINDOW
from llmctl.stack import grammar

EngineKind = Literal["vllm", "sim"]
RuntimeKind = Literal["docker", "local"]
SimProfile = Literal["tiny", "rtx3090-qwen2.5-14b-awq", "h100-llama3.1-8b", "cpu-tiny-llama"]

_NAME = r"^[a-z0-9][a-z0-9._-]*$"
# Kubernetes names and quantities (what the kubernetes target writes must be valid as it is).
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_CPU = r"^(\d+m|\d+(\.\d+)?)$"
_MEMORY = r"^\d+(Ki|Mi|Gi|Ti)$"
_LABEL_KEY = (
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# A rate() over the recording window needs several samples in it; four is Prometheus' rule of thumb.
SAMPLES_PER_WINDOW = 4

LLMCTL_IMAGE = "llmctl:0.1.0"


def duration_s(text: str) -> float:
    """A Prometheus duration such as `5s` or `1m`, in seconds."""
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: a whole number and one unit of ms, s, m, h, d, w, y "
            "(e.g. 5s, 1m)"
        )
    return int(match.group(1)) * _SECONDS[match.group(2)]


def connect_host(bind: str) -> str:
    """The address to reach a server bound to `bind` from this host (wildcards -> loopback)."""
    return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets (`[::1]:8080`) as URLs and Prometheus need."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _env_name(value: str | None) -> str | None:
    return None if value is None else grammar.env_name(value)


def _optional(check: Callable[[str], str], value: str | None) -> str | None:
    return None if value is None else check(value)


class _Spec(BaseModel):
    # No inf or NaN (TOML has both): a deadline or threshold of inf is not one.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        return grammar.printable_all(value)


class SimSpec(_Spec):
    """Flags for `llmctl sim serve` (used when engine.kind = "sim")."""

    profile: SimProfile = Field("tiny", description="Hardware/model profile the simulator mimics.")
    time_scale: float = Field(1.0, gt=0, description="N = everything N times faster.")
    seed: int = Field(0, description="Random seed.")
    num_gpu_blocks: int | None = Field(None, ge=1, description="Overrides the profile.")
    block_size: int | None = Field(None, ge=1, description="Overrides the profile.")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="Overrides the profile.")
    startup_delay_s: float = Field(0.0, ge=0, description="Seconds /health answers 503 at start.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with 500.")
    drop_rate: float = Field(0.0, ge=0, le=1, description="Share of streams cut mid-way.")
    stall_rate: float = Field(0.0, ge=0, le=1, description="Share of requests that stall.")


class EngineSpec(_Spec):
    """The model server behind the gateway: real vLLM or the simulator."""

    kind: EngineKind = Field("sim", description="`vllm` (real engine) or `sim` (simulator).")
    image: str = Field("vllm/vllm-openai:v0.32.0", description="vLLM image (docker runtime).")
    model: str = Field("llmctl-sim", description="HuggingFace id or local path of the model.")
    served_name: str | None = Field(None, description="Name clients ask for; default: model.")
    max_model_len: int | None = Field(None, ge=16, description="vLLM --max-model-len.")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1, description="vLLM share of VRAM.")
    max_num_seqs: int | None = Field(
        None, ge=1, description="Sequences the engine batches at once."
    )
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        "fcfs",
        description="vLLM --scheduling-policy; `priority` also makes the gateway send each "
        "request's class as its priority.",
    )
    extra_args: list[str] = Field(default_factory=list, description="More engine flags, verbatim.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Non-secret environment for the engine process."
    )
    shm_size: str = Field("8g", pattern=r"^[0-9]+[bkmg]?$", description="Docker shm size for vLLM.")
    python: str | None = Field(
        None, description="Python with vLLM installed (local runtime); else `vllm` on PATH."
    )
    hf_cache_dir: str | None = Field(
        None, description="HuggingFace cache to mount; default $HF_HOME or ~/.cache/huggingface."
    )
    hf_token_env: str | None = Field(
        "HF_TOKEN", description="Environment variable holding the HuggingFace token."
    )
    startup_timeout_s: float = Field(180.0, gt=0, description="How long `up` waits for health.")
    replicas: int = Field(
        1, ge=1, description="Engine replicas (the kubernetes target; local and docker run one)."
    )
    sim: SimSpec = Field(default_factory=SimSpec)

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        return grammar.image(value)

    @field_validator("hf_token_env")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        return grammar.env_names(value)

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        return grammar.model_name(value)

    @field_validator("served_name")
    @classmethod
    def _check_served_name(cls, value: str | None) -> str | None:
        return _optional(grammar.model_name, value)

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str | None) -> str | None:
        return _optional(grammar.path, value)

    @field_validator("hf_cache_dir")
    @classmethod
    def _check_cache(cls, value: str | None) -> str | None:
        # Copied into .env, whose quoting has its own limits (see llmctl.stack.credentials).
        return _optional(grammar.dotenv_safe, _optional(grammar.path, value))

    @property
    def name(self) -> str:
        """The model name clients send (and the gateway fills in)."""
        return self.served_name or self.model


class GatewaySpec(GatewaySettings):
    """The admission-controlling gateway: its settings (llmctl.core.config's GatewaySettings, the
    same fields `llmctl gateway serve` takes) plus where its image and keys come from."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    image: str = Field(LLMCTL_IMAGE, description="llmctl image (gateway, and the sim engine).")
    api_keys_env: str | None = Field(
        "LLMCTL_API_KEYS", description="Environment variable with accepted keys (comma list)."
    )
    api_keys_file: str | None = Field(None, description="File with accepted keys, one a line.")
    tenants_file: str | None = Field(
        None, description="Tenants, classes and limits (TOML, docs/tenants.md)."
    )
    admin_key_env: str | None = Field(None, description="Environment variable with the admin key.")
    admin_key_file: str | None = Field(None, description="File holding the admin key.")
    generate_admin_key: bool = Field(
        True, description="With no admin key reference, generate one into .env (kept)."
    )

    @field_validator("*")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        return grammar.printable_all(value)

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        return grammar.image(value)

    @field_validator("api_keys_env", "admin_key_env")
    @classmethod
    def _check_envs(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("api_keys_file", "admin_key_file")
    @classmethod
    def _check_files(cls, value: str | None) -> str | None:
        return _optional(grammar.path, value)


class ObservabilitySpec(_Spec):
    """Prometheus, Grafana and the optional extras."""

    prometheus: bool = True
    grafana: bool = True
    dcgm_exporter: bool = Field(False, description="NVIDIA DCGM exporter (docker, GPU).")
    open_webui: bool = Field(False, description="Open WebUI chat front end (docker).")
    scrape_interval: str = Field("2s", description="How often Prometheus scrapes, e.g. 2s.")
    retention: str = Field("15d", description="Prometheus TSDB retention, e.g. 15d.")
    prometheus_image: str = "prom/prometheus:v3.5.0"
    grafana_image: str = "grafana/grafana:12.2.0"
    dcgm_exporter_image: str = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.3.1-ubuntu22.04"
    open_webui_image: str = "ghcr.io/open-webui/open-webui:v0.6.30"

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        duration_s(value)
        return value

    @field_validator("scrape_interval")
    @classmethod
    def _check_scrape(cls, value: str) -> str:
        window = duration_s(RECORDING_WINDOW)
        if duration_s(value) > window / SAMPLES_PER_WINDOW:
            raise ValueError(
                f"{value} is too coarse: the recording rules take rate() over {RECORDING_WINDOW}, "
                f"which needs a scrape at least every {window / SAMPLES_PER_WINDOW:g}s "
                f"({SAMPLES_PER_WINDOW} samples a window)"
            )
        return value

    @field_validator("prometheus_image", "grafana_image", "dcgm_exporter_image", "open_webui_image")
    @classmethod
    def _check_images(cls, value: str) -> str:
        return grammar.image(value)


class KubernetesSpec(_Spec):
    """How `llmctl render --target kubernetes` lays the stack out on a cluster (docs/kubernetes.md)."""

    namespace: str | None = Field(
        None, pattern=_DNS_LABEL, description="Namespace of the stack; default llmctl-<name>."
    )
    cluster_domain: str = Field(
        "cluster.local", pattern=_DNS_NAME, description="The cluster's DNS domain."
    )
    gpus_per_engine: int = Field(1, ge=1, description="`nvidia.com/gpu` of each vLLM engine pod.")
    engine_cpu: str | None = Field(
        None, pattern=_CPU, description="CPU of each engine pod; default 8 (vLLM), 1 (sim)."
    )
    engine_memory: str | None = Field(
        None,
        pattern=_MEMORY,
        description="Memory of each engine pod (the limit adds engine.shm_size); default 32Gi "
        "(vLLM), 512Mi (sim).",
    )
    model_cache_size: str = Field(
        "100Gi", pattern=_MEMORY, description="Model cache volume of each vLLM engine replica."
    )
    storage_class: str | None = Field(
        None,
        pattern=_DNS_NAME,
        description="StorageClass of the model cache; default the cluster's.",
    )
    prometheus_namespace: str = Field(
        "monitoring",
        pattern=_DNS_LABEL,
        description="Where Prometheus runs (it may scrape engines).",
    )
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        pattern=r"^https?://[^\s]+$",
        description="Prometheus as seen in the cluster (KEDA, the Grafana datasource).",
    )
    monitoring_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels your Prometheus selects monitors and rules by (e.g. release).",
    )
    autoscale: bool = Field(False, description="A KEDA ScaledObject scales engine replicas.")
    max_replicas: int = Field(4, ge=1, description="Most engine replicas KEDA scales to.")

    @field_validator("monitoring_labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if not re.fullmatch(_LABEL_KEY, key) or not re.fullmatch(_LABEL_VALUE, label):
                raise ValueError(f"{key}={label!r} is not a Kubernetes label")
        return value


class PortsSpec(_Spec):
    """Host ports. Docker publishes only gateway, Prometheus, Grafana (and Open WebUI)."""

    bind_address: str = Field("127.0.0.1", description="Host address published ports bind to.")
    gateway: int = Field(8080, ge=1, le=65535)
    prometheus: int = Field(9090, ge=1, le=65535)
    grafana: int = Field(3000, ge=1, le=65535)
    open_webui: int = Field(3001, ge=1, le=65535)
    engine: int = Field(8000, ge=1, le=65535, description="Local runtime only (never published).")

    @field_validator("bind_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address") from exc
        if "%" in value:  # an IPv6 scope (fe80::1%eth0) is free text: not in a compose file
            raise ValueError(f"{value!r} has a scope; give the address alone")
        return value


class LogsSpec(_Spec):
    """The local runtime's service logs (`.llmctl/<stack>/run/<service>.log`), rotated by size."""

    max_bytes: int = Field(
        10 << 20, ge=4096, description="A log file rotates when it would grow past this."
    )
    keep: int = Field(3, ge=0, le=100, description="Rotated parts kept (`.log.1` newest).")


class StackSpec(_Spec):
    """One stack: what `llmctl render/up` builds."""

    name: str = Field("local-sim", pattern=_NAME, description="Folder under .llmctl/, project.")
    description: str = ""
    runtime: RuntimeKind = Field("local", description="`local` processes or `docker` compose.")
    engine: EngineSpec = Field(default_factory=EngineSpec)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    observability: ObservabilitySpec = Field(default_factory=ObservabilitySpec)
    ports: PortsSpec = Field(default_factory=PortsSpec)
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    logs: LogsSpec = Field(default_factory=LogsSpec)
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)

    @model_validator(mode="after")
    def _adaptive_slo(self) -> StackSpec:
        # The adaptive limit keeps the stack's own alert SLOs unless told otherwise.
        gw = self.gateway
        if "adaptive_ttft_s" not in gw.model_fields_set:
            gw.adaptive_ttft_s = self.alerts.slo_p95_ttft_s
        if "adaptive_itl_s" not in gw.model_fields_set:
            gw.adaptive_itl_s = self.alerts.slo_p95_itl_s
        return self

    @model_validator(mode="after")
    def _priority(self) -> StackSpec:
        # The engine orders its batch by the gateway's classes only if the gateway says them.
        if self.engine.scheduling_policy == "priority":
            self.gateway.priority_to_engine = True
        return self

    @model_validator(mode="after")
    def _autoscale(self) -> StackSpec:
        kube = self.kubernetes
        if kube.autoscale and not self.observability.prometheus:
            raise ValueError("kubernetes.autoscale reads the queue from Prometheus: enable it")
        if kube.autoscale and kube.max_replicas < self.engine.replicas:
            raise ValueError(
                f"kubernetes.max_replicas ({kube.max_replicas}) is below engine.replicas "
                f"({self.engine.replicas}), the fewest KEDA keeps"
            )
        return self

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackSpec:
        used: dict[int, str] = {}
        for key in self.published_ports():
            port = getattr(self.ports, key)
            if port in used:
                raise ValueError(f"ports.{key} and ports.{used[port]} are both {port}")
            used[port] = key
        return self

    @property
    def project_name(self) -> str:
        """The compose project name (compose allows no dots, stack names may have them)."""
        return "llmctl-" + re.sub(r"[^a-z0-9_-]", "-", self.name)

    def published_ports(self) -> list[str]:
        """The `ports.*` keys this stack listens on, for its runtime and enabled services."""
        keys = ["gateway"]
        if self.runtime == "local":
            keys.append("engine")
        if self.observability.prometheus:
            keys.append("prometheus")
        if self.runtime == "docker" and self.observability.grafana:
            keys.append("grafana")
        if self.runtime == "docker" and self.observability.open_webui:
            keys.append("open_webui")
        return keys

    def endpoints(self) -> dict[str, str]:
        """Service name -> URL a user opens on the host."""
        host = connect_host(self.ports.bind_address)
        urls = {"gateway": f"http://{host_port(host, self.ports.gateway)}"}
        if self.runtime == "local":
            urls["engine"] = f"http://127.0.0.1:{self.ports.engine}"
        names = {"prometheus": "prometheus", "grafana": "grafana", "open_webui": "open-webui"}
        for key in self.published_ports():
            if key in names:
                urls[names[key]] = f"http://{host_port(host, getattr(self.ports, key))}"
        return urls
