"""Simulated DCGM exporter telemetry, derived from the engine's busy fraction and KV usage."""

from __future__ import annotations

import math
import socket
import uuid
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmctl.core import metrics as m
from llmctl.sim.profiles import EngineProfile


class BusyMeter:
    """Exponentially weighted busy fraction (time constant `tau` seconds)."""

    def __init__(self, tau: float, now: float) -> None:
        self.tau = tau
        self._busy = 0.0
        self._window = 0.0
        self._last = now

    def _decay(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        factor = math.exp(-elapsed / self.tau)
        self._busy *= factor
        self._window = self._window * factor + elapsed
        self._last = now

    def add(self, busy_s: float, now: float) -> None:
        """Record `busy_s` seconds of work that ended at `now`."""
        self._decay(now)
        self._busy += busy_s

    def fraction(self, now: float) -> float:
        self._decay(now)
        if self._window <= 0:
            return 0.0
        return min(1.0, self._busy / self._window)


class GpuTelemetry(Collector):
    """DCGM_FI_DEV_* gauges for one GPU (`gpu="0"` unless told its index), computed at scrape
    time."""

    def __init__(
        self,
        profile: EngineProfile,
        kv_usage: Callable[[], float],
        clock: Callable[[], float],
        *,
        index: int = 0,
    ) -> None:
        self.profile = profile
        self._kv_usage = kv_usage
        self._clock = clock
        now = clock()
        self.util = BusyMeter(1.0, now)
        self.heat = BusyMeter(30.0, now)  # temperature follows load slowly
        device = profile.name if index == 0 else f"{profile.name}/{index}"
        self._labels = [
            str(index),
            f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, device)}",
            profile.gpu_model,
            socket.gethostname(),
        ]
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def add_busy(self, busy_s: float, now: float) -> None:
        self.util.add(busy_s, now)
        self.heat.add(busy_s, now)

    def _gauge(self, spec: m.MetricSpec, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        family.add_metric(self._labels, value)
        return family

    def collect(self) -> Iterator[GaugeMetricFamily]:
        p = self.profile
        now = self._clock()
        util = self.util.fraction(now)
        heat = self.heat.fraction(now)
        used = p.fb_base_mib + p.kv_pool_mib * self._kv_usage()
        yield self._gauge(m.DCGM_GPU_UTIL, round(util * 100))
        yield self._gauge(m.DCGM_FB_USED, round(used))
        yield self._gauge(m.DCGM_FB_FREE, round(max(0.0, p.fb_total_mib - used)))
        yield self._gauge(m.DCGM_POWER, p.idle_power_w + (p.max_power_w - p.idle_power_w) * util)
        yield self._gauge(m.DCGM_TEMP, round(p.idle_temp_c + (p.max_temp_c - p.idle_temp_c) * heat))

    def render(self) -> bytes:
        return generate_latest(self.registry)
