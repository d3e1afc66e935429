"""The gateway's latency histograms: a quantile read from them is within 5 % of the exact value
anywhere from 1 ms to 10 min, and TTFT counts from arrival (queue included) while the admitted
variant counts from the slot's grant."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmctl.core import metrics as m
from llmctl.gateway.histogram import LatencyHistogram
from llmctl.observe.direct import histogram_quantile
from tests.gateway.client import chat, post_many
from tests.gateway.conftest import MakeGateway


def test_buckets_are_geometric_with_a_ratio_under_5_percent_from_1ms_to_10min() -> None:
    bounds = m.LATENCY_BUCKETS
    assert bounds[0] <= 0.001
    assert bounds[-1] >= 600
    assert max(b / a for a, b in itertools.pairwise(bounds)) <= 1.05


def _buckets(histogram: LatencyHistogram) -> dict[float, float]:
    family = next(text_string_to_metric_families(histogram.exposition()))
    return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.lognormvariate(math.log(0.05), 1.0),  # ms-scale TTFTs, long tail
        lambda r: r.uniform(0.001, 0.002),  # the bottom of the range
        lambda r: r.uniform(300, 600),  # the top of the range
        lambda r: 2.0 + r.expovariate(1.0),  # queueing: a floor plus exponential waits
        lambda r: r.choice([0.010, 0.011, 0.5]) * r.uniform(0.99, 1.01),  # clustered
    ],
    ids=["lognormal", "1-2ms", "5-10min", "shifted-exp", "clustered"],
)
def test_every_quantile_is_within_5_percent(draw: object) -> None:
    rng = random.Random(7)
    values = [draw(rng) for _ in range(5000)]  # type: ignore[operator]
    histogram = LatencyHistogram(m.GATEWAY_E2E)
    for value in values:
        histogram.observe(value)
    buckets = _buckets(histogram)
    for q in (0.5, 0.9, 0.95, 0.99):
        estimate = histogram_quantile(q, buckets)
        assert estimate is not None
        exact = _exact(values, q)
        assert abs(estimate - exact) / exact <= 0.05, (q, estimate, exact)


def test_ttft_counts_the_queue_and_the_admitted_variant_does_not(make_gateway: MakeGateway) -> None:
    """MAX_ACTIVE 1 and two streamed requests whose engine takes 0.3 s to the first token: the
    second waits about 0.3 s for the slot, so users feel about 0.6 s; the engine part stays 0.3."""
    gw = make_gateway(max_active=1, queue_max=4)
    answers = asyncio.run(
        post_many(gw.url, [chat({"delay": 0.3}, stream=True), chat({"delay": 0.3}, stream=True)])
    )
    assert [a.status for a in answers] == [200, 200]
    text = httpx.get(gw.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def slowest(spec: m.MetricSpec) -> float:
        samples = families[spec.name].samples
        buckets = {float(s.labels["le"]): s.value for s in samples if s.name.endswith("_bucket")}
        value = histogram_quantile(1.0, buckets)
        assert value is not None
        return value

    ttft, admitted = slowest(m.GATEWAY_TTFT), slowest(m.GATEWAY_ADMITTED_TTFT)
    wait = slowest(m.GATEWAY_QUEUE_WAIT)
    assert admitted * 1.05 >= 0.3  # the engine's 0.3 s...
    assert admitted < 0.5  # ...not the queue
    assert wait * 1.05 >= 0.3  # the second request waited for the first one's 0.3 s
    assert ttft * 1.05 >= 0.6  # users felt both
    assert ttft == pytest.approx(wait + admitted, rel=0.1)
    assert slowest(m.GATEWAY_E2E) * 1.05 >= ttft
