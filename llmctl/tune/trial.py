"""One trial: set MAX_ACTIVE live, drive closed-loop load above it with bench, judge the result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.progress import BenchProgress
from llmctl.bench.report import LevelReport
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy
from llmctl.core.config import AdmissionLimits
from llmctl.core.errors import TargetError
from llmctl.tune.limits import GatewayAdmin
from llmctl.tune.report import TrialReport, TuneSettings, check_slo


@dataclass(frozen=True)
class TrialPlan:
    """How every trial of one tune run loads the gateway: the run's settings plus what stays out
    of its report (the API key) or is fixed for tests (model, request timeout, seed)."""

    settings: TuneSettings
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    request_timeout_s: float = 600.0
    seed: int = 0


def concurrency_for(max_active: int) -> int:
    """Closed-loop clients for a candidate: enough above it that a freed slot never waits for a
    client's next request (a quarter more, at least two), so the gateway is the only limiter."""
    return max_active + max(2, math.ceil(max_active / 4))


def trial_limits(max_active: int, original: AdmissionLimits, plan: TrialPlan) -> AdmissionLimits:
    """The limits a trial runs under: the candidate, and a queue that holds every surplus client
    for the whole trial (a 429 or a queue timeout would be the tuner's doing, not the engine's)."""
    surplus = concurrency_for(max_active) - max_active
    return original.model_copy(
        update={
            "max_active": max_active,
            "limit_mode": "static",  # a trial measures one fixed limit
            "queue_mode": "queue",
            "queue_max": max(original.queue_max, surplus),
            "queue_timeout_s": max(
                original.queue_timeout_s,
                plan.settings.warmup_s + plan.settings.trial_duration_s + 60.0,
            ),
        }
    )


def run_trial(
    admin: GatewayAdmin,
    plan: TrialPlan,
    max_active: int,
    original: AdmissionLimits,
    progress: BenchProgress | None = None,
) -> TrialReport:
    """Run one trial at `max_active` and report it; the caller restores the limits afterwards."""
    limits = trial_limits(max_active, original, plan)
    applied = admin.put(**limits.model_dump())
    if applied.max_active != max_active:
        raise TargetError(f"the gateway kept MAX_ACTIVE={applied.max_active}, not {max_active}")
    concurrency = concurrency_for(max_active)
    settings = plan.settings
    config = BenchConfig(
        target=settings.gateway,
        model=plan.model,
        api_key=plan.api_key,
        levels=[ConcurrentStrategy(concurrency=concurrency)],
        duration_s=settings.trial_duration_s,
        warmup_s=settings.warmup_s,
        prompts=PromptSpec(
            input_len=settings.input_len, output_len=settings.output_len, ignore_eos=True
        ),
        request_timeout_s=plan.request_timeout_s,
        metrics_urls=list(settings.engine_metrics),
        # Several samples per trial, so a short trial still sees its peak KV use.
        sample_interval_s=min(1.0, max(0.1, settings.trial_duration_s / 10)),
        seed=plan.seed,
    )
    level = run_bench(config, progress).levels[0]
    return trial_report(level, max_active, concurrency, settings)


def trial_report(
    level: LevelReport, max_active: int, concurrency: int, settings: TuneSettings
) -> TrialReport:
    """Judge one bench level against the SLO."""
    ttft, e2e = admitted_latencies(level)
    server = level.server
    preemptions = server.preemptions if server is not None else None
    per_s = preemptions / level.duration if preemptions is not None else None
    attempts = level.completed + level.failed
    error_rate = level.failed / attempts if attempts else 1.0
    violations = check_slo(
        settings,
        p95_ttft_ms=ttft,
        p95_itl_ms=level.p95_itl_ms,
        p95_e2e_ms=e2e,
        preemptions_per_s=per_s,
        error_rate=error_rate,
    )
    return TrialReport(
        max_active=max_active,
        concurrency=concurrency,
        duration_s=level.duration,
        completed=level.completed,
        failed=level.failed,
        output_throughput=level.output_throughput,
        request_throughput=level.request_throughput,
        p95_ttft_ms=ttft,
        p95_itl_ms=level.p95_itl_ms,
        p95_e2e_ms=e2e,
        p95_queue_wait_ms=level.p95_queue_wait_ms,
        preemptions=preemptions,
        preemptions_per_s=per_s,
        peak_kv_cache_usage=server.peak_kv_cache_usage_perc if server is not None else None,
        peak_running=server.peak_num_requests_running if server is not None else None,
        violations=violations,
    )


def admitted_latencies(level: LevelReport) -> tuple[float | None, float | None]:
    """p95 TTFT and E2E from admission: each request's gateway queue wait taken off.

    The load runs above the candidate on purpose, so every request queues at the gateway, and
    that wait depends on how far above we drive, not on the candidate; the SLO is about the
    service a request gets once admitted. A target that reports no queue wait queued nobody.
    """
    if level.p95_queue_wait_ms is None:
        return level.p95_ttft_ms, level.p95_e2el_ms
    return level.p95_admitted_ttft_ms, level.p95_admitted_e2el_ms
