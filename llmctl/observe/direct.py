"""Fallback when Prometheus is unreachable: scrape the gateway's and engine's /metrics directly.

Rates and percentiles are computed here the way PromQL would over `top`'s window: counter and
histogram-bucket deltas between now and the newest kept scrape at least `window_s` old (the oldest
one while fewer seconds have been seen; the snapshot's `window_s` says which span it was).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmctl.core import http
from llmctl.core import metrics as m
from llmctl.observe.queries import CACHE_FORWARDED, CACHE_SERVED, MIN_WINDOW_S
from llmctl.observe.snapshot import (
    HISTORY_POINTS,
    ClassSnapshot,
    EngineSnapshot,
    GpuSnapshot,
    History,
    StackSnapshot,
    finite,
)

Labels = dict[str, str]
Match = Callable[[Labels], bool]


@dataclass
class Scrape:
    """Every sample from one round of scrapes, by sample name (counters with `_total`)."""

    at: float
    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    reached: set[str] = field(default_factory=set)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples.setdefault(s.name, []).append((s.labels, s.value))

    def total(self, name: str, match: Match | None = None) -> float | None:
        """Sum over the series of `name` that `match`; None when there are none."""
        values = [v for lab, v in self.samples.get(name, []) if match is None or match(lab)]
        return math.fsum(values) if values else None

    def buckets(self, name: str) -> dict[float, float]:
        """`le` -> cumulative count of histogram `name`, summed over its label sets."""
        out: dict[float, float] = {}
        for lab, v in self.samples.get(f"{name}_bucket", []):
            le = float(lab["le"])
            out[le] = out.get(le, 0.0) + v
        return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """PromQL's histogram_quantile over cumulative `buckets` (le -> count); None when empty."""
    if not buckets or math.inf not in buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                return prev_bound  # as Prometheus: the highest finite bound
            if bound <= 0:
                return bound
            width = count - prev_count
            frac = (rank - prev_count) / width if width > 0 else 1.0
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, count
    return None


def _status(value: str) -> Match:
    return lambda lab: lab.get("status") == value


def _result(pattern: str) -> Match:
    results = set(pattern.split("|"))
    return lambda lab: lab.get("result") in results


def _is_error(lab: Labels) -> bool:
    return lab.get("reason") != m.REASON_OK and lab.get("status") not in ("429", "503")


class DirectSource:
    """Scrapes the endpoints itself; keeps a window of earlier scrapes to compute rates."""

    def __init__(
        self,
        gateway_url: str,
        engine_url: str | None,
        gpu_url: str | None = None,
        *,
        timeout: float = 2.0,
        window_s: float = MIN_WINDOW_S,
        warmup_s: float = 1.0,
    ) -> None:
        """`engine_url` None: the stack publishes no engine, and its fields stay missing.
        `warmup_s`: how long the first snapshot waits between its two scrapes (a one-shot
        snapshot waits the whole window, a live view starts sooner and widens)."""
        self.targets = {m.JOB_GATEWAY: gateway_url.rstrip("/") + "/metrics"}
        if engine_url is not None:
            self.targets[m.JOB_ENGINE] = engine_url.rstrip("/") + "/metrics"
            # The simulator serves DCGM-style metrics next to its own; dcgm-exporter is elsewhere.
            gpu_url = gpu_url or engine_url.rstrip("/") + "/dcgm/metrics"
        if gpu_url is not None:
            self.targets[m.JOB_GPU] = gpu_url
        self.window_s = window_s
        self.warmup_s = warmup_s
        self._client = http.client(timeout_s=timeout)
        self._scrapes: deque[Scrape] = deque()
        self._history: dict[str, deque[float]] = {
            name: deque(maxlen=HISTORY_POINTS) for name in History.model_fields
        }
        self._history_times: deque[float] = deque(maxlen=HISTORY_POINTS)

    @property
    def url(self) -> str:
        return ", ".join(
            self.targets[j] for j in (m.JOB_GATEWAY, m.JOB_ENGINE) if j in self.targets
        )

    def close(self) -> None:
        self._client.close()

    def scrape(self) -> Scrape:
        scrape = Scrape(at=time.monotonic())
        for job, url in self.targets.items():
            try:
                resp = self._client.get(url)
                resp.raise_for_status()
                scrape.add(resp.text)
            except (httpx.HTTPError, ValueError):
                continue  # that endpoint's fields stay missing
            scrape.reached.add(job)
        return scrape

    def snapshot(self, reason: str = "Prometheus unreachable") -> StackSnapshot:
        """One snapshot; `reason` says in the header why Prometheus is not the source."""
        if not self._scrapes:
            # Rates need two scrapes; take the first one a moment before the real one.
            self._scrapes.append(self.scrape())
            time.sleep(self.warmup_s)
        now = self.scrape()
        # The base is the newest earlier scrape that is at least a window old (else the oldest).
        while len(self._scrapes) > 1 and now.at - self._scrapes[1].at >= self.window_s:
            self._scrapes.popleft()
        base = self._scrapes[0]
        snap = _compute(now, base, self.url, self._note(now, reason))
        self._scrapes.append(now)
        self._record(snap, now.at)
        return snap

    def _note(self, now: Scrape, reason: str) -> str:
        note = f"{reason}; reading /metrics directly"
        jobs = [j for j in (m.JOB_GATEWAY, m.JOB_ENGINE) if j in self.targets]
        unreached = [j for j in jobs if j not in now.reached]
        if unreached:
            note += f" ({', '.join(unreached)} unreachable)"
        if m.JOB_ENGINE not in self.targets:
            note += " (no engine address: pass --engine)"
        return note

    def _record(self, snap: StackSnapshot, at: float) -> None:
        gpu = [g.util_pct for g in snap.gpus if g.util_pct is not None]
        points = {
            "request_rate": snap.request_per_s,
            "e2e_p95_s": snap.e2e_p95_s,
            "queue_depth": snap.queue_depth,
            "gpu_util_pct": sum(gpu) / len(gpu) if gpu else None,
        }
        for name, value in points.items():
            if value is not None:
                self._history[name].append(value)
        self._history_times.append(at)
        snap.history = History(**{k: list(v) for k, v in self._history.items()})
        snap.history_span_s = self._history_times[-1] - self._history_times[0]


def _compute(now: Scrape, base: Scrape, url: str, note: str) -> StackSnapshot:
    dt = max(now.at - base.at, 1e-9)

    def rate(name: str, match: Match | None = None, *, job: str = m.JOB_GATEWAY) -> float | None:
        if job not in now.reached:
            return None
        cur = now.total(name, match)
        if cur is None:
            return 0.0  # reached but never counted: zero, as the Prometheus queries say
        old = base.total(name, match) or 0.0
        return max(cur - old if cur >= old else cur, 0.0) / dt  # a drop means a restart

    def quantile(spec: m.MetricSpec, q: float) -> float | None:
        cur, old = now.buckets(spec.name), base.buckets(spec.name)
        delta = {le: c - old.get(le, 0.0) for le, c in cur.items()}
        if any(v < 0 for v in delta.values()):
            delta = cur
        return finite(histogram_quantile(q, delta))

    requests = m.GATEWAY_REQUESTS.series
    decision = next(
        (lab for lab, v in now.samples.get(m.GATEWAY_LIMIT_DECISION.series, []) if v == 1.0), {}
    )
    return StackSnapshot(
        source="direct",
        source_url=url,
        reached=sorted(now.reached),
        note=note,
        taken_at=time.time(),
        window_s=dt,
        slots_active=now.total(m.GATEWAY_ACTIVE.series),
        slots_max=now.total(m.GATEWAY_MAX_ACTIVE.series),
        queue_depth=now.total(m.GATEWAY_QUEUE_DEPTH.series),
        queue_max=now.total(m.GATEWAY_QUEUE_MAX.series),
        queue_wait_p95_s=quantile(m.GATEWAY_QUEUE_WAIT, 0.95),
        ok_per_s=rate(requests, lambda lab: lab.get("reason") == m.REASON_OK),
        rejected_429_per_s=rate(requests, _status("429")),
        unavailable_503_per_s=rate(requests, _status("503")),
        error_per_s=rate(requests, _is_error),
        ttft_p50_s=quantile(m.GATEWAY_TTFT, 0.5),
        ttft_p95_s=quantile(m.GATEWAY_TTFT, 0.95),
        e2e_p50_s=quantile(m.GATEWAY_E2E, 0.5),
        e2e_p95_s=quantile(m.GATEWAY_E2E, 0.95),
        e2e_p99_s=quantile(m.GATEWAY_E2E, 0.99),
        admitted_ttft_p95_s=quantile(m.GATEWAY_ADMITTED_TTFT, 0.95),
        tpot_p95_s=quantile(m.GATEWAY_TPOT, 0.95),
        engine_running=now.total(m.VLLM_RUNNING.series),
        engine_waiting=now.total(m.VLLM_WAITING.series),
        kv_cache_usage=_max(now, m.VLLM_KV_USAGE.series),
        preemptions_per_s=rate(m.VLLM_PREEMPTIONS.series, job=m.JOB_ENGINE),
        prompt_tokens_per_s=rate(m.VLLM_PROMPT_TOKENS.series, job=m.JOB_ENGINE),
        generation_tokens_per_s=rate(m.VLLM_GENERATION_TOKENS.series, job=m.JOB_ENGINE),
        cache_hit_per_s=rate(m.GATEWAY_CACHE_LOOKUPS.series, _result(CACHE_SERVED)),
        cache_miss_per_s=rate(m.GATEWAY_CACHE_LOOKUPS.series, _result(CACHE_FORWARDED)),
        cache_bytes=now.total(m.GATEWAY_CACHE_BYTES.series),
        cache_max_bytes=now.total(m.GATEWAY_CACHE_MAX_BYTES.series),
        limit_adaptive=now.total(m.GATEWAY_LIMIT_ADAPTIVE.series),
        limit_direction=decision.get("direction"),
        limit_reason=decision.get("reason"),
        adaptive_ttft_p95_s=finite(now.total(m.GATEWAY_ADAPTIVE_TTFT.series)),
        adaptive_itl_p95_s=finite(now.total(m.GATEWAY_ADAPTIVE_ITL.series)),
        adaptive_slo_ttft_s=finite(now.total(m.GATEWAY_ADAPTIVE_SLO.series, _signal("ttft"))),
        adaptive_slo_itl_s=finite(now.total(m.GATEWAY_ADAPTIVE_SLO.series, _signal("itl"))),
        gpus=_gpus(now),
        engines=_engines(now),
        classes=_classes(now),
    )


def _signal(name: str) -> Match:
    return lambda lab: lab.get("signal") == name


def _max(scrape: Scrape, name: str) -> float | None:
    values = [v for _, v in scrape.samples.get(name, [])]
    return max(values) if values else None


def _gpus(scrape: Scrape) -> list[GpuSnapshot]:
    fields = {
        m.DCGM_GPU_UTIL.series: "util_pct",
        m.DCGM_FB_USED.series: "mem_used_mib",
        m.DCGM_TEMP.series: "temp_c",
        m.DCGM_POWER.series: "power_w",
    }
    gpus: dict[str, dict[str, object]] = {}
    for name, attr in fields.items():
        for lab, value in scrape.samples.get(name, []):
            gpu = lab.get("gpu", "?")
            entry = gpus.setdefault(gpu, {"gpu": gpu, "name": lab.get("modelName")})
            entry[attr] = value
    for lab, free in scrape.samples.get(m.DCGM_FB_FREE.series, []):
        found = gpus.get(lab.get("gpu", "?"))
        used = found.get("mem_used_mib") if found else None
        if found is not None and isinstance(used, float):
            found["mem_total_mib"] = used + free
    return [GpuSnapshot.model_validate(gpus[g]) for g in sorted(gpus)]


def _by_label(scrape: Scrape, fields: dict[str, str], label: str) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for attr, name in fields.items():
        for lab, value in scrape.samples.get(name, []):
            key = lab.get(label, "?")
            row = found.setdefault(key, {})
            row[attr] = row.get(attr, 0.0) + value
    return found


def _engines(scrape: Scrape) -> list[EngineSnapshot]:
    fields = {
        "active": m.GATEWAY_ENGINE_ACTIVE.series,
        "limit": m.GATEWAY_ENGINE_LIMIT.series,
        "up": m.GATEWAY_ENGINE_UP.series,
    }
    rows = _by_label(scrape, fields, "engine")
    return [
        EngineSnapshot(
            engine=name,
            active=v.get("active"),
            limit=v.get("limit"),
            up=None if "up" not in v else v["up"] == 1.0,
        )
        for name, v in sorted(rows.items())
    ]


def _classes(scrape: Scrape) -> list[ClassSnapshot]:
    fields = {"queued": m.GATEWAY_CLASS_QUEUE.series, "active": m.GATEWAY_CLASS_ACTIVE.series}
    rows = _by_label(scrape, fields, "class")
    return [ClassSnapshot(name=name, **v) for name, v in sorted(rows.items())]
