"""Fixtures: a fake engine and gateways served from a background loop over real loopback sockets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from llmctl.core.config import load_gateway_config
from llmctl.gateway.app import GATEWAY_KEY, Gateway
from llmctl.gateway.server import start_gateway
from tests.exposition import Exposition
from tests.gateway.upstream import FakeEngine, LoopThread
from tests.support import eventually


@dataclass
class GatewayHandle:
    runner: web.AppRunner
    url: str

    @property
    def gateway(self) -> Gateway:
        return self.runner.app[GATEWAY_KEY]

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` (exact sample name) matching `labels`."""
        return Exposition.scrape(f"{self.url}/metrics").total(name, **labels)

    def wait_idle(self, timeout: float = 2.0) -> float:
        """Seconds until the active and queue gauges both read 0 (raises if they do not)."""
        start = time.monotonic()

        def idle() -> bool:
            page = Exposition.scrape(f"{self.url}/metrics")
            active = page.total("llmctl_gateway_active_requests")
            queued = page.total("llmctl_gateway_queue_depth")
            assert (active, queued) == (0, 0), f"active={active} queued={queued}"
            return True

        eventually(idle, timeout=timeout, what="gateway idle")
        return time.monotonic() - start


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def engine(loop: LoopThread) -> Iterator[FakeEngine]:
    fake = FakeEngine()
    loop.run(fake.start())
    yield fake
    loop.run(fake.stop())


MakeGateway = Callable[..., GatewayHandle]


@pytest.fixture
def make_gateway(loop: LoopThread, engine: FakeEngine) -> Iterator[MakeGateway]:
    """Start a gateway in front of the fake engine; keyword arguments are GatewayConfig fields."""
    handles: list[GatewayHandle] = []

    def make(**overrides: Any) -> GatewayHandle:
        values: dict[str, Any] = {
            "upstream_url": engine.url,
            "model_name": "fake-model",
            "port": 0,
            "health_interval_s": 0.1,
        }
        if "upstreams" in overrides or "upstream_dns" in overrides:
            del values["upstream_url"]
        values.update(overrides)
        config = load_gateway_config({}, values)
        runner = loop.run(start_gateway(config, shutdown_grace_s=0.5))
        port = runner.addresses[0][1]
        handle = GatewayHandle(runner, f"http://127.0.0.1:{port}")
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        loop.run(handle.runner.cleanup())


@pytest.fixture
def engines(loop: LoopThread) -> Iterator[list[FakeEngine]]:
    """Three fake engines, for a gateway in front of several."""
    fakes = [FakeEngine() for _ in range(3)]
    for fake in fakes:
        loop.run(fake.start())
    yield fakes
    for fake in fakes:
        loop.run(fake.stop())


def pool_gateway(make_gateway: MakeGateway, engines: list[FakeEngine], **kw: Any) -> GatewayHandle:
    """A gateway in front of `engines`, once every one is in rotation."""
    gw = make_gateway(upstreams=[e.url for e in engines], **kw)
    names = [e.url.removeprefix("http://") for e in engines]
    eventually(lambda: all(gw.metric("llmctl_gateway_engine_up", engine=n) == 1 for n in names))
    return gw
