"""The kubernetes target: every preset builds with `kubectl kustomize`, validates strictly against
the Kubernetes schemas and the operators' CRDs, and keeps the compose stack's invariants."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from llmctl.core import metrics
from llmctl.core.config import GatewaySettings
from llmctl.stack import kubernetes
from llmctl.stack.render import render
from llmctl.stack.settings import list_presets, load_stack, parse_set
from llmctl.stack.spec import StackSpec
from tests.support import ServerProcess, eventually, free_port

PRESETS = list_presets()
# The oldest and the newest release the schemas are checked against (kubernetes-validate 1.37.0
# ships both, offline): what renders must be valid on every cluster in between.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRD_DIR = Path(__file__).parent / "kubernetes_crds"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (.ci/run)")
WORKLOADS = ("Deployment", "StatefulSet")

Obj = dict[str, Any]


def _strict(schema: Any) -> Any:
    """A CRD schema where unknown fields are errors (as `kubectl apply --validate=strict`)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    open_ended = "additionalProperties" in schema or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "properties" in schema and not open_ended:
        strict["additionalProperties"] = False
    return strict


def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schema = _strict(version["schema"]["openAPIV3Schema"])
            validators[key] = jsonschema.Draft7Validator(schema)
    return validators


CRDS = _crd_validators()


def validate(obj: Obj) -> None:
    """Strict validation: built-in kinds against the Kubernetes schemas, custom resources
    against their CRD (and their metadata as the ObjectMeta it is)."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    validator = CRDS.get((obj["apiVersion"], obj["kind"]))
    if validator is not None:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
        assert not errors, f"{name}: {errors}"
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            raise AssertionError(f"{name} on Kubernetes {version}: {path}: {exc.message}") from exc


def _spec(preset: str, *sets: str) -> StackSpec:
    return load_stack(preset=preset, environ={}, flags=[parse_set(s) for s in sets]).spec


def _base(where: Path, spec: StackSpec, **secrets: str) -> Path:
    """Render and write the base; `secrets` fill secrets/<name> as a user would."""
    base = where / "kubernetes"
    kubernetes.write_kubernetes(kubernetes.render_kubernetes(spec), base)
    for name, text in secrets.items():
        (base / "secrets" / name.replace("_", ".")).write_text(text)
    return base


def _build(base: Path) -> list[Obj]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(base)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _one(objs: list[Obj], kind: str, name: str = "") -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def _pod(objs: list[Obj], component: str) -> Obj:
    workload = _one(objs, "Deployment" if component == "gateway" else "StatefulSet")
    pod: Obj = workload["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == component
    return pod


def _container(objs: list[Obj], component: str) -> Obj:
    containers = _pod(objs, component)["spec"]["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """Every preset rendered and built once (kubectl kustomize)."""
    if KUBECTL is None:
        pytest.skip("kubectl not installed (.ci/run)")
    return {
        preset: _build(_base(tmp_path_factory.mktemp(preset), _spec(preset))) for preset in PRESETS
    }


@needs_kubectl
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_and_validates_strictly(
    built: dict[str, list[Obj]], preset: str
) -> None:
    objs = built[preset]
    for obj in objs:
        validate(obj)
    spec = _spec(preset)
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "NetworkPolicy"} <= kinds
    assert {"PodDisruptionBudget", "ConfigMap", "Secret"} <= kinds
    assert {
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds  # every preset has Prometheus
    namespace = _one(objs, "Namespace")["metadata"]["name"]
    namespaced = [o for o in objs if o["kind"] != "Namespace"]
    assert all(o["metadata"]["namespace"] == namespace for o in namespaced)
    assert namespace == kubernetes.namespace(spec)


def test_the_validators_reject_what_a_cluster_would(tmp_path: Path) -> None:
    """The checks above can fail: a misspelt field is an error in every kind of object."""
    files = kubernetes.render_kubernetes(_spec("local-sim"))
    deployment = [d for d in yaml.safe_load_all(files["gateway.yaml"]) if d["kind"] == "Deployment"]
    bad = copy.deepcopy(deployment[0])
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(AssertionError, match="imagePullPolcy"):
        validate(bad)
    monitor = next(d for d in yaml.safe_load_all(files["monitoring.yaml"]) if d)
    bad = copy.deepcopy(monitor)
    bad["spec"]["endpoints"][0]["intervall"] = "2s"
    with pytest.raises(AssertionError, match="intervall"):
        validate(bad)
    bad = copy.deepcopy(monitor)
    bad["metadata"]["lables"] = {"a": "b"}
    with pytest.raises(AssertionError, match="lables"):
        validate(bad)


@needs_kubectl
def test_autoscaling_adds_a_keda_scaled_object_on_the_gateway_queue(tmp_path: Path) -> None:
    spec = _spec(
        "llama3.1-8b-h100",
        "kubernetes.autoscale=true",
        "engine.replicas=2",
        "kubernetes.max_replicas=6",
        "kubernetes.prometheus_url='http://prom.obs.svc:9090'",
    )
    objs = _build(_base(tmp_path, spec))
    for obj in objs:
        validate(obj)
    scaled = _one(objs, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", kubernetes.ENGINE)
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 6)
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prom.obs.svc:9090"
    query = trigger["metadata"]["query"]
    assert "llmctl_gateway_queue_depth" in query
    assert f'namespace="{kubernetes.namespace(spec)}"' in query
    # KEDA owns the count; a replicas field would be reset by every `kubectl apply`.
    assert "replicas" not in _one(objs, "StatefulSet")["spec"]


def test_engine_replicas_come_from_the_stack() -> None:
    files = kubernetes.render_kubernetes(_spec("qwen2.5-14b-awq-3090", "engine.replicas=3"))
    statefulset = [
        d for d in yaml.safe_load_all(files["engine.yaml"]) if d["kind"] == "StatefulSet"
    ]
    assert statefulset[0]["spec"]["replicas"] == 3


@needs_kubectl
@pytest.mark.parametrize("preset", PRESETS)
def test_gateway_limits_come_from_the_stack_file(built: dict[str, list[Obj]], preset: str) -> None:
    objs, spec = built[preset], _spec(preset)
    settings = _one(objs, "ConfigMap", kubernetes.GATEWAY)["data"]
    wanted = {
        "MAX_ACTIVE": spec.gateway.max_active,
        "QUEUE_MODE": spec.gateway.queue_mode,
        "QUEUE_MAX": spec.gateway.queue_max,
        "QUEUE_TIMEOUT_S": spec.gateway.queue_timeout_s,
        "REQUEST_TIMEOUT_S": spec.gateway.request_timeout_s,
        "MODEL_NAME": spec.engine.name,
    }
    assert {key: settings[key] for key in wanted} == {k: str(v) for k, v in wanted.items()}
    args = _container(objs, "gateway")["args"]
    # Every setting reaches the gateway through its flag; the ConfigMap holds its value.
    refs = dict(zip(args[2::2], args[3::2], strict=False))
    assert refs["--max-active"] == "$(MAX_ACTIVE)"
    valued = [f for f in GatewaySettings.model_fields if f != "priority_to_engine"]
    assert len([v for v in refs.values() if v.startswith("$(")]) >= len(valued)
    for ref in refs.values():
        assert re.fullmatch(r"\$\((\w+)\)", ref), ref
        assert ref[2:-1] in settings, ref
    deployment = _one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_engine_arguments_reach_the_engine_as_written() -> None:
    odd = ["--chat-template", "a$b $(HOME) $$c"]
    spec = _spec("qwen2.5-14b-awq-3090", f"engine.extra_args={odd!r}")
    statefulset = yaml.safe_load_all(kubernetes.render_kubernetes(spec)["engine.yaml"])
    args = next(d for d in statefulset if d["kind"] == "StatefulSet")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert _expand(args, {"HOME": "/root"})[-2:] == odd


def test_a_changed_limit_changes_the_configmap() -> None:
    files = kubernetes.render_kubernetes(_spec("local-sim", "gateway.max_active=9"))
    assert "MAX_ACTIVE=9\n" in files["gateway-settings.env"]
    files = kubernetes.render_kubernetes(_spec("local-sim", "engine.scheduling_policy='priority'"))
    assert "--priority-to-engine" in files["gateway.yaml"]


@needs_kubectl
def test_gateway_finds_the_engines_through_the_headless_service(
    built: dict[str, list[Obj]],
) -> None:
    objs, spec = built["llama3.1-8b-h100"], _spec("llama3.1-8b-h100")
    settings = _one(objs, "ConfigMap", kubernetes.GATEWAY)["data"]
    namespace = kubernetes.namespace(spec)
    url = f"http://{kubernetes.ENGINE}.{namespace}.svc.cluster.local:{kubernetes.ENGINE_PORT}"
    assert settings["LLMCTL_UPSTREAM_DNS"] == url
    assert "--upstream-dns" in _container(objs, "gateway")["args"]
    service = _one(objs, "Service", kubernetes.ENGINE)
    assert service["spec"]["clusterIP"] == "None"
    assert _matches(service["spec"]["selector"], _pod(objs, "engine")["metadata"]["labels"])
    assert _one(objs, "StatefulSet")["spec"]["serviceName"] == kubernetes.ENGINE


@needs_kubectl
@pytest.mark.parametrize("preset", PRESETS)
def test_alert_and_recording_rules_are_the_compose_rules(
    built: dict[str, list[Obj]], preset: str
) -> None:
    spec = _spec(preset)
    compose = render(spec, environ={})
    groups = []
    for name in ("prometheus/rules/alerts.yml", "prometheus/rules/recording.yml"):
        groups += yaml.safe_load(compose[name])["groups"]
    rule = _one(built[preset], "PrometheusRule")
    assert rule["spec"]["groups"] == groups
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    assert alerts["LlmctlTTFTAboveSLO"]["expr"].endswith(f"> {spec.alerts.slo_p95_ttft_s}")
    assert alerts["LlmctlLatencyAboveSLO"]["expr"].endswith(f"> {spec.alerts.slo_p95_e2e_s}")
    assert alerts["LlmctlQueueNearFull"]["for"] == spec.alerts.for_duration


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
def test_the_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    spec = _spec("local-sim", "alerts.slo_p95_ttft_s=0.7")
    files = kubernetes.render_kubernetes(spec)
    rule = yaml.safe_load(files["prometheus-rule.yaml"])
    assert "> 0.7" in files["prometheus-rule.yaml"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_kubectl
@pytest.mark.parametrize("preset", PRESETS)
def test_only_the_gateway_and_prometheus_reach_the_engines(
    built: dict[str, list[Obj]], preset: str
) -> None:
    objs, spec = built[preset], _spec(preset)
    engine_labels = _pod(objs, "engine")["metadata"]["labels"]
    gateway_labels = _pod(objs, "gateway")["metadata"]["labels"]
    policy = _one(objs, "NetworkPolicy")["spec"]
    assert _matches(policy["podSelector"]["matchLabels"], engine_labels)
    assert not _matches(policy["podSelector"]["matchLabels"], gateway_labels)
    assert policy["policyTypes"] == ["Ingress"]
    peers = []
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": kubernetes.ENGINE_PORT}]
        assert len(rule["from"]) == 1  # each rule names one peer: no wider "or"
        peers.append(rule["from"][0])
    gateway_peer, *others = peers
    assert set(gateway_peer) == {"podSelector"}  # in this namespace only
    assert _matches(gateway_peer["podSelector"]["matchLabels"], gateway_labels)
    # Prometheus scrapes /metrics on the engine's one port: its pods, in its namespace, and no other.
    (prometheus,) = others
    assert prometheus["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": spec.kubernetes.prometheus_namespace
    }
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    # Nothing is published outside the cluster, and no pod shares the node's network.
    for service in (o for o in objs if o["kind"] == "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    for component in ("engine", "gateway"):
        pod = _pod(objs, component)["spec"]
        assert not pod.get("hostNetwork")
        assert all("hostPort" not in p for p in _container(objs, component)["ports"])


def test_without_prometheus_only_the_gateway_reaches_the_engines() -> None:
    spec = _spec("local-sim", "observability.prometheus=false")
    files = kubernetes.render_kubernetes(spec)
    policy = yaml.safe_load(files["network-policy.yaml"])["spec"]
    assert len(policy["ingress"]) == 1
    assert set(policy["ingress"][0]["from"][0]) == {"podSelector"}
    assert "monitoring.yaml" not in files
    assert "prometheus-rule.yaml" not in files


@needs_kubectl
@pytest.mark.parametrize("preset", PRESETS)
def test_probes_resources_and_security_everywhere(built: dict[str, list[Obj]], preset: str) -> None:
    objs, spec = built[preset], _spec(preset)
    for workload in (o for o in objs if o["kind"] in WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] == "http", probe
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], image
            assert not image.endswith(":latest"), image
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
    gateway = _pod(objs, "gateway")["spec"]
    assert gateway["securityContext"]["runAsNonRoot"] is True
    assert gateway["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    engine = _container(objs, "engine")
    resources = engine["resources"]
    if spec.engine.kind == "vllm":
        gpus = spec.kubernetes.gpus_per_engine
        assert (
            resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == gpus
        )
        assert engine["image"] == spec.engine.image
        volumes = {v["name"]: v for v in _pod(objs, "engine")["spec"]["volumes"]}
        shm = kubernetes.memory_bytes(spec.engine.shm_size)
        assert volumes["dshm"]["emptyDir"] == {
            "medium": "Memory",
            "sizeLimit": kubernetes.quantity(shm),
        }
        # /dev/shm is charged to the pod's memory: the limit leaves the requested memory free.
        limit = kubernetes.memory_bytes(resources["limits"]["memory"])
        assert limit == kubernetes.memory_bytes(resources["requests"]["memory"]) + shm
        mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
        assert mounts["dshm"] == "/dev/shm"
        assert mounts["model-cache"] == kubernetes.HF_HOME
        claim = _one(objs, "StatefulSet")["spec"]["volumeClaimTemplates"][0]
        assert claim["metadata"]["name"] == "model-cache"
        assert (
            engine["startupProbe"]["failureThreshold"] * engine["startupProbe"]["periodSeconds"]
            >= spec.engine.startup_timeout_s
        )
    else:
        assert not any("nvidia.com/gpu" in r for r in resources.values())
        assert engine["image"] == spec.gateway.image
        assert engine["command"] == ["llmctl"]
        assert engine["args"][:2] == ["sim", "serve"]
        assert engine["securityContext"]["readOnlyRootFilesystem"] is True
    budget = _one(objs, "PodDisruptionBudget")["spec"]
    assert _matches(budget["selector"]["matchLabels"], _pod(objs, "engine")["metadata"]["labels"])


@needs_kubectl
def test_no_secret_lands_outside_a_secret(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("sk-from-file\n")
    tenants = tmp_path / "tenants.toml"
    tenants.write_text("# tenants\n")
    spec = _spec(
        "llama3.1-8b-h100",
        f"gateway.api_keys_file='{keys_file}'",
        f"gateway.tenants_file='{tenants}'",
    )
    environ = {"LLMCTL_API_KEYS": "sk-env-key", "HF_TOKEN": "hf_env_token"}
    stack_dir = tmp_path / "stack"
    # Render as the CLI does, with the user's keys in the environment and in files.
    kubernetes.render_stack(spec, stack_dir)
    base = stack_dir / "kubernetes"
    generated = (base / "secrets" / "gateway.env").read_text()
    admin = re.search(r"^LLMCTL_ADMIN_KEY=(\S+)$", generated, re.M)
    assert admin is not None
    assert len(admin.group(1)) >= 24
    for path in (base / "secrets").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    # render copied none of the user's keys anywhere, and says what to fill in.
    everything = "".join(p.read_text() for p in base.rglob("*") if p.is_file())
    for value in ("sk-from-file", "sk-env-key", "hf_env_token"):
        assert value not in everything
    said = " ".join(kubernetes.notes(spec, environ, base))
    assert "LLMCTL_API_KEYS" in said
    assert "HF_TOKEN" in said
    assert "tenants.toml" in said
    # The user fills them in; a later render keeps what they wrote.
    (base / "secrets" / "gateway.env").write_text(
        f"LLMCTL_API_KEYS=sk-user-1,sk-user-2\nLLMCTL_ADMIN_KEY={admin.group(1)}\n"
    )
    (base / "secrets" / "engine.env").write_text("HF_TOKEN=hf_user_token\n")
    shutil.copy(tenants, base / "secrets" / "tenants.toml")
    assert kubernetes.notes(spec, environ, base) == []  # nothing left to do
    kubernetes.render_stack(spec, stack_dir)
    assert "sk-user-1" in (base / "secrets" / "gateway.env").read_text()
    objs = _build(base)
    for obj in objs:
        validate(obj)
    values = ["sk-user-1,sk-user-2", admin.group(1), "hf_user_token"]
    encoded = [base64.b64encode(v.encode()).decode() for v in values]
    for obj in objs:
        text = yaml.safe_dump(obj)
        for value in values:
            assert value not in text, (obj["kind"], value)  # never in plain text
        if obj["kind"] != "Secret":
            for value in encoded:
                assert value not in text, (obj["kind"], value)
    secrets = "".join(yaml.safe_dump(o) for o in objs if o["kind"] == "Secret")
    assert all(value in secrets for value in encoded)
    # The tenants file reaches the gateway as a mounted Secret, never as a ConfigMap.
    _one(objs, "Secret", "llmctl-tenants")
    assert "--tenants-file" in _container(objs, "gateway")["args"]


@needs_kubectl
@pytest.mark.parametrize("preset", ["local-sim", "llama3.1-8b-h100"])
def test_monitors_scrape_under_the_compose_job_names(
    built: dict[str, list[Obj]], preset: str
) -> None:
    objs, spec = built[preset], _spec(preset)
    service = _one(objs, "Service", kubernetes.GATEWAY)
    monitor = _one(objs, "ServiceMonitor")["spec"]
    assert _matches(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {p["name"] for p in service["spec"]["ports"]} == {
        e["port"] for e in monitor["endpoints"]
    }
    pods = _one(objs, "PodMonitor")["spec"]
    assert _matches(pods["selector"]["matchLabels"], _pod(objs, "engine")["metadata"]["labels"])
    ports = {p["name"] for p in _container(objs, "engine")["ports"]}
    jobs = {}
    for endpoint in [*monitor["endpoints"], *pods["podMetricsEndpoints"]]:
        assert endpoint["port"] in ports | {"http"}
        assert endpoint["interval"] == spec.observability.scrape_interval
        (relabel,) = endpoint["relabelings"]
        jobs[relabel["replacement"]] = endpoint["path"]
    wanted = {metrics.JOB_GATEWAY: "/metrics", metrics.JOB_ENGINE: "/metrics"}
    if spec.engine.kind == "sim":  # the simulator's DCGM stand-in; a GPU's comes from its operator
        wanted[metrics.JOB_GPU] = "/dcgm/metrics"
    assert jobs == wanted


@needs_kubectl
def test_dashboards_are_configmaps_for_grafanas_sidecar(built: dict[str, list[Obj]]) -> None:
    objs = built["qwen2.5-14b-awq-3090"]
    shipped = sorted((Path(__file__).parents[2] / "dashboards").glob("*.json"))
    assert shipped
    for path in shipped:
        config = _one(objs, "ConfigMap", f"llmctl-dashboard-{path.stem}")
        assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config["data"] == {path.name: path.read_text()}
    source = _one(objs, "ConfigMap", "llmctl-grafana-datasource")
    assert source["metadata"]["labels"]["grafana_datasource"] == "1"
    datasource = yaml.safe_load(source["data"]["llmctl-datasource.yaml"])["datasources"][0]
    assert datasource["uid"] == "llmctl-prometheus"
    # A stack without Grafana ships no dashboards.
    assert not any(o["metadata"]["name"].startswith("llmctl-dashboard") for o in built["local-sim"])


def test_compose_and_kubernetes_templates_stay_apart(tmp_path: Path) -> None:
    compose = render(_spec("local-sim"), environ={})
    assert not any(name.startswith("kubernetes") for name in compose)
    files = kubernetes.render_kubernetes(_spec("local-sim"))
    assert "compose.yaml" not in files
    assert "kustomization.yaml" in files


def test_stale_files_go_and_secrets_stay(tmp_path: Path) -> None:
    spec = _spec("llama3.1-8b-h100", "kubernetes.autoscale=true")
    base = _base(tmp_path, spec)
    assert (base / "scaled-object.yaml").exists()
    (base / "secrets" / "gateway.env").write_text("LLMCTL_API_KEYS=mine\n")
    kubernetes.write_kubernetes(kubernetes.render_kubernetes(_spec("llama3.1-8b-h100")), base)
    assert not (base / "scaled-object.yaml").exists()
    assert (base / "secrets" / "gateway.env").read_text() == "LLMCTL_API_KEYS=mine\n"


def test_render_target_kubernetes_from_the_command_line(tmp_path: Path) -> None:
    env = {"COLUMNS": "200"}
    run = [sys.executable, "-m", "llmctl", "render", "--preset", "local-sim"]
    done = subprocess.run(
        [*run, "--target", "kubernetes", "--max-active", "7"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    base = tmp_path / ".llmctl" / "local-sim" / "kubernetes"
    assert "kubectl apply -k" in done.stdout
    assert "MAX_ACTIVE=7" in (base / "gateway-settings.env").read_text()
    assert not (tmp_path / ".llmctl" / "local-sim" / "compose.yaml").exists()
    bad = subprocess.run(
        [*run, "--target", "helm"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        env={**os.environ, **env},
    )
    assert bad.returncode == 2


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' expansion of a container's arguments: $(VAR) when VAR is set, $$ -> $."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return "$" if name is None else env.get(name, match.group(0))

    return [re.sub(r"\$\$|\$\((\w+)\)", one, arg) for arg in args]


def _data(obj: Obj) -> dict[str, str]:
    if obj["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    return dict(obj.get("data", {}))


def _env_of(objs: list[Obj], container: Obj) -> dict[str, str]:
    """A container's environment as the kubelet makes it: envFrom sources, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = next(iter(source.items()))
        env |= _data(_one(objs, "ConfigMap" if kind == "configMapRef" else "Secret", ref["name"]))
    return env | {item["name"]: item["value"] for item in container.get("env", [])}


# What the pods' securityContext gives the processes, as near as this machine allows: a read-only
# root filesystem with an empty /tmp, no capabilities, no privilege gain. (Not uid 10001: this
# machine's Python lives under /root, which only root may enter.)
SANDBOX = [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    "mount -o remount,bind,ro / && mount -t tmpfs -o size=64m tmpfs /tmp && exec setpriv "
    '--no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"',
    "sandbox",
]


def _sandboxed() -> bool:
    probe = [*SANDBOX, "sh", "-c", "touch /tmp/x && ! touch /x 2>/dev/null"]
    try:
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0
    except OSError:
        return False


@contextmanager
def _pod_process(args: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """`llmctl ARGS` (what the image's entrypoint runs) in the sandbox, until the block ends."""
    if not _sandboxed():
        pytest.skip("cannot make a read-only root filesystem here (unshare -m needs root)")
    server = ServerProcess([*SANDBOX, sys.executable, "-m", "llmctl", *args], log, env)
    try:
        server.wait_ready(ready)
        yield
    finally:
        server.stop()


def _at(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


@pytest.fixture
def rendered_pods(tmp_path: Path) -> tuple[list[Obj], str, str]:
    if KUBECTL is None:
        pytest.skip("kubectl not installed (.ci/run)")
    base = _base(tmp_path, _spec("local-sim", "gateway.max_active=3", "gateway.queue_max=5"))
    text = (base / "secrets" / "gateway.env").read_text()
    (base / "secrets" / "gateway.env").write_text(
        text.replace("LLMCTL_API_KEYS=\n", "LLMCTL_API_KEYS=sk-pod-key\n")
    )
    objs = _build(base)
    admin = _data(_one(objs, "Secret", "llmctl-gateway-keys"))["LLMCTL_ADMIN_KEY"]
    return objs, "sk-pod-key", admin


@pytest.mark.slow
def test_the_rendered_pods_run_as_written(
    rendered_pods: tuple[list[Obj], str, str], tmp_path: Path
) -> None:
    """The built engine and gateway containers, run here with their own command lines and
    environments (only addresses changed to loopback) on a read-only root filesystem without
    capabilities: the settings, keys and probes work."""
    objs, api_key, admin_key = rendered_pods
    engine_port, gateway_port = free_port(), free_port()
    engine = _container(objs, "engine")
    engine_args = _expand(engine["args"], _env_of(objs, engine))
    engine_args = _at(_at(engine_args, "--host", "127.0.0.1"), "--port", str(engine_port))
    gateway = _container(objs, "gateway")
    env = _env_of(objs, gateway)
    env |= {
        "LLMCTL_GATEWAY_HOST": "127.0.0.1",
        "LLMCTL_GATEWAY_PORT": str(gateway_port),
        "LLMCTL_UPSTREAM_DNS": f"http://127.0.0.1:{engine_port}",
    }
    gateway_args = _expand(gateway["args"], env)
    engine_url, gateway_url = f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{gateway_port}"
    ready = engine["readinessProbe"]["httpGet"]["path"]
    gateway_ready = gateway_url + gateway["readinessProbe"]["httpGet"]["path"]
    with (
        _pod_process(
            engine_args, _env_of(objs, engine), tmp_path / "engine.log", engine_url + ready
        ),
        _pod_process(gateway_args, env, tmp_path / "gateway.log", gateway_ready),
    ):
        for container, url in ((engine, engine_url), (gateway, gateway_url)):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert httpx.get(url + container[probe]["httpGet"]["path"]).status_code == 200
        limits = httpx.get(
            gateway_url + "/admin/limits", headers={"Authorization": f"Bearer {admin_key}"}
        ).json()
        assert (limits["max_active"], limits["queue_max"]) == (3, 5)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        assert httpx.post(gateway_url + "/v1/chat/completions", json=body).status_code == 401

        def chat() -> httpx.Response:
            resp = httpx.post(
                gateway_url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            return resp

        answer = eventually(chat, timeout=20, what="a chat answer through the gateway")
        assert answer.json()["model"] == _spec("local-sim").engine.name


@needs_kubectl
def test_the_documented_overlay_builds_and_validates(tmp_path: Path) -> None:
    """docs/kubernetes.md's overlay (an Ingress and a changed MAX_ACTIVE), as written there."""
    docs = (Path(__file__).parents[2] / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"<!-- overlay: (\S+) -->\n```yaml\n(.*?)```", docs, re.S)
    assert {name for name, _ in blocks} == {"kustomization.yaml", "ingress.yaml"}
    spec = _spec("llama3.1-8b-h100")
    kubernetes.render_stack(spec, tmp_path / ".llmctl" / spec.name)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    for name, text in blocks:
        (overlay / name).write_text(text)
    objs = _build(overlay)
    for obj in objs:
        validate(obj)
    assert _one(objs, "ConfigMap", kubernetes.GATEWAY)["data"]["MAX_ACTIVE"] == "48"
    ingress = _one(objs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert (
        ingress["service"]["name"] == _one(objs, "Service", kubernetes.GATEWAY)["metadata"]["name"]
    )
    # The gateway refers to the merged ConfigMap, whose name (hash) changed with it.
    refs = [
        s["configMapRef"]["name"]
        for s in _container(objs, "gateway")["envFrom"]
        if "configMapRef" in s
    ]
    assert refs == [_one(objs, "ConfigMap", kubernetes.GATEWAY)["metadata"]["name"]]
