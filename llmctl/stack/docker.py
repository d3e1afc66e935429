"""The Docker runtime: the rendered compose.yaml run by Docker Compose v2 through python-on-whales."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from python_on_whales import Container, DockerClient
from python_on_whales.exceptions import NoSuchContainer

from llmctl.core.errors import ConfigError, RuntimeBackendError
from llmctl.stack.credentials import StackSecrets, compose_profiles
from llmctl.stack.dockercli import DockerRunner
from llmctl.stack.render import render
from llmctl.stack.replicas import is_engine
from llmctl.stack.runtime import (
    Health,
    LogOptions,
    Progress,
    ServiceStatus,
    State,
    UpResult,
    require_known,
)
from llmctl.stack.spec import StackSpec, host_port

COMPOSE_FILE = "compose.yaml"
SERVICE_LABEL = "com.docker.compose.service"
POLL_S = 1.0
OBSERVE_TRIES = 3
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
                return list(dict.fromkeys([*self.spec.engine.services(), *self.spec.endpoints()]))
            config: Any = self.docker(
                "read the stack's compose file", lambda d: d.compose.config(return_json=True)
            )
            self._services = list(config.get("services", {}))
        return self._services

    def containers(self) -> dict[str, Container]:
        """Service name -> its container (stopped ones included), inspected in one call."""

        def inspect(d: DockerClient) -> list[Container]:
            for attempt in range(OBSERVE_TRIES):
                ids = [c.id for c in d.compose.ps(all=True)]
                try:
                    return d.container.inspect(ids) if ids else []
                except NoSuchContainer:  # removed since the listing (compose recreating it)
                    if attempt == OBSERVE_TRIES - 1:
                        raise
            return []

        found = self.docker("list the stack's containers", inspect)
        return {(c.config.labels or {}).get(SERVICE_LABEL, c.name): c for c in found}

    def status(self) -> list[ServiceStatus]:
        self.docker.preflight(gpu=False)
        return self._statuses()

    def _statuses(self) -> list[ServiceStatus]:
        return self._observe()[0]

    def _observe(self, since: datetime | None = None) -> tuple[list[ServiceStatus], dict[str, str]]:
        """Every service's status, and service -> container id of those that exited after `since`.

        python-on-whales reads a container's state again when it is asked after a moment, so a
        container compose removes meanwhile (recreating a service) vanishes mid-read: then look
        again, as the next poll would."""
        for attempt in range(OBSERVE_TRIES):
            try:
                return self._observe_once(since)
            except NoSuchContainer:
                if attempt == OBSERVE_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _observe_once(self, since: datetime | None) -> tuple[list[ServiceStatus], dict[str, str]]:
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

    def configs(self) -> dict[str, str]:
        """Service -> its compose definition and the rendered files it mounts, as the stack's
        settings render them now (services of profiles not switched on are left out)."""
        files = render(self.spec, StackSecrets.load(self.spec, self.directory))
        compose: Any = yaml.safe_load(files[COMPOSE_FILE])
        profiles = set(compose_profiles(self.spec))
        configs: dict[str, str] = {}
        for name, service in compose["services"].items():
            if service.get("profiles") and not profiles & set(service["profiles"]):
                continue
            mounted = [
                volume[2:].split(":")[0]
                for volume in service.get("volumes", [])
                if isinstance(volume, str) and volume.startswith("./")
            ]
            config = {
                "service": service,
                "files": {k: v for k, v in files.items() if k.split("/")[0] in mounted},
            }
            configs[name] = json.dumps(config, sort_keys=True)
        return configs

    def _known(self, services: Sequence[str]) -> None:
        # A wrong name is the user's mistake whether or not Docker is up: say so first.
        known = self.declared()
        if known:  # an unreadable compose file: Docker's own error says more
            require_known(self.spec.name, services, known)

    def logs(
        self,
        service: str | None = None,
        *,
        follow: bool = False,
        options: LogOptions | None = None,
    ) -> Iterator[str]:
        options = options or LogOptions()
        if service is not None:
            self._known([service])
        self.docker.preflight(gpu=False)
        since = None
        if options.since is not None:
            since = datetime.fromtimestamp(options.since, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        chunks = self.docker.stream(
            "read the stack's logs",
            lambda d: d.compose.logs(
                [service] if service else [],
                follow=follow,
                stream=True,
                no_log_prefix=service is not None,
                tail=None if options.tail is None else str(options.tail),
                since=since,
                timestamps=options.timestamps,
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
        return self._start_and_wait(
            lambda d: d.compose.up(detach=True, quiet=True, remove_orphans=True), progress, timeout
        )

    def restart(
        self,
        services: Sequence[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> UpResult:
        """Recreate these services from the compose file as rendered now (their dependencies
        are left alone), then wait until every service is up."""
        self._known(services)
        if not self.compose_file.is_file():
            raise ConfigError(f"{self.compose_file} is missing; run `llmctl render` first")
        engines = any(is_engine(name) for name in services)
        self.docker.preflight(gpu=self.spec.engine.kind == "vllm" and engines)
        wanted = list(services)
        return self._start_and_wait(
            lambda d: d.compose.up(
                wanted, detach=True, quiet=True, force_recreate=True, dependencies=False
            ),
            progress,
            timeout,
            watched=set(wanted),
        )

    def stop(self, services: Sequence[str]) -> list[str]:
        """Stop and remove these services' containers."""
        self.docker.preflight(gpu=False)
        found = self.containers()
        gone = [name for name in services if name in found]
        if gone:
            self.docker("stop services", lambda d: d.compose.rm(gone, stop=True))
        return [f"removed {name} (container {found[name].id[:12]})" for name in gone]

    def _start_and_wait(
        self,
        start: Callable[[DockerClient], object],
        progress: Progress | None,
        timeout: float | None,
        watched: set[str] | None = None,
    ) -> UpResult:
        """Run `start` and wait until every service is up. A failure of a service in `watched`
        (all when None) ends the wait; the others may be down for a while (a gateway whose engine
        restarts) and are waited for until the deadline."""
        limit = timeout if timeout is not None else self.spec.engine.startup_timeout_s + UP_MARGIN_S
        deadline = time.monotonic() + limit
        starter = _Starter(lambda: self.docker("start the stack", start))
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
                failed = [
                    s
                    for s in services
                    if (s.state == "exited" or s.health == "unhealthy")
                    and (watched is None or s.name in watched)
                ]
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
        crashing = self._crashing(error)
        failed = [
            s
            for s in unready
            if s.state == "exited" or s.health == "unhealthy" or s.name in crashing
        ]
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

    def _crashing(self, error: RuntimeBackendError) -> set[str]:
        """Services that failed though they may look alive now: those the error names (compose's
        last word, `container <project>-<service>-1 exited (1)` / `is unhealthy`; not its whole
        stderr, whose progress lines name every container), and those Docker has restarted (a
        crash loop caught between two restarts reads "running")."""
        said = str(error)
        prefix = f"{self.spec.project_name}-"
        named = {
            name
            for name in self.services()
            if re.search(rf"\b{re.escape(prefix + name)}-\d+\b", said)
        }
        try:
            restarted = {n for n, c in self.containers().items() if c.restart_count}
        except RuntimeBackendError:
            restarted = set()
        return named | restarted

    def down(self, *, volumes: bool = False) -> list[str]:
        missing = next((f for f in self.docker.probe(gpu=False) if not f.ok), None)
        calm = {"docker": "Docker is not installed", "docker engine": "no Docker engine answers"}
        if (
            missing is not None
            and missing.name in calm
            and not (volumes and missing.name != "docker")
        ):
            # No container of the stack runs where there is no Docker engine: nothing to stop.
            # (Its volumes are another matter: `--volumes` needs the engine to remove them.)
            return [
                f"nothing to stop: {calm[missing.name]} here, so stack {self.spec.name} has no containers running"
            ]
        self.docker.preflight(gpu=False)
        before = self.containers()
        self.docker(
            "stop the stack",
            lambda d: d.compose.down(volumes=volumes, remove_orphans=True, quiet=True),
        )
        lines = [f"removed {name} (container {c.id[:12]})" for name, c in sorted(before.items())]
        if not lines:
            lines.append(f"nothing to stop: stack {self.spec.name} has no containers")
        if volumes:
            lines.append(f"removed the volumes of {self.spec.project_name}")
        return lines
