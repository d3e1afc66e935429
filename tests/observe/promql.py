"""Test helpers: pull metric names out of PromQL and the queries out of the dashboards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import REPO

DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?![\w:])")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
# Grafana's label_values(series, label) anywhere in a query: the series counts, the label does not.
_LABEL_VALUES_CALL = re.compile(r"\blabel_values\(\s*([A-Za-z_:][\w:]*)[^)]*\)")
_LABEL_VALUES = re.compile(r"^label_values\(\s*([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*,\s*(\w+)\s*\)$")

# Grafana's variables as the test stands them in for (1 s scrapes: the rate window spans 10).
GRAFANA_VARS = {
    "$__rate_interval": "10s",
    "$__interval": "2s",
    "$instance": ".*",
    "$model": ".*",
    "$gpu": ".*",
}


def _strip(expr: str) -> str:
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING):
        expr = pattern.sub(" ", expr)
    return expr


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression (or a Grafana label_values query) selects: not functions,
    keywords, label names or Grafana variables."""
    names = set(_LABEL_VALUES_CALL.findall(expr))
    text = _strip(_LABEL_VALUES_CALL.sub(" ", expr))
    for match in _IDENT.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def numbers(expr: str) -> set[float]:
    """Numeric literals outside label matchers and ranges."""
    return {float(n) for n in _NUMBER.findall(_strip(expr))}


def substitute(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted Grafana variable in {expr!r}")
    return expr


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel."""
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]


def annotation_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, annotation name, expr) for every Prometheus annotation."""
    for path in DASHBOARDS:
        for annotation in load(path)["annotations"]["list"]:
            yield path.name, annotation["name"], annotation["expr"]


def variable_queries() -> Iterator[tuple[str, str, str, str]]:
    """(dashboard file, variable, metric selector, label) for each label_values() variable."""
    for path in DASHBOARDS:
        for var in load(path)["templating"]["list"]:
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = _LABEL_VALUES.match(query)
            if match is None:
                raise ValueError(
                    f"{path.name}: variable {var['name']} is not label_values(): {query}"
                )
            yield path.name, var["name"], match.group(1) + (match.group(2) or ""), match.group(3)
