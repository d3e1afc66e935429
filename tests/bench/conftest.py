"""Fixtures: the fake engine from benchmarks/ (exact delays) and the simulator, on free ports."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.support import REPO, ServerProcess, free_port, llmctl_server, wait_http

FAKE_ENGINE = REPO / "benchmarks" / "fake_engine.py"

StartServer = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def fake_engine(tmp_path: Path) -> StartServer:
    """Start the fake engine with extra flags; yields its base URL."""

    @contextmanager
    def start(*flags: str) -> Iterator[str]:
        port = free_port()
        server = ServerProcess(
            [sys.executable, str(FAKE_ENGINE), "--port", str(port), *flags],
            tmp_path / f"fake-{port}.log",
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=20)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()

    return start


@pytest.fixture
def sim_server(tmp_path: Path) -> StartServer:
    """Start `llmctl sim serve` with extra flags; yields its base URL."""

    @contextmanager
    def start(*flags: str) -> Iterator[str]:
        port = free_port()
        with llmctl_server(
            ["sim", "serve", "--port", str(port), *flags],
            ready_url=f"http://127.0.0.1:{port}/health",
            log=tmp_path / f"sim-{port}.log",
        ):
            yield f"http://127.0.0.1:{port}"

    return start
