"""The server sampler: the API key only to the target's origin, exact series, fast sampling in short
levels, numbers from counters and histogram sums, the gateway's limits."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from llmctl.bench.report import ServerReport, TargetLimits
from llmctl.bench.sampler import ServerSampler, origin, parse_series, sample_interval
from tests.support import VLLM_REFERENCE_METRICS, free_port


async def _metrics_server(seen: list[str | None]) -> tuple[web.AppRunner, str]:
    async def metrics(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="llmctl_gateway_queue_depth 2\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_the_api_key_goes_only_to_the_targets_origin() -> None:
    target_seen: list[str | None] = []
    other_seen: list[str | None] = []

    async def scenario() -> float | None:
        target_runner, target = await _metrics_server(target_seen)
        other_runner, other = await _metrics_server(other_seen)
        sampler = ServerSampler(
            [f"{target}/metrics", f"{other}/metrics"],
            60.0,
            {"Authorization": "Bearer secret"},
            trusted=f"{target}/",
        )
        sampler.open()
        try:
            await sampler.start()
            report = await sampler.stop()
        finally:
            await sampler.close()
            await target_runner.cleanup()
            await other_runner.cleanup()
        return report.peak_gateway_queue_depth

    assert asyncio.run(scenario()) == 2.0
    assert target_seen == ["Bearer secret", "Bearer secret"]
    assert other_seen == [None, None]


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin("http://127.0.0.1:8080/metrics") == origin("http://127.0.0.1:8080")
    assert origin("http://h/metrics") == origin("http://h:80/x")
    assert origin("http://h:8080") != origin("http://h:8000")
    assert origin("http://h:8080") != origin("https://h:8080")
    assert origin("http://127.0.0.1:8080") != origin("http://localhost:8080")


def test_only_the_exact_series_are_read_from_a_vllm_page() -> None:
    text = VLLM_REFERENCE_METRICS.read_text()
    values = parse_series(text)
    # vllm:num_requests_waiting_by_reason shares the prefix and must not be added in.
    full: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            full[sample.name] = full.get(sample.name, 0.0) + float(sample.value)
    for name in ("vllm:num_requests_waiting", "vllm:request_decode_time_seconds_sum"):
        assert values[name] == full[name]
    assert "vllm:num_requests_waiting_by_reason" not in values


@pytest.mark.parametrize(
    ("elapsed", "longest", "interval"),
    [
        (0.0, 1.0, 0.1),  # a level starts fast
        (1.0, 1.0, 0.1),
        (10.0, 1.0, 0.5),  # ~20 samples per level so far
        (60.0, 1.0, 1.0),  # never slower than asked
        (60.0, 5.0, 3.0),
        (0.0, 0.05, 0.05),  # nor slower than a faster setting
    ],
)
def test_sampling_is_fast_early_in_a_level(elapsed: float, longest: float, interval: float) -> None:
    assert sample_interval(elapsed, longest) == pytest.approx(interval)


class _Spiky:
    """A /metrics page: a gateway whose queue holds 7 requests for 0.4 s, 0.5 s after the first
    read, and an engine that spends 3 s of request time while the level runs."""

    def __init__(self) -> None:
        self.first: float | None = None

    async def metrics(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.first = self.first if self.first is not None else now
        since = now - self.first
        depth = 7 if 0.5 <= since < 0.9 else 0
        spent = 0.0 if since < 0.2 else 3.0
        return web.Response(
            text=f"llmctl_gateway_queue_depth {depth}\n"
            "llmctl_gateway_max_active 4\nllmctl_gateway_queue_max 64\n"
            "llmctl_gateway_queue_timeout_seconds 30\n"
            f'vllm:request_prefill_time_seconds_sum{{engine="0"}} {spent / 3}\n'
            f'vllm:request_decode_time_seconds_sum{{engine="0"}} {10 + spent * 2 / 3}\n'
            'vllm:request_queue_time_seconds_sum{engine="0"} 1.5\n'
        )


def test_a_short_level_catches_a_short_spike_and_counts_from_histograms() -> None:
    spiky = _Spiky()

    async def scenario() -> tuple[ServerReport, TargetLimits | None]:
        app = web.Application()
        app.router.add_get("/metrics", spiky.metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        # 1 s between samples at most, as the default: the old fixed 1 s poll read the page at
        # 0, 1 and 2 s and saw no queue at all.
        sampler = ServerSampler([f"{url}/metrics"], 1.0, {}, trusted=url)
        sampler.open()
        try:
            await sampler.start()
            await asyncio.sleep(2.0)
            report = await sampler.stop()
        finally:
            await sampler.close()
            await runner.cleanup()
        return report, sampler.limits

    report, limits = asyncio.run(scenario())
    assert report.peak_gateway_queue_depth == 7
    assert report.samples >= 10
    # The spike was caught (above); gaps stay within the configured 1 s even on a busy machine.
    assert report.max_sample_gap_s is not None
    assert report.max_sample_gap_s <= 1.0 + 0.25
    assert report.span_s is not None
    assert 2.0 <= report.span_s < 2.5
    # 3 s of prefill + decode over the span: 1.5 requests running on average; no queue time added
    assert report.mean_num_requests_running == pytest.approx(3.0 / report.span_s)
    assert report.mean_num_requests_waiting == 0.0
    assert limits == TargetLimits(max_active=4, queue_max=64, queue_timeout_s=30.0)
    # Every sample over time, the spike included; the page carries no engine gauge.
    series = report.series
    assert series is not None
    assert len(series.t_s) == report.samples  # far below the 300 points kept at most
    assert series.t_s[0] == 0.0
    assert series.t_s == sorted(series.t_s)
    assert series.t_s[-1] == pytest.approx(report.span_s, abs=0.001)
    assert series.gateway_queue_depth is not None
    assert max(v or 0 for v in series.gateway_queue_depth) == 7
    assert series.gateway_queue_depth[0] == 0
    assert series.num_requests_running is None
    assert series.kv_cache_usage_perc is None
