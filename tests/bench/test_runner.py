"""End-to-end runs over real sockets: exact delays, arrival rate, failure classes, server sampling."""

from __future__ import annotations

import statistics

import pytest

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from llmctl.core.errors import TargetError
from tests.bench.conftest import StartServer
from tests.exposition import scrape_value


def _config(
    target: str, levels: list[ConcurrentStrategy | RateStrategy], **kw: object
) -> BenchConfig:
    prompts = kw.pop("prompts", PromptSpec(input_len=32, output_len=16))
    return BenchConfig(target=target, levels=levels, prompts=prompts, **kw)  # type: ignore[arg-type]


def test_exact_delays_are_measured(fake_engine: StartServer) -> None:
    """The fake engine sends the first token after 50 ms and then one every 20 ms."""
    with fake_engine("--ttft-ms", "50", "--itl-ms", "20") as url:
        strategy = ConcurrentStrategy(concurrency=2)
        # Samples every 0.1 s, so some land mid-run (the run lasts about 1.4 s).
        report = run_bench(_config(url, [strategy], requests=8, sample_interval_s=0.1))
    level = report.levels[0]
    assert level.completed == 8
    assert level.failed == 0
    assert level.token_source == "usage"
    assert level.total_output_tokens == 8 * 16
    # Tolerance: medians within 20 % (at least 3 ms) of the configured delays, on a shared host.
    assert level.median_ttft_ms == pytest.approx(50, rel=0.2, abs=3)
    assert level.median_itl_ms == pytest.approx(20, rel=0.2, abs=3)
    assert level.median_tpot_ms == pytest.approx(20, rel=0.2, abs=3)
    assert level.median_e2el_ms == pytest.approx(50 + 15 * 20, rel=0.2, abs=3)
    assert level.max_concurrent_requests == 2
    assert level.mean_queue_wait_ms == 0.0  # the fake engine sends X-Queue-Wait-Ms: 0
    # The fake engine exposes vllm:num_requests_running; the sampler saw both streams at once
    # (the samples at the start and the end of the level alone would read 0).
    assert level.server is not None
    assert level.server.samples > 2
    assert level.server.peak_num_requests_running == 2


def test_poisson_run_keeps_the_planned_rate(fake_engine: StartServer) -> None:
    with fake_engine("--ttft-ms", "5", "--itl-ms", "5") as url:
        strategy = RateStrategy(rate=50, arrival="poisson")
        report = run_bench(_config(url, [strategy], duration_s=4.0, warmup_s=0.5))
    level = report.levels[0]
    assert level.failed == 0
    # Arrivals are seeded, so the number sent is fixed; what varies is only the server's timing.
    assert level.request_throughput == pytest.approx(50, rel=0.25)
    assert level.completed == pytest.approx(200, rel=0.25)
    assert level.max_concurrent_requests > 1  # open loop: requests overlap
    assert level.p99_sched_lag_ms is not None
    assert level.p99_sched_lag_ms < 500  # generous: the host is shared


def test_http_failures_are_classified_and_not_latency_samples(fake_engine: StartServer) -> None:
    with fake_engine("--status-cycle", "200,429,503,504,500,401", "--ttft-ms", "30") as url:
        report = run_bench(_config(url, [ConcurrentStrategy(concurrency=1)], requests=12))
    level = report.levels[0]
    assert level.completed == 2
    assert level.failed == 10
    expected = {"http_429": 2, "http_503": 2, "http_504": 2, "http_5xx": 2, "http_4xx": 2}
    assert {k: v for k, v in level.failures.items() if v} == expected
    assert "fake_429" in level.error_samples["http_429"]
    # Failures answer at once; had they been samples the TTFT and E2E minimum would be ~0 ms.
    assert level.median_ttft_ms is not None
    assert level.median_ttft_ms > 25
    assert level.mean_e2el_ms is not None
    assert level.mean_e2el_ms > 25 + 15 * 10 * 0.8


def test_stream_drops_and_stalls_are_their_own_classes(sim_server: StartServer) -> None:
    with sim_server("--drop-rate", "0.3", "--stall-rate", "0.2", "--seed", "1") as url:
        config = _config(
            url, [ConcurrentStrategy(concurrency=8)], requests=24, request_timeout_s=1.5
        )
        report = run_bench(config)
    level = report.levels[0]
    seen = (level.completed, level.failures, level.error_samples)
    assert level.failures["stream_error"] > 0, seen
    assert level.failures["client_timeout"] > 0, seen
    assert level.completed > 0, seen
    assert level.completed + level.failed == 24, seen


def test_unreachable_target_is_a_target_error(refused_url: str) -> None:
    with pytest.raises(TargetError, match="cannot reach"):
        run_bench(_config(refused_url, [ConcurrentStrategy(concurrency=1)], requests=1))


def test_itl_samples_match_gaps(fake_engine: StartServer) -> None:
    """ITL percentiles come from every gap between chunks, so the spread is tight here."""
    with fake_engine("--ttft-ms", "10", "--itl-ms", "15") as url:
        report = run_bench(_config(url, [RateStrategy(rate=20, arrival="constant")], requests=10))
    level = report.levels[0]
    assert level.completed == 10
    values = [level.median_itl_ms, level.mean_itl_ms]
    assert statistics.fmean(v for v in values if v is not None) == pytest.approx(15, rel=0.2)


def test_closed_loop_backs_off_after_rejections(fake_engine: StartServer) -> None:
    """A worker that gets 429 pauses before retrying instead of hammering a full queue."""
    with fake_engine("--status-cycle", "429") as url:
        polite = run_bench(_config(url, [ConcurrentStrategy(concurrency=1)], duration_s=1.0))
        eager = run_bench(
            _config(url, [ConcurrentStrategy(concurrency=1)], duration_s=1.0, reject_backoff_s=0)
        )
    assert polite.levels[0].failures["http_429"] <= 11  # one per 0.1 s pause, at most
    assert eager.levels[0].failures["http_429"] > 50
    assert polite.levels[0].completed == 0


def test_a_second_run_with_the_same_seed_is_not_served_from_the_prefix_cache(
    sim_server: StartServer,
) -> None:
    """The seed fixes the prompt lengths; the words are new in each run, so a second run (a
    repeated bench, tune's next trial) pays its prefill like the first instead of reading the
    blocks the first one left in the engine's prefix cache."""
    prompts = PromptSpec(input_len=64, input_spread=0.5, output_len=4, ignore_eos=True)
    with sim_server("--profile", "tiny", "--time-scale", "20") as url:

        def run() -> tuple[int, float]:
            before = scrape_value(f"{url}/metrics", "vllm:prefix_cache_hits_total")
            level = run_bench(
                _config(url, [ConcurrentStrategy(concurrency=2)], requests=12, prompts=prompts)
            ).levels[0]
            assert level.completed == 12
            hits = scrape_value(f"{url}/metrics", "vllm:prefix_cache_hits_total") - before
            return level.total_input_tokens, hits

        first_tokens, _ = run()
        second_tokens, second_hits = run()
    # Same seed, same lengths in words (the simulator counts a word of five letters as two).
    assert second_tokens == pytest.approx(first_tokens, rel=0.05)
    assert second_hits < 0.05 * second_tokens, (second_hits, second_tokens)
