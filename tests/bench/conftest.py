"""Fixtures: the fake engine from benchmarks/ (exact delays) and the simulator."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests import support
from tests.support import REPO, ServerProcess, free_port

FAKE_ENGINE = REPO / "benchmarks" / "fake_engine.py"

StartServer = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def fake_engine(tmp_path: Path) -> StartServer:
    """Start the fake engine with extra flags; yields its base URL."""

    @contextmanager
    def start(*flags: str) -> Iterator[str]:
        # A free port: the fake engine prints the port it was given, not the one it bound.
        port = free_port()
        server = ServerProcess(
            [sys.executable, str(FAKE_ENGINE), "--port", str(port), *flags],
            tmp_path / f"fake-{port}.log",
        )
        try:
            server.wait_ready(f"http://127.0.0.1:{port}/health", timeout=20)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()

    return start


@pytest.fixture
def sim_server(tmp_path: Path) -> StartServer:
    """Start `llmctl sim serve` with extra flags; yields its base URL."""

    counter = iter(range(1000))

    @contextmanager
    def start(*flags: str) -> Iterator[str]:
        with support.sim_server(tmp_path / f"sim-{next(counter)}.log", *flags) as sim:
            yield sim.url

    return start
