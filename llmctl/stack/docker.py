"""The Docker runtime: the rendered compose.yaml run by Docker Compose v2 through python-on-whales."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from python_on_whales import Container, DockerClient

from llmctl.core.errors import ConfigError, RuntimeBackendError, UsageError
from llmctl.stack.dockercli import DockerRunner
from llmctl.stack.runtime import Health, Progress, ServiceStatus, State, UpResult
from llmctl.stack.spec import StackSpec, host_port

COMPOSE_FILE = "compose.yaml"
SERVICE_LABEL = "com.docker.compose.service"
POLL_S = 1.0
LOG_TAIL_LINES = 15
# Beyond the engine's own startup allowance: network and containers created, the gateway and
# Prometheus started after the engine turns healthy, their first health probes.
UP_MARGIN_S = 60.0
_HEALTH: dict[str, Health] = {
    "healthy": "healthy",
    "unhealthy": "unhealthy",
    "starting": "starting",
}
_STATES: dict[str, State] = {
    "running": "running",
    "created": "starting",
    "restarting": "exited",  # it exited; docker is starting it again
    "exited": "exited",
    "dead": "exited",
}


def _settled(service: ServiceStatus) -> bool:
    """Up as far as can be told: healthy, or running with no healthcheck to ask."""
    return service.ready or (service.state == "running" and service.health == "none")


def _ports(container: Container) -> str:
    bindings: dict[str, list[dict[str, str]] | None] = container.network_settings.ports or {}
    return " ".join(
        f"{host_port(b.get('HostIp') or '0.0.0.0', int(b.get('HostPort') or 0))}->{inner}"
        for inner, published in sorted(bindings.items())
        for b in published or []
    )


def _exited_since(container: Container, since: datetime) -> bool:
    state = container.state
    stopped = state.status in ("exited", "dead") or bool(state.restarting)
    return stopped and state.finished_at is not None and state.finished_at >= since


class _Starter(threading.Thread):
    """`docker compose up -d` in the background: it blocks until dependencies are healthy, and
    meanwhile `up` keeps reporting progress."""

    def __init__(self, start: Callable[[], object]) -> None:
        super().__init__(name="llmctl-compose-up", daemon=True)
        self._start_stack = start
        self.error: RuntimeBackendError | None = None

    def run(self) -> None:
        try:
            self._start_stack()
        except RuntimeBackendError as exc:
            self.error = exc


class DockerRuntime:
    """Runs a rendered stack with Docker Compose; see llmctl.stack.runtime for the contract."""

    def __init__(self, spec: StackSpec, directory: Path) -> None:
        self.spec = spec
        self.directory = directory
        self.compose_file = directory / COMPOSE_FILE
        found = self.compose_file if self.compose_file.is_file() else None
        self.docker = DockerRunner.for_project(spec.project_name, found)
        self._services: list[str] | None = None

    # --- looking -------------------------------------------------------------------------------

    def services(self) -> list[str]:
        """The services compose runs for this stack (enabled profiles included)."""
        if self._services is None:
            if not self.compose_file.is_file():  # never rendered: what the spec would run
                return list(dict.fromkeys(["engine", *self.spec.endpoints()]))
            config: Any = self.docker(
                "read the stack's compose file", lambda d: d.compose.config(return_json=True)
            )
            self._services = list(config.get("services", {}))
        return self._services

    def containers(self) -> dict[str, Container]:
        """Service name -> its container (stopped ones included), inspected in one call."""

        def inspect(d: DockerClient) -> list[Container]:
            ids = [c.id for c in d.compose.ps(all=True)]
            return d.container.inspect(ids) if ids else []

        found = self.docker("list the stack's containers", inspect)
        return {(c.config.labels or {}).get(SERVICE_LABEL, c.name): c for c in found}

    def status(self) -> list[ServiceStatus]:
        self.docker.preflight(gpu=False)
        return self._statuses()

    def _statuses(self) -> list[ServiceStatus]:
        return self._observe()[0]

    def _observe(self, since: datetime | None = None) -> tuple[list[ServiceStatus], dict[str, str]]:
        """Every service's status, and service -> container id of those that exited after `since`."""
        containers = self.containers()
        names = self.services() + sorted(set(containers) - set(self.services()))
        statuses = [self._status(name, containers.get(name)) for name in names]
        exited: dict[str, str] = {}
        if since is not None:
            exited = {n: c.id for n, c in containers.items() if _exited_since(c, since)}
        return statuses, exited

    def _status(self, name: str, container: Container | None) -> ServiceStatus:
        url = self.spec.endpoints().get(name)
        if container is None:
            return ServiceStatus(name, "stopped", url=url)
        state = container.state
        status = state.status or "unknown"
        health = _HEALTH.get(state.health.status or "", "none") if state.health else "none"
        detail = " ".join(filter(None, [container.id[:12], _ports(container)]))
        if status in ("exited", "dead") or state.restarting:
            detail = f"{status} (exit code {state.exit_code}) {detail}"
        elif container.restart_count:
            # Caught between two restarts of a crash loop: "running" alone would hide the crashes.
            detail = f"exited and restarted {container.restart_count}x {detail}"
        return ServiceStatus(name, _STATES.get(status, "stopped"), health, detail, url)

    def declared(self) -> list[str]:
        """Every service the stack's compose file declares (any profile), read without Docker."""
        if not self.compose_file.is_file():
            return self.services()
        try:
            config: Any = yaml.safe_load(self.compose_file.read_text())
        except (OSError, yaml.YAMLError):
            return []
        services = config.get("services") if isinstance(config, dict) else None
        return list(services) if isinstance(services, dict) else []

    def logs(self, service: str | None = None, *, follow: bool = False) -> Iterator[str]:
        # A wrong name is the user's mistake whether or not Docker is up: say so first.
        known = self.declared() if service is not None else []
        if service is not None and known and service not in known:
            raise UsageError(
                f"no service {service!r} in stack {self.spec.name}: {', '.join(known)}"
            )
        self.docker.preflight(gpu=False)
        chunks = self.docker.stream(
            "read the stack's logs",
            lambda d: d.compose.logs(
                [service] if service else [],
                follow=follow,
                stream=True,
                no_log_prefix=service is not None,
            ),
        )
        pending = b""
        for _source, chunk in chunks:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if pending:
            yield pending.decode(errors="replace")

    def _log_tail(self, service: str) -> str:
        try:
            text: str = self.docker(
                f"read {service}'s logs",
                lambda d: d.compose.logs([service], tail=str(LOG_TAIL_LINES), no_log_prefix=True),
            )
        except RuntimeBackendError:
            return ""
        return "\n".join(f"    {line}" for line in text.splitlines()[-LOG_TAIL_LINES:])

    # --- changing ------------------------------------------------------------------------------

    def up(self, *, progress: Progress | None = None, timeout: float | None = None) -> UpResult:
        if not self.compose_file.is_file():
            raise ConfigError(f"{self.compose_file} is missing; run `llmctl render` first")
        self.docker.preflight(gpu=self.spec.engine.kind == "vllm")
        before = self._statuses()
        if before and all(s.state == "running" for s in before):
            return UpResult(already_running=True, services=before)

        limit = timeout if timeout is not None else self.spec.engine.startup_timeout_s + UP_MARGIN_S
        deadline = time.monotonic() + limit
        starter = _Starter(
            lambda: self.docker(
                "start the stack",
                lambda d: d.compose.up(detach=True, quiet=True, remove_orphans=True),
            )
        )
        since = datetime.now(UTC)
        starter.start()
        suspects: dict[str, str] = {}
        while True:
            services, exited = self._observe(since)
            if progress is not None:
                progress(services)
            # The same container exited in two polls running is a crash; compose's own
            # stop-and-recreate replaces a container within one poll.
            crashed = {name for name, cid in exited.items() if suspects.get(name) == cid}
            suspects = exited
            if crashed:
                failed = [s for s in services if s.name in crashed]
                message = f"{', '.join(sorted(crashed))} exited during start"
                raise self._explain(RuntimeBackendError(message), failed)
            if not starter.is_alive():
                if starter.error is not None:
                    raise self._explain(starter.error, services)
                if all(_settled(s) for s in services):
                    return UpResult(already_running=False, services=services)
                failed = [s for s in services if s.state == "exited" or s.health == "unhealthy"]
                if failed:
                    raise self._explain(RuntimeBackendError("services failed"), failed)
            if time.monotonic() > deadline:
                waiting = [s for s in services if not _settled(s)]
                raise self._explain(
                    RuntimeBackendError(f"stack {self.spec.name} not healthy after {limit:.0f}s"),
                    waiting,
                )
            time.sleep(POLL_S)

    def _explain(
        self, error: RuntimeBackendError, services: Sequence[ServiceStatus]
    ) -> RuntimeBackendError:
        """`error` plus each unready service's state, the last log lines of those that failed
        (of all unready ones when none did), and what to run next."""
        parts = [str(error)]
        unready = [s for s in services if not _settled(s)]
        failed = [s for s in unready if s.state == "exited" or s.health == "unhealthy"]
        for s in unready:
            parts.append(f"  {s.name}: {s.state}, health {s.health} {s.detail}".rstrip())
            tail = (
                self._log_tail(s.name) if s in (failed or unready) and s.state != "stopped" else ""
            )
            if tail:
                parts.append(tail)
        if any(s.state != "stopped" for s in services):
            parts.append(
                "the containers are left as they are for a look (`llmctl logs SERVICE`, "
                "`llmctl status`); `llmctl down` removes them"
            )
        return RuntimeBackendError(
            "\n".join(parts),
            command=error.command,
            returncode=error.returncode,
            stderr=error.stderr,
        )

    def down(self, *, volumes: bool = False) -> list[str]:
        self.docker.preflight(gpu=False)
        before = self.containers()
        self.docker(
            "stop the stack",
            lambda d: d.compose.down(volumes=volumes, remove_orphans=True, quiet=True),
        )
        lines = [f"removed {name} (container {c.id[:12]})" for name, c in sorted(before.items())]
        if not lines:
            lines.append(f"stack {self.spec.name} had no containers")
        if volumes:
            lines.append(f"removed the volumes of {self.spec.project_name}")
        return lines
