"""Fixtures that run real simulator processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ServerProcess, free_port, llmctl_server


@dataclass
class Sim:
    """A running simulator: its base URL and process."""

    url: str
    server: ServerProcess


StartSim = Callable[..., AbstractContextManager[Sim]]


@contextmanager
def run_sim(log: Path, *flags: str, ready_status: tuple[int, ...] = (200,)) -> Iterator[Sim]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["sim", "serve", "--host", "127.0.0.1", "--port", str(port), *flags]
    with llmctl_server(
        args, ready_url=f"{url}/health", log=log, ready_status=ready_status
    ) as server:
        yield Sim(url, server)


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """One shared tiny-profile simulator for tests that need no special flags."""
    with run_sim(tmp_path_factory.mktemp("sim") / "sim.log", "--profile", "tiny") as s:
        yield s


@pytest.fixture
def start_sim(tmp_path: Path) -> StartSim:
    """Start a simulator with extra flags: `with start_sim("--error-rate", "1") as s: ...`."""
    counter = iter(range(1000))

    def start(*flags: str, ready_status: tuple[int, ...] = (200,)) -> AbstractContextManager[Sim]:
        return run_sim(tmp_path / f"sim-{next(counter)}.log", *flags, ready_status=ready_status)

    return start
