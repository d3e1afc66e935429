"""The stack commands as a user runs them: init, config, render, errors, doctor."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from llmctl.stack.credentials import read_env_file
from llmctl.stack.spec import StackSpec
from tests.support import free_port

# A Docker engine that cannot be there, whatever this machine runs.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/llmctl-test/docker.sock"}


def llmctl(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MAX_ACTIVE", "QUEUE_MAX")}
    return subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        cwd=cwd,
        env={**base, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_writes_the_preset_and_refuses_to_overwrite(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "init", "--preset", "qwen2.5-14b-awq-3090")
    assert done.returncode == 0, done.stderr
    assert 'model = "Qwen/Qwen2.5-14B-Instruct-AWQ"' in (tmp_path / "llmctl.toml").read_text()
    again = llmctl(tmp_path, "init")
    assert again.returncode == 1
    assert "--force" in again.stderr
    forced = llmctl(tmp_path, "init", "--force")
    assert forced.returncode == 0
    assert 'name = "local-sim"' in (tmp_path / "llmctl.toml").read_text()


def test_config_shows_values_and_their_sources(tmp_path: Path) -> None:
    llmctl(tmp_path, "init")
    done = llmctl(tmp_path, "config", "--queue-max", "12", env={"MAX_ACTIVE": "6"})
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.count("│") >= 3}
    # The value cell itself: a bare "6" in the row would also match 16.
    assert rows["gateway.max_active"].split("│")[2].strip() == "6"
    assert "env MAX_ACTIVE" in rows["gateway.max_active"]
    assert "flag --queue-max" in rows["gateway.queue_max"]
    assert "file llmctl.toml" in rows["engine.kind"]
    assert "default" in rows["gateway.max_body_bytes"]
    assert "MAX_ACTIVE overrides file llmctl.toml" in done.stderr


def test_up_names_every_port_in_use_at_once_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as one, socket.socket() as two:
        for held in (one, two):
            held.bind(("127.0.0.1", 0))
            held.listen()
        gateway, engine = one.getsockname()[1], two.getsockname()[1]
        done = llmctl(
            tmp_path, "up", "--gateway-port", str(gateway), "--engine-port", str(engine),
            "--set", "observability.prometheus=false",
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {gateway} on 127.0.0.1 (gateway) is in use" in done.stderr
    assert f"port {engine} on 127.0.0.1 (engine) is in use" in done.stderr
    assert "--gateway-port" in done.stderr
    assert "--engine-port" in done.stderr
    assert not list((tmp_path / ".llmctl").rglob("*.pid"))


def test_bad_config_exits_non_zero_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "llmctl.toml").write_text("[gateway]\nmax_active = -1\nqueue_mdoe = 'x'\n")
    done = llmctl(tmp_path, "render")
    assert done.returncode == 1
    assert "error:" in done.stderr
    assert "gateway.max_active" in done.stderr
    assert "gateway.queue_mdoe: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_writes_into_the_stack_folder(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "render", "--preset", "llama3.1-8b-h100")
    assert done.returncode == 0, done.stderr
    out = tmp_path / ".llmctl" / "llama3.1-8b-h100"
    assert (out / "compose.yaml").is_file()
    assert (out / "prometheus" / "prometheus.yml").is_file()
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    assert read_env_file(out / ".env")["GRAFANA_ADMIN_PASSWORD"]


def test_doctor_reports_each_check(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "doctor")
    for name in ("docker", "prometheus", "vllm"):
        assert name in done.stdout
    # The default stack needs neither Docker nor vLLM, so only a broken Python could fail it.
    assert done.returncode == 0, done.stdout + done.stderr


def test_chat_without_a_running_stack_says_so(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "chat", "Hello", "--set", "ports.gateway=1")
    assert done.returncode == 1
    assert "llmctl up" in done.stderr


def test_init_force_writes_through_a_symlink_keeps_the_mode_and_refuses_read_only(
    tmp_path: Path,
) -> None:
    real = tmp_path / "configs" / "stack.toml"
    real.parent.mkdir()
    real.write_text("# mine\n")
    real.chmod(0o600)
    (tmp_path / "llmctl.toml").symlink_to(real)
    assert llmctl(tmp_path, "init").returncode == 1  # a symlink counts as existing
    done = llmctl(tmp_path, "init", "--force", "--preset", "smollm2-cpu")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "llmctl.toml").is_symlink()
    assert "smollm2" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    real.chmod(0o400)
    refused = llmctl(tmp_path, "init", "--force")
    assert refused.returncode == 1
    assert "read-only" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "smollm2" in real.read_text()


def test_init_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "init", "--path", "nodir/x.toml")
    assert done.returncode == 1
    assert "cannot write nodir/x.toml" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_into_a_blocked_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".llmctl").write_text("a file where the state folder goes\n")
    done = llmctl(tmp_path, "render")
    assert done.returncode == 1
    assert "cannot write" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_and_render_take_the_same_flags_as_up(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "config", "--gateway-port", "18123", "--scrape-interval", "2s")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.count("│") >= 3}
    assert "18123" in rows["ports.gateway"]
    assert "flag --gateway-port" in rows["ports.gateway"]
    assert "flag --scrape-interval" in rows["observability.scrape_interval"]

    done = llmctl(tmp_path, "render", "--max-active", "3", "--bind", "::1")
    assert done.returncode == 0, done.stderr
    compose = (tmp_path / ".llmctl" / "local-sim" / "compose.yaml").read_text()
    assert '"--max-active", "3"' in compose
    prom = (tmp_path / ".llmctl" / "local-sim" / "prometheus" / "prometheus.yml").read_text()
    assert '"[::1]:8080"' in prom


def test_a_coarse_scrape_interval_is_refused_naming_the_key(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "render", "--scrape-interval", "30s")
    assert done.returncode == 1
    assert "observability.scrape_interval" in done.stderr
    assert "Traceback" not in done.stderr


def test_logs_of_an_unknown_service_is_a_usage_error(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "logs", "nosuch")
    assert done.returncode == 2
    assert "no service 'nosuch'" in done.stderr
    assert "engine" in done.stderr
    # The docker runtime says the same, before (and without) reaching Docker.
    docker = ["--set", "runtime='docker'"]
    assert llmctl(tmp_path, "render", *docker).returncode == 0
    done = llmctl(tmp_path, "logs", "nosuch", *docker, env=NO_DOCKER)
    assert done.returncode == 2, done.stderr
    assert "no service 'nosuch'" in done.stderr
    assert "gateway" in done.stderr


def test_a_failed_docker_up_does_not_jam_later_commands(tmp_path: Path) -> None:
    ports = ["--set", f"ports.gateway={free_port()}", "--set", f"ports.engine={free_port()}"]
    ports += ["--set", f"ports.prometheus={free_port()}"]
    up = llmctl(tmp_path, "up", "--runtime", "docker", *ports, env=NO_DOCKER)
    assert up.returncode == 1
    assert "Traceback" not in up.stderr
    assert not (tmp_path / ".llmctl" / "local-sim" / "stack.json").exists()
    status = llmctl(tmp_path, "status", *ports, env=NO_DOCKER)
    assert "stopped" in status.stdout, status.stdout + status.stderr
    assert "Docker" not in status.stderr
    down = llmctl(tmp_path, "down", *ports, env=NO_DOCKER)
    assert down.returncode == 0, down.stderr
    assert "nothing was running" in down.stdout


def test_a_saved_spec_whose_runtime_is_gone_yields_to_the_current_one(tmp_path: Path) -> None:
    state = tmp_path / ".llmctl" / "local-sim"
    state.mkdir(parents=True)
    saved = StackSpec(runtime="docker")
    (state / "stack.json").write_text(saved.model_dump_json())
    ports = ["--set", f"ports.gateway={free_port()}", "--set", f"ports.engine={free_port()}"]
    ports += ["--set", f"ports.prometheus={free_port()}"]
    status = llmctl(tmp_path, "status", *ports, env=NO_DOCKER)
    assert status.returncode == 1  # nothing is up, but it says so for the local runtime
    assert "local-sim (local)" in status.stdout, status.stdout + status.stderr
    assert "docker runtime, which cannot be reached" in status.stderr
    logs = llmctl(tmp_path, "logs", *ports, env=NO_DOCKER)
    assert logs.returncode == 0, logs.stderr


def test_config_render_and_up_declare_the_same_overrides() -> None:
    import typer
    from typer.core import TyperGroup

    from llmctl.cli import stack

    app = typer.Typer()
    stack.register(app)
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    options = {
        name: {opt for param in group.commands[name].params for opt in param.opts}
        for name in ("config", "render", "up")
    }
    own = {
        "up": {"--timeout", "--force-recreate"},
        "render": {"--target"},
        "config": {"--json", "--format"},
    }
    assert len({frozenset(opts - own[name]) for name, opts in options.items()}) == 1
    assert {"--set", "--runtime", "--max-active", "--bind", "--scrape-interval"} < options["up"]
