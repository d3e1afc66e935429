"""The local runtime: engine, gateway and Prometheus as background processes of this machine.

State lives in `.llmctl/<stack>/run/<service>.pid|.log`. Everything listens on loopback except the
gateway and Prometheus, which bind `ports.bind_address`. What each service runs is
`llmctl.stack.localservice`'s.
"""

from __future__ import annotations

import heapq
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from llmctl.core import http
from llmctl.core.errors import RuntimeBackendError
from llmctl.stack import environment, logfile, ports, processes
from llmctl.stack.localservice import (
    LocalService,
    local_services,
    service_configs,
    service_names,
)
from llmctl.stack.replicas import is_engine
from llmctl.stack.runtime import (
    Health,
    LogOptions,
    Progress,
    ServiceStatus,
    UpResult,
    require_known,
)
from llmctl.stack.spec import StackSpec

STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20
LOG_FLUSH_S = 2.0


class LocalRuntime:
    """Runs a stack as local processes; see llmctl.stack.runtime for the contract."""

    def __init__(self, spec: StackSpec, directory: Path, environ: Mapping[str, str] | None = None):
        self.spec = spec
        self.directory = directory
        self.run_dir = directory / "run"
        self.environ = dict(os.environ if environ is None else environ)
        self._loggers: dict[str, int] = {}  # service -> pid of its log copier (started here)

    def services(self, *, resolve: bool = True) -> list[LocalService]:
        return local_services(self.spec, self.directory, self.environ, resolve=resolve)

    def configs(self) -> dict[str, str]:
        return service_configs(self.spec, self.directory, self.environ)

    # --- state -----------------------------------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _record(self, name: str) -> processes.PidRecord | None:
        return processes.read_pidfile(self._pidfile(name))

    def _running(self, name: str) -> processes.PidRecord | None:
        record = self._record(name)
        return record if record is not None and processes.is_alive(record) else None

    # --- changing --------------------------------------------------------------------------------

    def up(self, *, progress: Progress | None = None, timeout: float | None = None) -> UpResult:
        planned = self.services(resolve=False)
        notes = [f"{s.name}: skipped ({s.skip})" for s in planned if s.argv is None]
        obs = self.spec.observability
        notes += [
            f"{name}: runs with the docker runtime only"
            for name, wanted in (("grafana", obs.grafana), ("open-webui", obs.open_webui))
            if wanted
        ]
        if all(self._running(s.name) for s in planned if s.argv is not None):
            return UpResult(True, self.status(), notes)
        stopped = [s.name for s in planned if s.argv is not None and not self._running(s.name)]
        result = self._start(stopped, progress, timeout)
        return UpResult(False, result.services, notes)

    def restart(
        self,
        services: Sequence[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> UpResult:
        self._known(services)
        runnable = {s.name for s in self.services(resolve=False) if s.argv is not None}
        self.stop([name for name in services if self._running(name)])
        return self._start(
            [n for n in service_names(self.spec) if n in services and n in runnable],
            progress,
            timeout,
        )

    def _start(
        self, names: Sequence[str], progress: Progress | None, timeout: float | None
    ) -> UpResult:
        to_start = [s for s in self.services() if s.name in names and s.argv is not None]
        for service in to_start:
            self._pidfile(service.name).unlink(missing_ok=True)  # stale: its process is gone
        busy = ports.conflicts(
            ("engine" if is_engine(s.name) else s.name, s.host, s.port) for s in to_start
        )
        if busy:
            raise RuntimeBackendError("\n".join(str(c) for c in busy))
        started: list[processes.PidRecord] = []
        rotation = processes.LogRotation(self.spec.logs.max_bytes, self.spec.logs.keep)
        logger_env = environment.common(self.environ, self.spec)
        try:
            for service, argv in [(s, s.argv) for s in to_start if s.argv is not None]:
                spawned = processes.spawn(
                    argv,
                    env=service.env,
                    log=self._log(service.name),
                    pidfile=self._pidfile(service.name),
                    rotation=rotation,
                    logger_env=logger_env,
                )
                started.append(spawned.record)
                self._loggers[service.name] = spawned.logger
            statuses = self._wait_ready(
                [s.name for s in to_start], progress, timeout or self._default_timeout()
            )
        except BaseException:
            processes.stop_all(started, grace=STOP_GRACE_S)
            for service in to_start:
                self._pidfile(service.name).unlink(missing_ok=True)
            raise
        return UpResult(False, statuses)

    def _default_timeout(self) -> float:
        return self.spec.engine.startup_timeout_s + 30.0

    def _wait_ready(
        self, names: list[str], progress: Progress | None, timeout: float
    ) -> list[ServiceStatus]:
        deadline = time.monotonic() + timeout
        with http.client(timeout_s=2.0) as client:
            while True:
                statuses = self.status(client)
                if progress is not None:
                    progress(statuses)
                dead = [s for s in statuses if s.name in names and s.state == "exited"]
                if dead:
                    raise RuntimeBackendError(
                        self._failure(dead[0].name, "exited during start", exited=True)
                    )
                ready = all(s.ready for s in statuses)
                gateway = any(s.name == "gateway" and s.state == "running" for s in statuses)
                unseen = self._unseen_engines(client, names) if ready and gateway else {}
                if ready and not unseen:
                    return statuses
                if time.monotonic() > deadline:
                    if ready:
                        seen = "; ".join(f"{n}: {d}" for n, d in unseen.items())
                        what = f"does not see every engine ready after {timeout:.0f}s ({seen})"
                        raise RuntimeBackendError(self._failure("gateway", what))
                    waiting = next(s.name for s in statuses if not s.ready)
                    raise RuntimeBackendError(
                        self._failure(waiting, f"not healthy after {timeout:.0f}s")
                    )
                time.sleep(0.25)

    def _unseen_engines(self, client: httpx.Client, names: Sequence[str]) -> dict[str, str]:
        """Engines started now that the gateway does not yet route to, with what its last probe
        found (its /health lists them by host:port). A healthy engine can still read down in the
        gateway until its next probe, when the first one came before the engine listened: `up`
        returns once the gateway sends requests to every engine it started, as compose's
        depends_on waits for a healthy engine before the gateway."""
        ports_by_name = dict(
            zip(self.spec.engine.services(), self.spec.ports_of("engine"), strict=True)
        )
        started = {f"127.0.0.1:{ports_by_name[n]}" for n in names if n in ports_by_name}
        if not started:
            return {}
        try:
            body = client.get(self.spec.endpoints()["gateway"] + "/health").json()
        except (httpx.HTTPError, ValueError):
            return {n: "gateway not answering" for n in sorted(started)}
        engines = body.get("engines") if isinstance(body, dict) else None
        if not isinstance(engines, dict):  # one engine: its health is the gateway's
            return {}
        return {
            n: str(engines.get(n, "not listed"))
            for n in sorted(started)
            if engines.get(n) != "ready"
        }

    def _failure(self, name: str, what: str, *, exited: bool = False) -> str:
        log = self._log(name)
        logger = self._loggers.get(name)
        if exited and logger is not None:
            # Its last words reach the log file when its copier has read them all and ended.
            processes.wait_exit(logger, LOG_FLUSH_S)
        tail = "\n".join(_tail(log, LOG_TAIL_LINES)) or "(no output)"
        return f"{name} {what}; stopped the stack. Last lines of {log}:\n{tail}"

    def stop(self, services: Sequence[str]) -> list[str]:
        """Stop these services (the gateway and Prometheus before the engine they front and
        watch, so neither logs or alerts on a dead upstream); one line each."""
        lines: list[str] = []
        running: dict[str, processes.PidRecord] = {}
        for name in services:
            record = self._record(name)
            if record is not None and processes.is_alive(record):
                running[name] = record
            elif record is not None or self._pidfile(name).exists():
                lines.append(f"{name}: not running (stale pid file removed)")
                self._pidfile(name).unlink(missing_ok=True)
        watchers = {n: r for n, r in running.items() if not is_engine(n)}
        engine = {n: r for n, r in running.items() if is_engine(n)}
        for group in (watchers, engine):
            killed = processes.stop_all(list(group.values()), grace=STOP_GRACE_S)
            for name, record in group.items():
                how = "killed after grace" if record in killed else "stopped"
                lines.append(f"{name}: {how} (pid {record.pid})")
                self._pidfile(name).unlink(missing_ok=True)
        return lines

    def down(self, *, volumes: bool = False) -> list[str]:
        lines = self.stop(sorted(p.stem for p in self.run_dir.glob("*.pid")))
        if volumes:
            data = self.directory / "prometheus" / "data"
            if data.exists():
                shutil.rmtree(data)
                lines.append(f"prometheus: removed {data}")
        if not lines:
            lines.append("nothing was running")
        return lines

    # --- looking ---------------------------------------------------------------------------------

    def status(self, client: httpx.Client | None = None) -> list[ServiceStatus]:
        own = client is None
        client = client or http.client(timeout_s=2.0)
        try:
            return [self._status_of(s, client) for s in self.services(resolve=False)]
        finally:
            if own:
                client.close()

    def _status_of(self, service: LocalService, client: httpx.Client) -> ServiceStatus:
        url = self.spec.endpoints().get(service.name)
        if service.argv is None:
            return ServiceStatus(service.name, "skipped", detail=service.skip)
        record = self._record(service.name)
        if record is None:
            return ServiceStatus(service.name, "stopped", url=url)
        if not processes.is_alive(record):
            return ServiceStatus(service.name, "exited", detail=f"pid {record.pid} gone", url=url)
        health: Health
        try:
            ok = client.get(service.health_url).status_code == 200
            health = "healthy" if ok else "unhealthy"
        except httpx.HTTPError:
            health = "starting"
        return ServiceStatus(service.name, "running", health, f"pid {record.pid}", url)

    def _known(self, services: Sequence[str]) -> None:
        require_known(self.spec.name, services, service_names(self.spec))

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
        known = service_names(self.spec)
        names = [service] if service else [n for n in known if self._log(n).exists()]
        readers = {n: logfile.LogReader(self._log(n), self.spec.logs.keep) for n in names}
        prefix = len(names) > 1

        def shown(name: str, line: logfile.LogLine) -> str:
            text = f"{line.stamp} {line.text}" if options.timestamps and line.stamp else line.text
            return f"{name:<10} | {text}" if prefix else text

        try:
            # The history of every service, merged in time order (lines keep their order within a
            # service), then new lines as they come.
            history = [
                [(line.at or 0.0, name, line) for line in self._pick(reader, follow, options)]
                for name, reader in readers.items()
            ]
            for _, name, line in heapq.merge(*history, key=lambda item: item[0]):
                yield shown(name, line)
            while follow:
                time.sleep(0.25)
                for name, reader in readers.items():
                    for line in logfile.lines(reader.new()):
                        yield shown(name, line)
        finally:
            for reader in readers.values():
                reader.close()

    @staticmethod
    def _pick(
        reader: logfile.LogReader, follow: bool, options: LogOptions
    ) -> list[logfile.LogLine]:
        lines = logfile.lines(reader.history(final=not follow))
        if options.since is not None:
            since = options.since
            lines = [line for line in lines if line.at is not None and line.at >= since]
        return lines if options.tail is None else lines[max(0, len(lines) - options.tail) :]


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return logfile.plain(path.read_bytes()).splitlines()[-lines:]
    except OSError:
        return []
