"""Against the real simulator and gateway: latencies match the time model; 429/503 get their classes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.report import SERIES_NAMES, BenchReport
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from llmctl.sim.profiles import RTX3090_QWEN25_14B_AWQ as PROFILE
from tests.bench.conftest import StartServer
from tests.support import free_port, llmctl_server


def test_sim_ttft_and_itl_match_the_time_model(sim_server: StartServer) -> None:
    """At concurrency 1 every engine step holds one sequence: ITL = fixed + 1 seq; TTFT = one
    prefill step of the whole prompt. Tolerance: -5 % .. +25 % (+3 ms) for HTTP and a noisy host."""
    with sim_server("--profile", PROFILE.name) as url:
        config = BenchConfig(
            target=url,
            levels=[ConcurrentStrategy(concurrency=1)],
            requests=6,
            prompts=PromptSpec(input_len=64, output_len=12),
        )
        report = run_bench(config)
    level = report.levels[0]
    assert level.completed == 6
    assert level.token_source == "usage"
    prompt = level.total_input_tokens / level.completed
    expected_itl = PROFILE.step_seconds(0, 1) * 1000
    expected_ttft = PROFILE.step_seconds(round(prompt), 1) * 1000
    assert level.median_itl_ms is not None
    assert level.median_ttft_ms is not None
    assert expected_itl * 0.95 <= level.median_itl_ms <= expected_itl * 1.25 + 3
    assert expected_ttft * 0.95 <= level.median_ttft_ms <= expected_ttft * 1.25 + 3
    server = level.server
    assert server is not None
    assert server.peak_kv_cache_usage_perc is not None
    assert server.preemptions == 0


@dataclass(frozen=True)
class Stack:
    gateway: str
    engine: str


@pytest.fixture
def tiny_gateway(sim_server: StartServer, tmp_path: Path) -> Iterator[Stack]:
    """A gateway with one slot and a one-request queue that waits 0.2 s, over a slow-ish sim."""
    with sim_server("--profile", PROFILE.name) as engine:
        port = free_port()
        keys = tmp_path / "keys"
        keys.write_text("bench-key\n")
        args = ["gateway", "serve", "--upstream", engine, "--port", str(port),
                "--max-active", "1", "--queue-max", "1", "--queue-timeout", "0.2",
                "--api-keys-file", str(keys)]  # fmt: skip
        with llmctl_server(
            args, ready_url=f"http://127.0.0.1:{port}/health", log=tmp_path / "gateway.log"
        ):
            yield Stack(f"http://127.0.0.1:{port}", engine)


def test_gateway_rejections_are_counted_apart(tiny_gateway: Stack) -> None:
    # Each admitted request takes ~0.4 s (TTFT + 15 x 22 ms); one arrives every 0.1 s.
    config = BenchConfig(
        target=tiny_gateway.gateway,
        api_key="bench-key",
        levels=[RateStrategy(rate=10, arrival="constant")],
        requests=30,
        prompts=PromptSpec(input_len=32, output_len=16),
    )
    report = run_bench(config)
    level = report.levels[0]
    assert level.failures["http_429"] > 0, level.error_samples
    assert level.failures["http_503"] > 0, level.error_samples
    assert level.completed >= 2
    assert level.completed + level.failed == 30
    assert "queue_full" in level.error_samples["http_429"]
    assert "queue_timeout" in level.error_samples["http_503"]
    # Rejections answer within 0.2 s; only admitted requests are latency samples.
    assert level.median_e2el_ms is not None
    assert level.median_e2el_ms > 300
    assert level.mean_queue_wait_ms is not None  # the gateway reports X-Queue-Wait-Ms
    # From admission, the queue wait is taken off each request's TTFT and E2E.
    assert level.mean_admitted_ttft_ms is not None
    assert level.mean_ttft_ms is not None
    assert level.mean_admitted_ttft_ms <= level.mean_ttft_ms
    assert level.p95_admitted_e2el_ms is not None
    assert level.server is not None
    assert level.server.peak_gateway_active_requests == 1


def test_server_series_are_recorded_over_time_and_bounded(tiny_gateway: Stack) -> None:
    """Both /metrics pages read every 20 ms: ~60 readings per level, kept as at most 6 points
    (a machine so busy that the loop reads them 5 times slower still downsamples)."""
    config = BenchConfig(
        target=tiny_gateway.gateway,
        api_key="bench-key",
        levels=[ConcurrentStrategy(concurrency=1), ConcurrentStrategy(concurrency=3)],
        duration_s=1.2,
        prompts=PromptSpec(input_len=32, output_len=16),
        metrics_urls=[f"{tiny_gateway.engine}/metrics"],
        sample_interval_s=0.02,
        series_points=6,
    )
    report = run_bench(config)
    level_end = 0.0
    for level in report.levels:
        server = level.server
        assert server is not None
        assert server.span_s is not None
        series = server.series
        assert series is not None
        assert server.samples > 6
        assert len(series.t_s) == 6
        assert series.t_s == sorted(series.t_s)
        assert series.t_s[-1] == pytest.approx(server.span_s, abs=0.001)
        # Points spread over the level, not bunched at its start (a gap between two readings,
        # when the loop stalled, cannot be split).
        assert server.max_sample_gap_s is not None
        gaps = [b - a for a, b in zip(series.t_s, series.t_s[1:], strict=False)]
        assert max(gaps) < 3 * server.span_s / 6 + server.max_sample_gap_s
        # Levels follow each other on the run's clock.
        assert series.start_s >= level_end - 0.001
        level_end = series.start_s + server.span_s
        for name in SERIES_NAMES:  # the gateway's gauges and the engine's, every point read
            values = getattr(series, name)
            assert values is not None, name
            assert None not in values, name
            # Each point is the highest reading since the previous one: no peak is lost.
            assert max(values) == getattr(server, f"peak_{name}"), name
    busy = report.levels[1].server
    assert busy is not None
    assert busy.series is not None
    assert busy.peak_gateway_active_requests == 1  # one slot
    assert busy.peak_gateway_queue_depth == 1  # one queue place; the third client is turned away
    assert busy.peak_num_requests_running == 1
    assert busy.series.kv_cache_usage_perc is not None
    assert max(v or 0 for v in busy.series.kv_cache_usage_perc) > 0
    # The JSON keeps each list on one line, and reads back the same.
    text = report.to_json()
    assert re.search(r'"t_s": \[[0-9.]+(,[0-9.]+){5}\]', text)
    assert BenchReport.from_json(text) == report


def test_completions_endpoint_and_datasets(sim_server: StartServer, tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        '{"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}\n\n'
        '{"messages": [{"role": "user", "content": "tell me more"}]}\n'
    )
    plain = tmp_path / "prompts.jsonl"
    plain.write_text('{"prompt": "once upon a time"}\n')
    with sim_server() as url:
        levels = [ConcurrentStrategy(concurrency=2)]
        specs = {
            "synthetic completions": PromptSpec(endpoint="completions", input_len=16, output_len=8),
            "chat dataset": PromptSpec(dataset=chat, output_len=8),
            "completions dataset": PromptSpec(endpoint="completions", dataset=plain, output_len=8),
        }
        reports = {
            name: run_bench(BenchConfig(target=url, levels=levels, requests=4, prompts=spec))
            for name, spec in specs.items()
        }
    for name, report in reports.items():
        level = report.levels[0]
        assert level.completed == 4, (name, level.error_samples)
        assert level.token_source == "usage", name
        assert level.median_ttft_ms is not None, name
    # A dataset line's own max_tokens wins over --output-len.
    assert reports["chat dataset"].levels[0].total_output_tokens == 5 + 8 + 5 + 8
    assert reports["synthetic completions"].levels[0].total_output_tokens == 4 * 8
