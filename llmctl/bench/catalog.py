"""The catalog of a level's numbers: JSON field, printed label (vLLM's wording), format, direction.

Every table, legend and comparison reads the numbers through this one list, so a field added to
`LevelReport` without an entry here fails a test instead of silently missing from the full table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmctl.bench.report import LevelNumbers, LevelReport

Value = float | int | str | None


@dataclass(frozen=True)
class Number:
    """One number of a level. `field` is a LevelReport field, `server.<field>` or
    `failures.<class>`; `digits` None prints it as it is (`:g`), else with that many decimals."""

    field: str
    label: str
    digits: int | None = 2
    higher_is_better: bool | None = None  # None: neither (a count of samples, a setting)


@dataclass(frozen=True)
class Section:
    title: str
    numbers: tuple[Number, ...]


def value(level: LevelNumbers, field: str) -> Value:
    """The value of `field` in `level` or a mix stream (None where it has none: a stream has no
    server side of its own)."""
    head, _, tail = field.partition(".")
    if head == "failures":
        return level.failures.get(tail, 0)
    if head == "server":
        server = level.server if isinstance(level, LevelReport) else None
        return None if server is None else getattr(server, tail)
    result: Value = getattr(level, head)
    return result


def fmt(number: Value, digits: int | None = 2) -> str:
    """How every printer writes a number: whole, never with thousands separators ('-' for None)."""
    if number is None:
        return "-"
    if isinstance(number, str):
        return number
    if isinstance(number, int):
        return str(number)
    if digits is not None:
        return f"{number:.{digits}f}"
    if number.is_integer():
        return str(int(number))  # `:g` would write 1234567.0 as 1.23457e+06
    short = f"{number:g}"
    return short if float(short) == number else repr(number)


def _latency(name: str, label: str, stats: tuple[str, ...]) -> tuple[Number, ...]:
    words = {"mean": "Mean", "std": "Std", "median": "Median", "max": "Max"}
    return tuple(
        Number(f"{stat}_{name}_ms", f"{words.get(stat, stat.upper())} {label} (ms)", 2, False)
        for stat in stats
    )


_ALL = ("mean", "std", "median", "p90", "p95", "p99", "max")

# The full table, in vLLM's order where vLLM has the number ("Serving Benchmark Result").
SECTIONS: tuple[Section, ...] = (
    Section("Requests", (
        Number("duration", "Benchmark duration (s)", 2),
        Number("completed", "Successful requests", 0, True),
        Number("failed", "Failed requests", 0, False),
        Number("max_concurrent_requests", "Peak concurrent requests", 0),
        Number("total_input_tokens", "Total input tokens", 0),
        Number("total_output_tokens", "Total generated tokens", 0),
        Number("token_source", "Token counts from", None),
    )),
    Section("Throughput", (
        Number("request_throughput", "Request throughput (req/s)", 2, True),
        Number("request_goodput", "Request goodput (req/s)", 2, True),
        Number("output_throughput", "Output token throughput (tok/s)", 2, True),
        Number("max_output_tokens_per_s", "Peak output token throughput (tok/s)", 2, True),
        Number("total_token_throughput", "Total token throughput (tok/s)", 2, True),
    )),
    Section("Time to First Token", _latency("ttft", "TTFT", _ALL)),
    Section("Time per Output Token (excl. 1st token)", _latency("tpot", "TPOT", _ALL)),
    Section("Inter-token Latency", _latency("itl", "ITL", _ALL)),
    Section("End-to-end Latency", _latency("e2el", "E2EL", _ALL)),
    Section("Gateway queue wait (X-Queue-Wait-Ms)",
            _latency("queue_wait", "queue wait", ("mean", "p95", "p99", "max"))),
    Section("From admission (each request's queue wait taken off)", (
        *_latency("admitted_ttft", "admitted TTFT", ("mean", "median", "p95", "p99")),
        *_latency("admitted_e2el", "admitted E2EL", ("mean", "median", "p95", "p99")),
    )),
    Section("This client's send lag (actual minus planned send time)",
            _latency("sched_lag", "lag", ("mean", "p99", "max"))),
    Section("Server side (/metrics, warm-up included)", (
        Number("server.samples", "Samples", 0),
        Number("server.span_s", "Sampled span (s)", 2),
        Number("server.max_sample_gap_s", "Longest gap between samples (s)", 3),
        Number("server.peak_kv_cache_usage_perc", "Peak KV cache usage (1 = full)", 3, False),
        Number("server.preemptions", "Preemptions (counter increase)", None, False),
        Number("server.peak_num_requests_running", "Peak engine running", None),
        Number("server.mean_num_requests_running", "Mean engine running (histograms)", 2),
        Number("server.peak_num_requests_waiting", "Peak engine waiting", None, False),
        Number("server.mean_num_requests_waiting", "Mean engine waiting (histograms)", 2, False),
        Number("server.peak_gateway_queue_depth", "Peak gateway queue depth", None, False),
        Number("server.peak_gateway_active_requests", "Peak gateway active requests", None),
    )),
)  # fmt: skip

BY_FIELD: dict[str, Number] = {n.field: n for s in SECTIONS for n in s.numbers}


def failure_numbers(levels: Sequence[LevelNumbers]) -> tuple[Number, ...]:
    """A row per failure class that happened in any of `levels` (all zero ones are left out)."""
    seen: list[str] = []
    for level in levels:
        seen.extend(k for k, count in level.failures.items() if count and k not in seen)
    return tuple(Number(f"failures.{k}", f"  failed: {k}", 0, False) for k in seen)


# The headline of `bench compare`, in this order.
HEADLINE: tuple[str, ...] = (
    "request_throughput",
    "output_throughput",
    "request_goodput",
    "median_ttft_ms",
    "p95_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "median_e2el_ms",
    "p95_e2el_ms",
    "p99_e2el_ms",
    "failed",
)
