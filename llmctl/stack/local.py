"""The local runtime: engine, gateway and Prometheus as background processes of this machine.

State lives in `.llmctl/<stack>/run/<service>.pid|.log`. Everything listens on loopback except the
gateway and Prometheus, which bind `ports.bind_address`.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from llmctl.core import http
from llmctl.core.errors import RuntimeBackendError, UsageError
from llmctl.stack import commands, environment, logfile, processes
from llmctl.stack.credentials import admin_key
from llmctl.stack.runtime import Health, Progress, ServiceStatus, UpResult
from llmctl.stack.spec import StackSpec, connect_host, host_port

SERVICES = ("engine", "gateway", "prometheus")
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20
LOG_FLUSH_S = 2.0


@dataclass(frozen=True)
class LocalService:
    """A service as the local runtime runs it (argv None: skipped, with the reason in `skip`)."""

    name: str
    argv: list[str] | None
    env: dict[str, str]
    health_url: str
    host: str
    port: int
    skip: str = ""


class LocalRuntime:
    """Runs a stack as local processes; see llmctl.stack.runtime for the contract."""

    def __init__(self, spec: StackSpec, directory: Path, environ: Mapping[str, str] | None = None):
        self.spec = spec
        self.directory = directory
        self.run_dir = directory / "run"
        self.environ = dict(os.environ if environ is None else environ)
        self._loggers: dict[str, int] = {}  # service -> pid of its log copier (started here)

    # --- what runs -------------------------------------------------------------------------------

    def services(self, *, resolve: bool = True) -> list[LocalService]:
        """What this stack runs. `resolve=False` skips finding vLLM and its model (which may build
        one), for callers that only look at health: `status` must stay cheap and side-effect free."""
        spec, ports = self.spec, self.spec.ports
        host = connect_host(ports.bind_address)
        # Each service inherits only an allowlist of this environment (see stack.environment).
        base = {**environment.common(self.environ, spec), "PYTHONUNBUFFERED": "1"}

        tokenizer = None
        if spec.engine.kind == "sim":
            engine_argv = commands.llmctl_argv() + commands.sim_args(
                spec.engine, host="127.0.0.1", port=ports.engine
            )
            engine_env = {**base, **spec.engine.env}
        elif not resolve:
            engine_argv, engine_env = ["vllm"], {}
        else:
            cmd = commands.local_vllm_command(
                spec.engine, host="127.0.0.1", port=ports.engine, environ=self.environ
            )
            engine_argv = cmd.argv
            engine_env = {**environment.for_vllm(self.environ, spec), **base, **cmd.env}
            tokenizer = commands.gateway_tokenizer(cmd.model, self.environ)
        engine = LocalService(
            "engine",
            engine_argv,
            engine_env,
            f"http://127.0.0.1:{ports.engine}/health",
            "127.0.0.1",
            ports.engine,
        )
        gateway = LocalService(
            "gateway",
            commands.llmctl_argv() + self._gateway_args(tokenizer),
            {**base, **self._gateway_secrets()},
            f"http://{host_port(host, ports.gateway)}/health",
            ports.bind_address,
            ports.gateway,
        )
        return [engine, gateway, self._prometheus(base, host)]

    def _gateway_args(self, tokenizer: str | None = None) -> list[str]:
        spec = self.spec
        gw = spec.gateway
        args = commands.gateway_args(
            gw,
            host=spec.ports.bind_address,
            port=spec.ports.gateway,
            upstream=f"http://127.0.0.1:{spec.ports.engine}",
            model=spec.engine.name,
            tokenizer=tokenizer,
        )
        if gw.api_keys_file:
            args += ["--api-keys-file", str(Path(gw.api_keys_file).expanduser().resolve())]
        if gw.tenants_file:
            args += ["--tenants-file", str(Path(gw.tenants_file).expanduser().resolve())]
        if gw.admin_key_file:
            args += ["--admin-key-file", str(Path(gw.admin_key_file).expanduser().resolve())]
        return args

    def _gateway_secrets(self) -> dict[str, str]:
        """Keys by reference: read from the named variable (or the generated .env) at start."""
        gw = self.spec.gateway
        env: dict[str, str] = {}
        if gw.api_keys_env and self.environ.get(gw.api_keys_env):
            env["LLMCTL_API_KEYS"] = self.environ[gw.api_keys_env]
        # A key file goes to the gateway as --admin-key-file instead (see _gateway_args).
        key = None if gw.admin_key_file else admin_key(self.spec, self.directory, self.environ)
        if key:
            env["LLMCTL_ADMIN_KEY"] = key
        return env

    def _prometheus(self, base: dict[str, str], host: str) -> LocalService:
        ports, obs = self.spec.ports, self.spec.observability
        url = f"http://{host_port(host, ports.prometheus)}/-/ready"
        binary = shutil.which("prometheus") if obs.prometheus else None
        if not obs.prometheus:
            return LocalService("prometheus", None, {}, url, host, ports.prometheus, "disabled")
        if binary is None:
            skip = "no `prometheus` on PATH (apt install prometheus)"
            return LocalService("prometheus", None, {}, url, host, ports.prometheus, skip)
        prom_dir = self.directory / "prometheus"
        argv = [
            binary,
            f"--config.file={prom_dir / 'prometheus.yml'}",
            f"--web.listen-address={host_port(ports.bind_address, ports.prometheus)}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--storage.tsdb.retention.time={obs.retention}",
            "--web.enable-lifecycle",
        ]
        return LocalService("prometheus", argv, base, url, host, ports.prometheus)

    # --- Runtime ---------------------------------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _record(self, name: str) -> processes.PidRecord | None:
        return processes.read_pidfile(self._pidfile(name))

    def _running(self, name: str) -> processes.PidRecord | None:
        record = self._record(name)
        return record if record is not None and processes.is_alive(record) else None

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

        runnable = [s for s in self.services() if s.argv is not None]
        to_start = [s for s in runnable if not self._running(s.name)]
        for service in to_start:
            self._pidfile(service.name).unlink(missing_ok=True)  # stale: its process is gone
            _check_port_free(service)
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
        return UpResult(False, statuses, notes)

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
                if all(s.ready for s in statuses):
                    return statuses
                if time.monotonic() > deadline:
                    waiting = next(s.name for s in statuses if not s.ready)
                    raise RuntimeBackendError(
                        self._failure(waiting, f"not healthy after {timeout:.0f}s")
                    )
                time.sleep(0.25)

    def _failure(self, name: str, what: str, *, exited: bool = False) -> str:
        log = self._log(name)
        logger = self._loggers.get(name)
        if exited and logger is not None:
            # Its last words reach the log file when its copier has read them all and ended.
            processes.wait_exit(logger, LOG_FLUSH_S)
        tail = "\n".join(_tail(log, LOG_TAIL_LINES)) or "(no output)"
        return f"{name} {what}; stopped the stack. Last lines of {log}:\n{tail}"

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

    def down(self, *, volumes: bool = False) -> list[str]:
        lines: list[str] = []
        running: dict[str, processes.PidRecord] = {}
        for name in sorted(p.stem for p in self.run_dir.glob("*.pid")):
            record = self._record(name)
            if record is not None and processes.is_alive(record):
                running[name] = record
            else:
                lines.append(f"{name}: not running (stale pid file removed)")
                self._pidfile(name).unlink(missing_ok=True)
        # The gateway and Prometheus stop before the engine they front and watch, so neither
        # logs (or alerts on) a dead upstream during shutdown.
        watchers = {n: r for n, r in running.items() if n != "engine"}
        engine = {n: r for n, r in running.items() if n == "engine"}
        for group in (watchers, engine):
            killed = processes.stop_all(list(group.values()), grace=STOP_GRACE_S)
            for name, record in group.items():
                how = "killed after grace" if record in killed else "stopped"
                lines.append(f"{name}: {how} (pid {record.pid})")
                self._pidfile(name).unlink(missing_ok=True)
        if volumes:
            data = self.directory / "prometheus" / "data"
            if data.exists():
                shutil.rmtree(data)
                lines.append(f"prometheus: removed {data}")
        if not lines:
            lines.append("nothing was running")
        return lines

    def logs(self, service: str | None = None, *, follow: bool = False) -> Iterator[str]:
        if service is not None and service not in SERVICES:
            raise UsageError(
                f"no service {service!r} in stack {self.spec.name}: {', '.join(SERVICES)}"
            )
        names = [service] if service else [n for n in SERVICES if self._log(n).exists()]
        keep = self.spec.logs.keep
        readers = {n: logfile.LogReader(self._log(n), keep) for n in names}
        prefix = len(names) > 1

        def lines(name: str, data: bytes) -> Iterator[str]:
            for line in data.decode(errors="replace").splitlines():
                yield f"{name:<10} | {line}" if prefix else line

        try:
            for name, reader in readers.items():
                yield from lines(name, reader.history(final=not follow))
            while follow:
                time.sleep(0.25)
                for name, reader in readers.items():
                    yield from lines(name, reader.new())
        finally:
            for reader in readers.values():
                reader.close()


def _check_port_free(service: LocalService) -> None:
    family = socket.AF_INET6 if ":" in service.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((service.host, service.port))
        except OSError as exc:
            key = "engine" if service.name == "engine" else service.name
            raise RuntimeBackendError(
                f"{service.name}: port {service.port} on {service.host} is in use ({exc.strerror}); "
                f"pick another with ports.{key} in llmctl.toml or --{key}-port"
            ) from exc


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
