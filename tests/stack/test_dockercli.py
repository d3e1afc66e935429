"""The Docker runner's error translation and preflight, where no Docker engine is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from python_on_whales import DockerClient, DockerException

from llmctl.core.errors import RuntimeBackendError
from llmctl.stack.dockercli import NO_DOCKER, DockerRunner

needs_cli = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on PATH")


@needs_cli
def test_a_failed_docker_call_becomes_one_error_with_command_code_and_stderr(
    tmp_path: Path,
) -> None:
    runner = DockerRunner(DockerClient(host=f"unix://{tmp_path / 'none.sock'}"))
    with pytest.raises(RuntimeBackendError) as caught:
        runner("reach the Docker engine", lambda d: d.version(), hint="start it")
    error = caught.value
    assert isinstance(error.__cause__, DockerException)
    assert Path(error.command[0]).name == "docker"
    assert "version" in error.command
    assert error.returncode not in (None, 0)
    assert "none.sock" in error.stderr
    assert str(error).startswith("could not reach the Docker engine: ")
    assert str(error).endswith("; start it")


def test_no_docker_cli_is_found_before_anything_runs() -> None:
    runner = DockerRunner(
        DockerClient(client_call=["llmctl-no-such-docker"]), "llmctl-no-such-docker"
    )
    with pytest.raises(RuntimeBackendError) as caught:
        runner.preflight(gpu=False)
    assert str(caught.value) == NO_DOCKER
    assert caught.value.returncode == 127
    # The same when a call skips preflight: python-on-whales' own error is translated too.
    with pytest.raises(RuntimeBackendError, match="Docker is not installed"):
        runner("list containers", lambda d: d.ps())


@needs_cli
def test_cli_reports_an_unreachable_engine_with_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCTL")}
    env |= {"DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}", "NO_COLOR": "1", "COLUMNS": "300"}
    done = subprocess.run(
        [sys.executable, "-m", "llmctl", "status", "--preset", "local-sim"],
        cwd=tmp_path,
        env={**env, "LLMCTL_RUNTIME": "docker"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "error: could not reach the Docker engine" in done.stderr
    assert "systemctl start docker" in done.stderr
    assert "Traceback" not in done.stderr
