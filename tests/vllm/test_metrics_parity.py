"""Parity with the live vLLM /metrics: what the simulator emits and what dashboards, rules and top query.

Names are pulled from whatever is in the tree (dashboards/*.json, the rendered Prometheus rules,
llmctl.observe.queries), so a new panel or alert is checked without touching this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import yaml

from llmctl.core import metrics as m
from llmctl.core.resources import data_dir
from llmctl.stack.render import render
from llmctl.stack.spec import StackSpec
from tests.exposition import Exposition
from tests.observe.promql import metric_names
from tests.support import VLLM_REFERENCE_METRICS, eventually, sim_server
from tests.vllm.conftest import VllmStack, stats_caught_up

# vLLM starts inside the first test that needs it: 25-80 s, minutes on a loaded machine.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(600)]

# Series that Prometheus itself makes for every target.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_OWN_PREFIXES = ("llmctl_gateway_", "DCGM_")
_RATE_ARG = re.compile(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def counters_in(expr: str) -> set[str]:
    """Names the expression takes a rate or increase of: they must be counters (or histogram parts)."""
    return set(_RATE_ARG.findall(re.sub(r"\{[^}]*\}", "", expr)))


def _strings_under(obj: object, keys: set[str]) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _strings_under(value, keys)
    elif isinstance(obj, list):
        for item in obj:
            yield from _strings_under(item, keys)


def dashboard_queries() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(data_dir("dashboards").glob("*.json")):
        exprs = list(_strings_under(json.loads(path.read_text()), {"expr", "query", "definition"}))
        found[f"dashboards/{path.name}"] = exprs
    return found


def rendered_rules() -> tuple[dict[str, list[str]], set[str]]:
    """Each rendered rule file's exprs, and every recording rule name they define."""
    exprs: dict[str, list[str]] = {}
    records: set[str] = set()
    for name, text in render(StackSpec()).items():
        if name.startswith("prometheus/rules/") and name.endswith(".yml"):
            rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
            exprs[name] = [str(r["expr"]) for r in rules]
            records |= {r["record"] for r in rules if "record" in r}
    return exprs, records


def top_queries() -> dict[str, list[str]]:
    from llmctl.observe.queries import all_queries

    return {"llmctl.observe.queries": all_queries()}


@pytest.fixture(scope="module")
def live(vllm_stack: VllmStack) -> Exposition:
    """The real vLLM's /metrics after at least one finished request (so histograms have data)."""
    resp = httpx.post(
        f"{vllm_stack.engine_url}/v1/completions",
        json={"model": vllm_stack.model, "prompt": "hi", "max_tokens": 4, "ignore_eos": True},
        timeout=60,
    )
    resp.raise_for_status()
    return Exposition.scrape(f"{vllm_stack.engine_url}/metrics")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Exposition:
    """The simulator's /metrics after a streamed and a plain request."""
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    with sim_server(log, "--model", "tiny", "--time-scale", "20") as sim:
        for stream in (False, True):
            body = {"model": "tiny", "prompt": "hi", "max_tokens": 4, "stream": stream}
            httpx.post(f"{sim.url}/v1/completions", json=body, timeout=30).raise_for_status()
        return Exposition.scrape(f"{sim.url}/metrics")


def _allowed_elsewhere(name: str, records: set[str]) -> bool:
    """The gateway's own or DCGM's (defined in llmctl.core.metrics), a recording rule, or Prometheus'."""
    if name.startswith(_OWN_PREFIXES):
        return name in m.known_series()
    return name in records or name in PROMETHEUS_SYNTHETIC


def test_every_vllm_metric_in_core_exists_in_live_vllm_with_its_type(live: Exposition) -> None:
    wrong = []
    for spec in m.VLLM_METRICS:
        family = live.family_of(spec.series if spec.type == "counter" else spec.name)
        if family is None:
            wrong.append(f"{spec.name}: missing")
        elif live.types[family] != spec.type:
            wrong.append(f"{spec.name}: core says {spec.type}, vLLM says {live.types[family]}")
    assert not wrong, "\n".join(wrong)


def test_every_metric_the_simulator_emits_exists_in_live_vllm(
    live: Exposition, simulated: Exposition
) -> None:
    vllm_families = [f for f in simulated.types if f.startswith("vllm:")]
    assert len(vllm_families) >= 10, f"the simulator emits few vllm: families: {vllm_families}"
    wrong = []
    for family, kind in sorted(simulated.types.items()):
        if family.startswith(_OWN_PREFIXES):
            continue
        if family not in live.types:
            wrong.append(f"{family} ({kind}): not in vLLM 0.32.0")
        elif live.types[family] != kind:
            wrong.append(f"{family}: simulator {kind}, vLLM {live.types[family]}")
    assert not wrong, "\n".join(wrong)


def test_simulator_samples_carry_vllms_labels(live: Exposition, simulated: Exposition) -> None:
    def label_keys(e: Exposition) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {}
        for sample in e.samples:
            if sample.name.startswith("vllm:"):
                keys.setdefault(sample.name, set()).update(sample.labels)
        return keys

    real, sim = label_keys(live), label_keys(simulated)
    wrong = [
        f"{name}: simulator {sorted(keys)}, vLLM {sorted(real[name])}"
        for name, keys in sorted(sim.items())
        if name in real and keys != real[name]
    ]
    assert not wrong, "\n".join(wrong)


def _check_queries(sources: dict[str, list[str]], live: Exposition, records: set[str]) -> list[str]:
    wrong = []
    for source, exprs in sources.items():
        for expr in exprs:
            for name in sorted(metric_names(expr)):
                if _allowed_elsewhere(name, records):
                    continue
                if name.startswith(_OWN_PREFIXES):
                    wrong.append(f"{source}: {name} is not defined in llmctl.core.metrics")
                    continue
                family = live.family_of(name)
                if family is None:
                    wrong.append(f"{source}: {name} is in no live vLLM series ({expr!r})")
                elif name.endswith("_bucket") and live.types[family] != "histogram":
                    wrong.append(f"{source}: {name} is not a histogram in vLLM")
            for name in sorted(counters_in(expr)):
                family = live.family_of(name)
                if family is not None and live.types[family] not in ("counter", "histogram"):
                    wrong.append(f"{source}: rate() of {name}, a {live.types[family]} in vLLM")
    return wrong


def test_extraction_finds_metric_names() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
        '{instance=~"$instance", model_name=~"$model"}[$__rate_interval]))) '
        '/ on() group_left sum(up{job="engine"}) or label_values(vllm:num_requests_running, model_name)'
    )
    assert metric_names(expr) == {
        "vllm:e2e_request_latency_seconds_bucket",
        "up",
        "vllm:num_requests_running",
    }
    assert counters_in(expr) == {"vllm:e2e_request_latency_seconds_bucket"}


def test_dashboard_queries_use_metrics_that_exist(live: Exposition) -> None:
    sources = dashboard_queries()
    assert sum(len(v) for v in sources.values()) > 0, "no dashboard queries found"
    _, records = rendered_rules()
    wrong = _check_queries(sources, live, records)
    assert not wrong, "\n".join(wrong)


def test_alert_and_recording_rules_use_metrics_that_exist(live: Exposition) -> None:
    sources, records = rendered_rules()
    assert sources, "no rendered rule files"
    wrong = _check_queries(sources, live, records)
    assert not wrong, "\n".join(wrong)


def test_top_queries_use_metrics_that_exist(live: Exposition) -> None:
    _, records = rendered_rules()
    wrong = _check_queries(top_queries(), live, records)
    assert not wrong, "\n".join(wrong)


def test_reference_page_matches_live_vllm(live: Exposition) -> None:
    """The checked-in reference (shared/reference) is what the simulator's own tests compare with."""
    reference = VLLM_REFERENCE_METRICS
    if not reference.is_file():
        pytest.skip(f"{reference} is not on this machine")
    ref = Exposition.parse(reference.read_text())
    ref_vllm = {k: v for k, v in ref.types.items() if k.startswith("vllm:")}
    live_vllm = {k: v for k, v in live.types.items() if k.startswith("vllm:")}
    assert ref_vllm == live_vllm


def _abort_count_after_a_disconnect(base_url: str, model: str) -> float:
    """Stream, leave after a few chunks, and return how much finished_reason="abort" grew."""

    def aborts() -> float:
        page = Exposition.scrape(f"{base_url}/metrics")
        return page.value("vllm:request_success_total", finished_reason="abort")

    def running() -> float:
        return Exposition.scrape(f"{base_url}/metrics").value("vllm:num_requests_running")

    before = aborts()
    body = {"model": model, "prompt": "hi", "max_tokens": 1500, "ignore_eos": True, "stream": True}
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{base_url}/v1/completions", json=body) as resp,
    ):
        lines = resp.iter_lines()
        for _ in range(6):
            next(lines)
        assert running() == 1  # still going when the client leaves
    eventually(lambda: running() == 0, timeout=5.0, what="the request stopped")
    stats_caught_up(base_url, model)
    return aborts() - before


def test_live_vllm_does_not_count_client_aborts(vllm_stack: VllmStack) -> None:
    assert _abort_count_after_a_disconnect(vllm_stack.engine_url, vllm_stack.model) == 0


def test_simulator_counts_client_aborts_as_vllm_does(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    log = tmp_path_factory.mktemp("sim-abort") / "sim.log"
    with sim_server(log, "--model", "tiny") as sim:
        assert _abort_count_after_a_disconnect(sim.url, "tiny") == 0
