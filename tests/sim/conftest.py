"""Fixtures that run real simulator processes on 127.0.0.1 (port 0, at the URL each one prints)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.support import Served, sim_server

Sim = Served  # a running simulator: its base URL and process
StartSim = Callable[..., AbstractContextManager[Sim]]


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """One shared tiny-profile simulator for tests that need no special flags."""
    with sim_server(tmp_path_factory.mktemp("sim") / "sim.log", "--profile", "tiny") as s:
        yield s


@pytest.fixture
def start_sim(tmp_path: Path) -> StartSim:
    """Start a simulator with extra flags: `with start_sim("--error-rate", "1") as s: ...`."""
    counter = iter(range(1000))

    def start(*flags: str, ready_status: tuple[int, ...] = (200,)) -> AbstractContextManager[Sim]:
        return sim_server(tmp_path / f"sim-{next(counter)}.log", *flags, ready_status=ready_status)

    return start
