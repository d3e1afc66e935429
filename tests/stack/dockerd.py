"""A Docker engine for the docker tier: the one already running, or a dockerd the tests start.

Starting one needs root, Debian's `docker.io` and `LLMCTL_TEST_DOCKERD=1` (set by `.ci/run` after
`.ci/docker-setup` succeeded): tests never start daemons on a developer's machine unasked. The
daemon uses its own socket and is stopped, by PID, when the tests are done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import eventually

START_ENV = "LLMCTL_TEST_DOCKERD"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
IMAGES = {
    "gateway": os.environ.get("LLMCTL_IMAGE", "llmctl:local"),
    "prometheus": os.environ.get("LLMCTL_PROMETHEUS_IMAGE", "llmctl-prometheus:local"),
}


def docker_info(env: dict[str, str]) -> tuple[bool, str]:
    """Whether `docker info` answers with this environment, and why not."""
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def missing_images(env: dict[str, str]) -> list[str]:
    missing = []
    for image in IMAGES.values():
        probe = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, env=env, check=False
        )
        if probe.returncode != 0:
            missing.append(image)
    return missing


@contextmanager
def docker_engine(workdir: Path) -> Iterator[dict[str, str] | str]:
    """Yields the environment to reach an engine with, or a string: why there is none."""
    env = dict(os.environ)
    if shutil.which("docker") is None:
        yield "no `docker` CLI on PATH"
        return
    ok, why = docker_info(env)
    if ok:
        yield env
        return
    if os.environ.get(START_ENV) != "1" or shutil.which("dockerd") is None or os.geteuid() != 0:
        yield (
            f"no Docker engine reachable ({why}); start one, or run as root with "
            f"{START_ENV}=1 to let the tests start dockerd (see docs/docker.md)"
        )
        return
    with _started_dockerd(workdir) as host:
        env["DOCKER_HOST"] = host
        yield env


@contextmanager
def _started_dockerd(workdir: Path) -> Iterator[str]:
    """dockerd on a private socket (vfs storage: works in containers without overlayfs)."""
    socket = workdir / "docker.sock"
    host = f"unix://{socket}"
    log = (workdir / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            "dockerd",
            "--storage-driver=vfs",
            f"--host={host}",
            f"--pidfile={workdir / 'dockerd.pid'}",
            f"--exec-root={workdir / 'exec'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        env = {**os.environ, "DOCKER_HOST": host}

        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"it exited with {proc.returncode}")  # ends the wait at once
            return docker_info(env)[0]

        try:
            eventually(answering, timeout=START_TIMEOUT_S, interval=0.5)
        except (AssertionError, RuntimeError) as exc:
            tail = (workdir / "dockerd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"dockerd did not start ({exc}):\n{tail}") from exc
        yield host
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # dockerd's own containerd is in its group
            proc.wait(timeout=10)
        log.close()
