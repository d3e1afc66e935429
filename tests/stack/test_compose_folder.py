"""A rendered docker stack folder stands on its own (it can be moved to the GPU host and built
there), and `down` is calm where there is nothing to stop."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stack.test_cli import NO_DOCKER, llmctl
from tests.support import REPO


def _compose_v2() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def test_a_rendered_docker_stack_builds_from_inside_its_own_folder(tmp_path: Path) -> None:
    done = llmctl(tmp_path, "render", "--preset", "llama3.1-8b-h100")
    assert done.returncode == 0, done.stderr
    rendered = tmp_path / ".llmctl" / "llama3.1-8b-h100"
    compose = (rendered / "compose.yaml").read_text()
    assert str(REPO) not in compose  # nothing of this checkout's place
    gateway = yaml.safe_load(compose)["services"]["gateway"]
    assert gateway["build"] == {"context": "./build", "dockerfile": "docker/gateway.Dockerfile"}

    moved = tmp_path / "gpu-host" / "stack"
    moved.parent.mkdir()
    shutil.move(rendered, moved)
    build = moved / "build"
    for name in ("docker/gateway.Dockerfile", "pyproject.toml", "README.md", "llmctl/__init__.py"):
        assert (build / name).read_text() == (REPO / name).read_text(), name
    assert (build / "stacks" / "local-sim.toml").is_file()
    assert not list(build.rglob("__pycache__"))
    if not _compose_v2():
        pytest.skip("no Docker Compose v2 to read the moved folder with")
    # Compose itself (no engine needed) resolves the build context inside the moved folder.
    config = subprocess.run(
        ["docker", "compose", "-f", str(moved / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    services = json.loads(config.stdout)["services"]
    assert services["gateway"]["build"]["context"] == str(build)


def test_a_local_stack_renders_no_build(tmp_path: Path) -> None:
    assert llmctl(tmp_path, "render").returncode == 0
    rendered = tmp_path / ".llmctl" / "local-sim"
    assert "build:" not in (rendered / "compose.yaml").read_text()
    assert not (rendered / "build").exists()


def test_down_without_a_docker_engine_has_nothing_to_stop(tmp_path: Path) -> None:
    down = llmctl(tmp_path, "down", "--set", "runtime='docker'", env=NO_DOCKER)
    assert down.returncode == 0, down.stderr
    assert "nothing to stop: no Docker engine answers here" in down.stdout
    # Its volumes are another matter: removing them needs the engine.
    volumes = llmctl(tmp_path, "down", "--volumes", "--set", "runtime='docker'", env=NO_DOCKER)
    assert volumes.returncode == 1
    assert "Docker engine" in volumes.stderr


def test_down_without_docker_at_all_has_nothing_to_stop(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    path = f"{bare}:{Path(sys.executable).parent}"
    down = llmctl(tmp_path, "down", "--volumes", "--set", "runtime='docker'", env={"PATH": path})
    assert down.returncode == 0, down.stderr
    assert "nothing to stop: Docker is not installed here" in down.stdout
