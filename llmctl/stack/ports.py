"""Which of a stack's host ports are taken: every conflict at once, with the key and flag that
move it, for `up` (before anything starts) and `doctor`."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from llmctl.stack.spec import StackSpec

# The ports with a flag of their own (`--gateway-port`, ...); the rest are set with --set.
FLAGGED = ("gateway", "engine", "prometheus", "grafana")


@dataclass(frozen=True)
class PortConflict:
    """A port the stack needs that something else holds."""

    key: str  # the `ports.*` key
    host: str
    port: int
    reason: str

    def __str__(self) -> str:
        flag = f"--{self.key}-port" if self.key in FLAGGED else f"--set ports.{self.key}=PORT"
        return (
            f"port {self.port} on {self.host} ({self.key}) is in use ({self.reason}); pick "
            f"another with ports.{self.key} in llmctl.toml or {flag}"
        )


def wanted(spec: StackSpec) -> list[tuple[str, str, int]]:
    """(key, host, port) for every port the stack listens on: the engine on loopback (local
    runtime), the rest on the bind address."""
    found = []
    for key in spec.published_ports():
        host = "127.0.0.1" if key == "engine" else spec.ports.bind_address
        found.append((key, host, getattr(spec.ports, key)))
    return found


def conflicts(needed: Iterable[tuple[str, str, int]]) -> list[PortConflict]:
    """The ports of `needed` that cannot be bound now (listening, or bound by another process)."""
    busy = []
    for key, host, port in needed:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                busy.append(PortConflict(key, host, port, exc.strerror or str(exc)))
    return busy
