"""The Grafana dashboards: built from the script, every query names a real series, units and
ranges are right, the datasource is referenced by uid and variables select instance and model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from llmctl.core import metrics as m
from llmctl.observe import queries
from tests.exposition import Exposition
from tests.observe.promql import (
    DASHBOARDS,
    dashboard_queries,
    load,
    metric_names,
    numbers,
    panels,
    variable_queries,
)
from tests.support import REPO, VLLM_REFERENCE_METRICS

KNOWN = m.known_series() | m.recording_rules() | {"up"}
# Rates (per second), shares (0..1 -> percentunit) and DCGM's 0..100 percent, never mixed up.
RATE_UNITS = {"reqps", "suffix: tokens/s", "suffix: /s"}
UNITS = RATE_UNITS | {
    "short",
    "s",
    "percent",
    "percentunit",
    "bool_yes_no",
    "mbytes",
    "bytes",
    "celsius",
    "watt",
}
DS = {"type": "prometheus", "uid": m.GRAFANA_DATASOURCE_UID}


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dashboards_build", REPO / "dashboards" / "build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_five_dashboards_exist_and_match_the_build_script() -> None:
    built = _build_module().render()
    assert set(built) == {
        "overview.json",
        "gateway.json",
        "capacity.json",
        "engine.json",
        "gpu.json",
    }
    for name, text in built.items():
        assert (REPO / "dashboards" / name).read_text() == text, (
            f"run python dashboards/build.py ({name})"
        )


def test_every_query_uses_a_series_that_exists() -> None:
    for name, title, expr in dashboard_queries():
        unknown = metric_names(expr) - KNOWN
        assert not unknown, f"{name} / {title}: {unknown} in {expr}"
    for name, var, selector, _ in variable_queries():
        assert metric_names(selector) <= KNOWN, f"{name} variable {var}: {selector}"


def test_top_queries_use_series_that_exist() -> None:
    for expr in queries.all_queries():
        assert metric_names(expr) <= KNOWN, expr


def test_limits_come_from_gauges_not_numbers() -> None:
    # The only literals allowed are quantiles and 0 (in `> 0` guards); a MAX_ACTIVE typed into a
    # query would show up here.
    for name, title, expr in dashboard_queries():
        assert numbers(expr) <= {0.0, *m.QUANTILES}, f"{name} / {title}: {expr}"
    capacity = {p["title"]: p for p in panels(load(REPO / "dashboards" / "capacity.json"))}
    exprs = [t["expr"] for t in capacity["Active vs MAX_ACTIVE"]["targets"]]
    assert any(m.GATEWAY_MAX_ACTIVE.series in e for e in exprs)
    exprs = [t["expr"] for t in capacity["Queue vs QUEUE_MAX"]["targets"]]
    assert any(m.GATEWAY_QUEUE_MAX.series in e for e in exprs)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_units_datasource_time_and_variables(path: object) -> None:
    dash = load(path)  # type: ignore[arg-type]
    assert dash["time"]["from"].startswith("now-")
    assert dash["time"]["to"] == "now"
    names = {v["name"] for v in dash["templating"]["list"]}
    assert "instance" in names
    assert names & {"model", "gpu"}
    for var in dash["templating"]["list"]:
        assert var["datasource"] == DS
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    for panel in panels(dash):
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert panel["datasource"] == DS, panel["title"]
        assert unit in UNITS, f"{panel['title']}: unit {unit}"
        for target in panel["targets"]:
            assert target["datasource"] == DS
            expr = target["expr"]
            is_ratio = "/" in expr or "histogram_quantile" in expr
            if "rate(" in expr and not is_ratio:
                assert unit in RATE_UNITS, f"{panel['title']}: a rate shown as {unit}"
            if unit in RATE_UNITS:
                assert "rate(" in expr, f"{panel['title']}: {unit} on a non-rate"
            if m.VLLM_KV_USAGE.series in expr:
                assert unit == "percentunit"
            if m.DCGM_GPU_UTIL.series in expr:
                assert unit == "percent"


def test_vllm_series_exist_in_real_vllm(rules_dir: Path) -> None:
    # The simulator mimics vLLM; this checks the names against a /metrics dump of real vLLM 0.32.
    if not VLLM_REFERENCE_METRICS.is_file():
        pytest.skip(f"{VLLM_REFERENCE_METRICS} not present")
    real = Exposition.parse(VLLM_REFERENCE_METRICS.read_text()).sample_names()
    used = {name for _, _, expr in dashboard_queries() for name in metric_names(expr)}
    used |= {name for expr in queries.all_queries() for name in metric_names(expr)}
    used |= {name for _, _, sel, _ in variable_queries() for name in metric_names(sel)}
    for rules in rules_dir.glob("*.yml"):
        for group in yaml.safe_load(rules.read_text())["groups"]:
            used |= {name for rule in group["rules"] for name in metric_names(rule["expr"])}
    vllm = {name for name in used if name.startswith("vllm:")}
    assert vllm
    assert vllm <= real, vllm - real
