"""Against a real Prometheus scraping a real simulator and gateway under load: every query behind
`llmctl top` and every dashboard panel returns data, and the numbers agree with the load."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmctl.observe import queries
from llmctl.observe.direct import DirectSource, histogram_quantile
from llmctl.observe.live import Sampler
from llmctl.observe.prometheus import PrometheusSource
from tests.observe.conftest import (
    MAX_ACTIVE,
    QUEUE_MAX,
    LiveStack,
    prometheus_config,
    render_rules,
    start_prometheus,
    wait_for_data,
)
from tests.observe.promql import annotation_queries, dashboard_queries, substitute, variable_queries
from tests.support import REPO

pytestmark = pytest.mark.timeout(180)


def test_histogram_quantile_matches_promql() -> None:
    # The same buckets promtool evaluates in rules/alerts_test.yml: p95 58.5, p50 45.
    buckets = {30.0: 0.0, 60.0: 10.0, math.inf: 10.0}
    assert histogram_quantile(0.95, buckets) == pytest.approx(58.5)
    assert histogram_quantile(0.5, buckets) == pytest.approx(45.0)
    assert histogram_quantile(0.99, {1.0: 5.0, math.inf: 10.0}) == 1.0  # in +Inf: highest bound
    assert histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None


def test_every_top_query_returns_data(live_stack: LiveStack) -> None:
    prom = PrometheusSource(live_stack.prometheus)
    empty = [q for q in queries.all_queries() if not prom.vector(q)]
    assert not empty
    for name, query in queries.HISTORY.items():
        assert len(prom.series(query)) >= 1, name


def test_an_engine_rate_without_its_series_is_zero_while_the_engine_is_up(
    live_stack: LiveStack,
) -> None:
    # The same query strings top runs, over a counter the engine has not exported (yet).
    prom = PrometheusSource(live_stack.prometheus)
    for field in ("preemptions_per_s", "prompt_tokens_per_s", "generation_tokens_per_s"):
        query = re.sub(r"vllm:[a-z_]+", "vllm:never_counted_total", queries.scalars("10s")[field])
        assert prom.scalar(query) == 0.0, field


def test_prometheus_numbers_match_the_load(live_stack: LiveStack) -> None:
    snap = PrometheusSource(live_stack.prometheus).snapshot()
    assert snap.source == "prometheus"
    assert snap.slots_max == MAX_ACTIVE
    assert snap.queue_max == QUEUE_MAX
    assert snap.slots_active is not None
    assert 0 <= snap.slots_active <= MAX_ACTIVE
    assert snap.queue_depth is not None
    assert 0 <= snap.queue_depth <= QUEUE_MAX
    assert snap.ok_per_s
    assert snap.ok_per_s > 1
    assert snap.rejected_429_per_s
    assert snap.rejected_429_per_s > 0
    assert snap.error_per_s == 0
    assert snap.window_s == 10.0  # the fixture scrapes every second: the 10 s minimum
    assert snap.e2e_p50_s
    assert snap.e2e_p95_s
    assert snap.e2e_p99_s
    assert 0 < snap.e2e_p50_s <= snap.e2e_p95_s <= snap.e2e_p99_s < 30
    assert snap.ttft_p50_s is not None
    assert snap.ttft_p95_s is not None
    assert 0 < snap.ttft_p50_s <= snap.ttft_p95_s <= snap.e2e_p99_s
    # What users feel includes the queue; the engine's part does not.
    assert snap.admitted_ttft_p95_s is not None
    assert snap.admitted_ttft_p95_s <= snap.ttft_p95_s
    assert snap.tpot_p95_s is not None
    assert snap.queue_wait_p95_s is not None
    assert 0 <= snap.queue_wait_p95_s <= 0.5 * 1.05  # the 0.5 s queue timeout, within a bucket
    assert snap.engine_running is not None
    assert 0 <= snap.engine_running <= MAX_ACTIVE
    assert snap.kv_cache_usage is not None
    assert 0 <= snap.kv_cache_usage <= 1
    assert snap.generation_tokens_per_s
    assert snap.generation_tokens_per_s > 0
    assert snap.prompt_tokens_per_s
    assert snap.prompt_tokens_per_s > 0
    assert snap.preemptions_per_s is not None
    assert snap.gpus
    assert snap.gpus[0].util_pct is not None
    assert 0 <= snap.gpus[0].util_pct <= 100
    gpu = snap.gpus[0]
    assert gpu.mem_used_mib
    assert gpu.mem_total_mib
    assert gpu.mem_used_mib <= gpu.mem_total_mib
    assert snap.history.request_rate
    assert max(snap.history.request_rate) > 0


def test_direct_scrape_agrees_with_prometheus(live_stack: LiveStack) -> None:
    prom = PrometheusSource(live_stack.prometheus)
    direct = DirectSource(live_stack.gateway, live_stack.engine, warmup_s=4.0)
    try:
        snap = direct.snapshot()
    finally:
        direct.close()
    assert snap.source == "direct"
    assert "Prometheus unreachable" in snap.note
    window = queries.scalars("6s")
    assert snap.slots_max == prom.scalar(window["slots_max"])
    assert snap.queue_max == prom.scalar(window["queue_max"])
    # The fixture's series are seconds old, and rate() over 1m divides a young series' increase
    # by the whole minute; so compare the same queries over a window near the scrapes' own. The
    # windows still differ by a few seconds of a load that a busy 2-core box makes uneven: a factor
    # of 4 allows that and still catches a unit or series mistake (per minute would be 60x).
    for field in ("ok_per_s", "rejected_429_per_s", "generation_tokens_per_s"):
        a = prom.scalar(window[field])
        b = getattr(snap, field)
        assert a, field
        assert b, field
        assert 1 / 4 < a / b < 4, (field, a, b)
    # Quantiles do not depend on the window's length.
    for field in ("e2e_p95_s", "ttft_p95_s"):
        a, b = prom.scalar(window[field]), getattr(snap, field)
        assert a, field
        assert b, field
        assert 1 / 4 < a / b < 4, (field, a, b)
    assert snap.gpus
    assert [g.gpu for g in snap.gpus] == [g.gpu for g in prom.gpus()]
    # The adaptive limit (pinned: min = max) as both sources see it.
    assert snap.limit_adaptive == prom.scalar(window["limit_adaptive"]) == 1
    assert snap.limit_direction == "hold"
    assert snap.adaptive_slo_ttft_s == prom.scalar(window["adaptive_slo_ttft_s"]) > 0


def test_every_dashboard_query_returns_data(live_stack: LiveStack) -> None:
    prom = PrometheusSource(live_stack.prometheus)
    seen = 0
    empty = []
    for name, title, expr in dashboard_queries():
        seen += 1
        if not prom.vector(substitute(expr)):
            empty.append(f"{name} / {title}: {expr}")
    assert seen > 50
    assert not empty, "\n".join(empty)
    # Annotations mark events (`... > 0`): valid everywhere, and with data once the filter goes.
    annotations = list(annotation_queries())
    assert {name for name, _, _ in annotations} >= {"gateway.json", "overview.json"}
    for name, title, expr in annotations:
        prom.vector(substitute(expr))
        assert prom.vector(substitute(expr.removesuffix(" > 0"))), f"{name} / {title}"
    for name, var, selector, label in variable_queries():
        result = prom.vector(f"count by ({label}) ({selector})")
        assert result, f"{name} variable {var}"
        assert label in result[0]["metric"], f"{name} variable {var}"


def _top(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmctl", "top", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_top_json_and_once_from_prometheus(live_stack: LiveStack) -> None:
    urls = ["--prometheus", live_stack.prometheus, "--gateway", live_stack.gateway]
    result = _top(*urls, "--engine", live_stack.engine, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"] == "prometheus"
    assert data["slots_max"] == MAX_ACTIVE
    assert data["ok_per_s"] > 0
    assert data["gpus"]
    result = _top(*urls, "--engine", live_stack.engine, "--once")
    assert result.returncode == 0, result.stderr
    assert "source: prometheus" in result.stdout
    assert f"/ {MAX_ACTIVE}" in result.stdout
    assert re.search(rf"limit +{MAX_ACTIVE} adaptive \((minimum|[a-z_]+)\)", result.stdout)


def test_top_finds_the_running_stack_without_flags(live_stack: LiveStack) -> None:
    result = _top("--json", cwd=live_stack.cwd)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"] == "prometheus"
    assert data["source_url"] == live_stack.prometheus
    assert data["slots_max"] == MAX_ACTIVE


def test_falls_back_to_direct_scrapes_when_prometheus_stops(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus binary not installed")
    # A Prometheus of its own, so stopping it leaves the shared one to the other tests.
    gw = live_stack.gateway.removeprefix("http://")
    engine = live_stack.engine.removeprefix("http://")
    render_rules(tmp_path / "rules")
    (tmp_path / "prometheus.yml").write_text(prometheus_config(gw, engine))
    prom = start_prometheus(tmp_path)
    url = prom.url
    sampler = Sampler(PrometheusSource(url), DirectSource(live_stack.gateway, live_stack.engine))
    try:
        wait_for_data(PrometheusSource(url), [queries.scalars("10s")["slots_max"]], timeout=30)
        assert sampler.sample().source == "prometheus"
        prom.server.stop()
        started = time.monotonic()
        snap = sampler.sample()
        assert time.monotonic() - started < 10  # no retry backoff on a refused connection
        assert snap.source == "direct"
        assert "Prometheus unreachable" in snap.note
        assert snap.slots_max == MAX_ACTIVE
        assert snap.ok_per_s
        assert snap.ok_per_s > 0
        assert snap.e2e_p95_s is not None
        assert snap.gpus
        time.sleep(0.5)
        again = sampler.sample()  # rates now from the kept earlier scrape, history grows
        assert again.ok_per_s
        assert len(again.history.request_rate) == 2
    finally:
        prom.server.stop()
        sampler.close()
    result = _top(
        "--prometheus",
        url,
        "--gateway",
        live_stack.gateway,
        "--engine",
        live_stack.engine,
        "--once",
    )
    assert result.returncode == 0, result.stderr
    assert "source: direct" in result.stdout
    assert f"/ {MAX_ACTIVE}" in result.stdout


def test_gateway_and_engine_down_show_dashes_not_a_crash(refused_url: str) -> None:
    closed = ("--prometheus", refused_url, "--gateway", refused_url, "--engine", refused_url)
    result = _top(*closed, "--json")
    # Nothing answered: exit 1, and the (empty) snapshot is still printed.
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: nothing answered")
    data = json.loads(result.stdout)
    assert data["source"] == "direct"
    assert data["slots_active"] is None
    assert data["gpus"] == []
    assert "gateway, engine unreachable" in data["note"]


def test_a_prometheus_without_our_gateway_is_not_used(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    # Debian's packaged Prometheus on :9090 answers, but scrapes nothing of this stack's.
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
    prom = start_prometheus(tmp_path)
    sampler = Sampler(
        PrometheusSource(prom.url),
        DirectSource(live_stack.gateway, live_stack.engine, warmup_s=0.5),
    )
    try:
        snap = sampler.sample()
    finally:
        prom.server.stop()
        sampler.close()
    assert snap.source == "direct"
    assert "Prometheus scrapes no gateway" in snap.note
    assert snap.slots_max == MAX_ACTIVE
