"""Every gateway metric from the one definition in core is exported, with the agreed labels."""

from __future__ import annotations

import httpx

from llmctl.core import metrics as m
from tests.exposition import Exposition
from tests.gateway.client import chat, run_post
from tests.gateway.conftest import MakeGateway


def test_all_gateway_metrics_are_exported(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_active=5, queue_max=7, queue_timeout_s=9)
    assert run_post(gw.url, chat(stream=True)).status == 200
    text = httpx.get(gw.url + "/metrics").text
    page = Exposition.parse(text)
    for spec in m.GATEWAY_METRICS:
        assert page.types.get(spec.name) == spec.type, spec.name
        for sample in page.samples:
            if sample.family == spec.name:
                labels = set(sample.labels) - {"le"}
                assert labels <= set(spec.labels), (spec.name, labels)
    assert gw.metric(m.GATEWAY_MAX_ACTIVE.series) == 5
    assert gw.metric(m.GATEWAY_QUEUE_MAX.series) == 5 + 2
    assert gw.metric(m.GATEWAY_QUEUE_TIMEOUT.series) == 9
    # Latency buckets reach past 600 s, so long generations are not all "+Inf".
    for spec in m.GATEWAY_LATENCIES:
        buckets = {
            float(s.labels["le"])
            for s in page.matching(f"{spec.name}_bucket")
            if s.labels["le"] != "+Inf"
        }
        assert max(buckets) >= 600, spec.name
    assert page.value(f"{m.GATEWAY_TTFT.name}_count") == 1
    # Pre-created children: dashboards see zeros rather than missing series.
    for stage in m.DISCONNECT_STAGES:
        assert f'stage="{stage}"' in text
    assert gw.metric(m.GATEWAY_REQUESTS.series, route="/v1/chat/completions", reason="ok") == 1
