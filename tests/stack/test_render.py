"""Rendering: every preset passes `docker compose config` and promtool; secrets stay in .env."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from llmctl.core import metrics
from llmctl.core.errors import ConfigError
from llmctl.stack.credentials import read_env_file
from llmctl.stack.render import environment, render, render_stack, write
from llmctl.stack.settings import Override, list_presets, load_stack, parse_set
from llmctl.stack.spec import StackSpec

PRESETS = list_presets()


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


COMPOSE = _compose_cmd()
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="Compose v2 not installed (.ci/run)")
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")


def _spec(preset: str, *sets: str) -> StackSpec:
    return load_stack(preset=preset, environ={}, flags=[parse_set(s) for s in sets]).spec


def _rendered(tmp_path: Path, preset: str, *sets: str) -> Path:
    out = tmp_path / preset
    render_stack(_spec(preset, *sets), out, environ={})
    return out


def _compose_config(out: Path, *profiles: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What `docker compose config` reads from the rendered files (in `env`, when given)."""
    assert COMPOSE is not None
    args = [a for p in profiles for a in ("--profile", p)]
    done = subprocess.run(
        [*COMPOSE, "-f", str(out / "compose.yaml"), *args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=out,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@needs_compose
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("runtime", ["docker", "local"])
def test_every_preset_passes_compose_config(tmp_path: Path, preset: str, runtime: str) -> None:
    out = _rendered(tmp_path, preset, f"runtime='{runtime}'")
    config = _compose_config(out, "dcgm", "webui")
    services = config["services"]
    assert {"engine", "gateway"} <= set(services)
    spec = _spec(preset)
    published = set()
    for name, service in services.items():
        assert "healthcheck" in service, name
        assert "test" in service["healthcheck"], name
        for dep in service.get("depends_on", {}).values():
            assert dep["condition"] == "service_healthy", name
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], image
        assert not image.endswith(":latest"), image
        for port in service.get("ports", []):
            assert port["host_ip"] == spec.ports.bind_address, (name, port)
            published.add(name)
    # The engine and the DCGM exporter are reachable only inside the compose network.
    assert published <= {"gateway", "prometheus", "grafana", "open-webui"}
    assert "gateway" in published
    assert services["gateway"]["depends_on"]["engine"]["condition"] == "service_healthy"


@needs_compose
def test_vllm_engine_has_gpu_shm_cache_and_flags(tmp_path: Path) -> None:
    out = _rendered(tmp_path, "qwen2.5-14b-awq-3090")
    engine = _compose_config(out)["services"]["engine"]
    devices = engine["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert engine["shm_size"]
    assert any(v["target"] == "/root/.cache/huggingface" for v in engine["volumes"])
    command = engine["command"]
    for flag, value in [
        ("--model", "Qwen/Qwen2.5-14B-Instruct-AWQ"),
        ("--max-model-len", "8192"),
        ("--gpu-memory-utilization", "0.92"),
        ("--max-num-seqs", "16"),
        ("--quantization", "awq_marlin"),
    ]:
        assert command[command.index(flag) + 1] == value
    assert "ports" not in engine


@needs_compose
def test_profiles_hold_the_optional_services(tmp_path: Path) -> None:
    plain = _rendered(tmp_path, "local-sim", "runtime='docker'")
    assert {"dcgm-exporter", "open-webui"}.isdisjoint(_compose_config(plain)["services"])
    assert "open-webui" in _compose_config(plain, "webui")["services"]
    # A stack that enables a profile turns it on for a plain `docker compose up` through .env.
    gpu = _rendered(tmp_path, "llama3.1-8b-h100")
    assert read_env_file(gpu / ".env")["COMPOSE_PROFILES"] == "dcgm"
    services = _compose_config(gpu)["services"]
    assert "dcgm-exporter" in services
    assert "open-webui" not in services


@needs_promtool
@pytest.mark.parametrize("preset", PRESETS)
def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path, preset: str) -> None:
    out = _rendered(tmp_path, preset)
    _promtool("check", "config", out / "prometheus" / "prometheus.yml")
    rules = sorted((out / "prometheus" / "rules").glob("*.yml"))
    assert {p.name for p in rules} >= {"alerts.yml", "recording.yml"}
    _promtool("check", "rules", *rules)


def _promtool(*args: str | Path) -> None:
    check = subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def _scrape_targets(out: Path) -> dict[str, tuple[str, str]]:
    config = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    return {
        job["job_name"]: (
            job["static_configs"][0]["targets"][0],
            job.get("metrics_path", "/metrics"),
        )
        for job in config["scrape_configs"]
    }


def test_scrape_targets_follow_the_runtime(tmp_path: Path) -> None:
    local = _scrape_targets(_rendered(tmp_path / "a", "local-sim", "ports.engine=18000"))
    assert local[metrics.JOB_ENGINE] == ("127.0.0.1:18000", "/metrics")
    assert local[metrics.JOB_GPU] == ("127.0.0.1:18000", "/dcgm/metrics")
    assert local[metrics.JOB_GATEWAY][0] == "127.0.0.1:8080"
    assert "prometheus" in local
    docker = _scrape_targets(_rendered(tmp_path / "b", "local-sim", "runtime='docker'"))
    assert docker[metrics.JOB_ENGINE][0] == "engine:8000"
    assert docker[metrics.JOB_GATEWAY][0] == "gateway:8080"
    gpu = _scrape_targets(_rendered(tmp_path / "c", "llama3.1-8b-h100"))[metrics.JOB_GPU]
    assert gpu == ("dcgm-exporter:9400", "/metrics")
    # A local vLLM engine has no DCGM to scrape.
    assert metrics.JOB_GPU not in _scrape_targets(_rendered(tmp_path / "d", "smollm2-cpu"))


def test_grafana_provisioning_uses_the_fixed_datasource_uid(tmp_path: Path) -> None:
    out = _rendered(tmp_path, "qwen2.5-14b-awq-3090")
    ds = yaml.safe_load((out / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert ds["datasources"][0]["uid"] == metrics.GRAFANA_DATASOURCE_UID
    provider = yaml.safe_load((out / "grafana/provisioning/dashboards/llmctl.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/llmctl/dashboards"
    shipped = {p.name for p in (Path(__file__).parents[2] / "dashboards").glob("*.json")}
    assert {p.name for p in (out / "grafana/dashboards").glob("*.json")} == shipped


def test_secrets_stay_in_a_private_env_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("sk-from-file\n")
    spec = _spec("qwen2.5-14b-awq-3090", f"gateway.api_keys_file='{keys_file}'")
    out = tmp_path / "out"
    environ = {"LLMCTL_API_KEYS": "sk-user-key-1", "HF_TOKEN": "hf_secret_token"}
    render_stack(spec, out, environ=environ)
    env = read_env_file(out / ".env")
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    generated = [env["GRAFANA_ADMIN_PASSWORD"], env["LLMCTL_ADMIN_KEY"]]
    assert all(len(value) >= 24 for value in generated)
    everything_else = "".join(
        p.read_text() for p in out.rglob("*") if p.is_file() and p.name != ".env"
    )
    for secret in [*generated, "sk-user-key-1", "hf_secret_token", "sk-from-file"]:
        assert secret not in everything_else
    # User-held secrets are referenced, not copied, and not even into .env.
    assert "sk-user-key-1" not in (out / ".env").read_text()
    compose = (out / "compose.yaml").read_text()
    assert "${LLMCTL_API_KEYS:-}" in compose
    assert "${HF_TOKEN:-}" in compose
    assert str(keys_file) in compose  # mounted as a compose secret


def test_generated_secrets_are_kept_across_renders(tmp_path: Path) -> None:
    spec = _spec("llama3.1-8b-h100")
    out = tmp_path / "out"
    render_stack(spec, out, environ={})
    first = read_env_file(out / ".env")
    (out / ".env").chmod(0o644)  # a user loosened it; the next render tightens it again
    render_stack(spec, out, environ={})
    second = read_env_file(out / ".env")
    assert second["GRAFANA_ADMIN_PASSWORD"] == first["GRAFANA_ADMIN_PASSWORD"]
    assert second["LLMCTL_ADMIN_KEY"] == first["LLMCTL_ADMIN_KEY"]
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    other = read_env_file(_rendered(tmp_path, "llama3.1-8b-h100") / ".env")
    assert other["GRAFANA_ADMIN_PASSWORD"] != first["GRAFANA_ADMIN_PASSWORD"]


def test_render_returns_files_and_write_is_separate(tmp_path: Path) -> None:
    files = render(_spec("local-sim"), environ={})
    assert {"compose.yaml", "prometheus/prometheus.yml", ".env"} <= set(files)
    assert not any(tmp_path.iterdir())
    (tmp_path / "prometheus/rules").mkdir(parents=True)
    (tmp_path / "prometheus/rules/old.yml").write_text("groups: []\n")
    write(files, tmp_path)
    assert (tmp_path / "compose.yaml").read_text() == files["compose.yaml"]
    assert not (tmp_path / "prometheus/rules/old.yml").exists()


def test_templates_use_strict_undefined(tmp_path: Path) -> None:
    (tmp_path / "bad.yml.j2").write_text("x: {{ spec.no_such_field }}\n")
    assert issubclass(environment(tmp_path).undefined, jinja2.StrictUndefined)
    with pytest.raises(ConfigError, match=r"bad\.yml\.j2"):
        render(_spec("local-sim"), environ={}, templates=tmp_path, dashboards=tmp_path)


def test_dollar_signs_in_values_are_escaped_for_compose(tmp_path: Path) -> None:
    out = _rendered(
        tmp_path, "qwen2.5-14b-awq-3090", "engine.extra_args=['--chat-template', 'a$b']"
    )
    assert "a$$b" in (out / "compose.yaml").read_text()
    if COMPOSE is not None:
        # Compose prints literal dollars in their escaped form; an interpolated `$b` would be gone.
        command = _compose_config(out)["services"]["engine"]["command"]
        assert "a$$b" in command


@needs_promtool
def test_ipv6_bind_renders_bracketed_targets_that_promtool_accepts(tmp_path: Path) -> None:
    out = _rendered(tmp_path, "local-sim", "ports.bind_address='::1'", "ports.gateway=18680")
    targets = _scrape_targets(out)
    assert targets[metrics.JOB_GATEWAY][0] == "[::1]:18680"
    assert targets["prometheus"][0] == "[::1]:9090"
    _promtool("check", "config", out / "prometheus" / "prometheus.yml")


def test_every_admin_key_reference_follows_one_rule(tmp_path: Path) -> None:
    """Compose's reference and the generated .env agree with secrets.admin_key_source."""
    from llmctl.stack.credentials import admin_key, admin_key_source

    key_file = tmp_path / "admin.key"
    key_file.write_text("from-file\n")
    cases = {
        "env": ("gateway.admin_key_env='MY_ADMIN'", f"gateway.admin_key_file='{key_file}'"),
        "file": (f"gateway.admin_key_file='{key_file}'",),
        "generated": (),
        "none": ("gateway.generate_admin_key=false",),
    }
    for expected, sets in cases.items():
        spec = _spec("local-sim", "runtime='docker'", *sets)
        out = tmp_path / expected
        render_stack(spec, out, environ={})
        assert admin_key_source(spec) == expected
        generated = read_env_file(out / ".env").get("LLMCTL_ADMIN_KEY")
        assert bool(generated) == (expected == "generated")
        compose = (out / "compose.yaml").read_text()
        assert ("${MY_ADMIN:-}" in compose) == (expected == "env")
        key = admin_key(spec, out, {"MY_ADMIN": "from-env"})
        wanted = {"env": "from-env", "file": "from-file", "generated": generated, "none": None}
        assert key == wanted[expected]


def test_unwritable_stack_folder_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write"):
        render_stack(_spec("local-sim"), blocker / "stack", environ={})


def test_the_docker_gateway_reads_the_engines_model_files(tmp_path: Path) -> None:
    """With a vLLM engine the gateway counts prompt tokens with the model's tokenizer, read from
    the HF cache the engine fills (mounted read-only)."""
    out = _rendered(tmp_path, "qwen2.5-14b-awq-3090")
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    gateway = compose["services"]["gateway"]
    command = gateway["command"]
    assert command[command.index("--tokenizer") + 1] == "Qwen/Qwen2.5-14B-Instruct-AWQ"
    assert gateway["environment"]["HF_HOME"] == "/hf-cache"
    [volume] = gateway["volumes"]
    assert volume["source"] == "${HF_CACHE_DIR:?run llmctl render}"
    assert (volume["target"], volume["read_only"]) == ("/hf-cache", True)
    sim = yaml.safe_load((_rendered(tmp_path / "sim", "local-sim") / "compose.yaml").read_text())
    assert "--tokenizer" not in sim["services"]["gateway"]["command"]


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        # The reported injections: each is refused, naming the key and what is allowed.
        (['engine.env={"X: y\\n    privileged: true\\n    Z" = "v"}'], "engine.env"),
        (["engine.hf_cache_dir='/cache\\nCOMPOSE_PROFILES=dcgm'"], "engine.hf_cache_dir"),
        (["engine.image='vllm/vllm-openai:v1\\n    privileged: true'"], "engine.image"),
        (["engine.image='Vllm/VLLM:1'"], "engine.image"),
        (["gateway.api_keys_env='KEYS}:-x}\\nX'"], "gateway.api_keys_env"),
        (["engine.model='--trust-remote-code'"], "engine.model"),
        (["ports.bind_address='fe80::1%eth0\\n'"], "ports.bind_address"),
        (["observability.scrape_interval='\u0663s'"], "observability.scrape_interval"),
        (["alerts.slo_p95_ttft_s=inf"], "alerts.slo_p95_ttft_s"),
    ],
)
def test_values_that_would_break_out_are_refused_naming_the_key(sets: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _spec("local-sim", "runtime='docker'", "engine.kind='vllm'", *sets)
    assert key in str(refused.value)


def test_hf_home_from_the_environment_is_checked_before_it_reaches_env(tmp_path: Path) -> None:
    spec = _spec("qwen2.5-14b-awq-3090")
    with pytest.raises(ConfigError, match=r"\$HF_HOME"):
        render(spec, environ={"HF_HOME": "/cache\nCOMPOSE_PROFILES=dcgm,webui"})
    with pytest.raises(ConfigError, match=r"\$HF_HOME"):
        render(spec, environ={"HF_HOME": "/it's/here"})


@needs_compose
def test_odd_but_valid_values_come_out_exactly(tmp_path: Path) -> None:
    odd = 'a "quoted" $HOME ${X:?boom} #not-a-comment \U0001f600 \u2028 é: - [x]'
    odd_values = {"engine.model": odd, "engine.env": {"ODD": odd}, "engine.extra_args": [odd]}
    flags = [Override(key, value, "test") for key, value in odd_values.items()]
    spec = load_stack(preset="qwen2.5-14b-awq-3090", environ={}, flags=flags).spec
    out = tmp_path / "out"
    render_stack(spec, out, environ={"HF_HOME": str(tmp_path / "a dir: with $ and #")})
    engine = _compose_config(out)["services"]["engine"]
    # `docker compose config` writes a literal $ as $$ again.
    assert engine["environment"]["ODD"].replace("$$", "$") == odd
    command = [arg.replace("$$", "$") for arg in engine["command"]]
    assert command[command.index("--model") + 1] == odd
    assert command[-1] == odd
    assert engine["volumes"][0]["source"].replace("$$", "$") == str(
        tmp_path / "a dir: with $ and #"
    )
    assert set(engine) >= {"image", "command", "environment"}
    assert "privileged" not in engine
