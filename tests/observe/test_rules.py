"""The alert and recording rules: promtool accepts them and their unit tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmctl.core import metrics as m
from llmctl.core.config import AlertThresholds
from llmctl.observe import queries
from tests.observe.conftest import render_rules
from tests.observe.promql import metric_names
from tests.support import REPO

HERE = Path(__file__).parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian prometheus)"
)

ALERTS = {
    "LlmctlGatewayDown",
    "LlmctlEngineDown",
    "LlmctlTargetDown",
    "LlmctlEngineNotReady",
    "LlmctlQueueNearFull",
    "LlmctlHighRejectionRate",
    "LlmctlLatencyAboveSLO",
    "LlmctlTTFTAboveSLO",
    "LlmctlKVCacheNearFull",
    "LlmctlPreemptionsRising",
    "LlmctlGpuMemoryNearFull",
    "LlmctlGpuTooHot",
}


def _rules(rules_dir: Path, name: str) -> list[dict[str, str]]:
    data = yaml.safe_load((rules_dir / f"{name}.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_every_alert_the_issue_asks_for_is_defined(rules_dir: Path) -> None:
    assert {r["alert"] for r in _rules(rules_dir, "alerts")} == ALERTS


def test_recording_rules_are_the_names_in_core_metrics(rules_dir: Path) -> None:
    assert {r["record"] for r in _rules(rules_dir, "recording")} == m.recording_rules()


def test_every_recording_rule_is_read_by_top_a_dashboard_or_an_alert(rules_dir: Path) -> None:
    readers = [*queries.all_queries(), (rules_dir / "alerts.yml").read_text()]
    readers += [p.read_text() for p in (REPO / "dashboards").glob("*.json")]
    text = "\n".join(readers)
    unread = {name for name in m.recording_rules() if name not in text}
    assert not unread, f"evaluated but never read: {sorted(unread)}"


def test_rules_use_only_known_series(rules_dir: Path) -> None:
    known = m.known_series() | m.recording_rules() | {"up"}
    for name in ("alerts", "recording"):
        for rule in _rules(rules_dir, name):
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"


def test_thresholds_come_from_the_stack_config(tmp_path: Path) -> None:
    custom = AlertThresholds(slo_p95_e2e_s=7.5, gpu_temp_c=70, for_duration="30s")
    render_rules(tmp_path, custom)
    rules = {r["alert"]: r for r in _rules(tmp_path, "alerts")}
    assert rules["LlmctlLatencyAboveSLO"]["expr"].endswith("> 7.5")
    assert rules["LlmctlGpuTooHot"]["expr"].endswith(">= 70.0")
    assert rules["LlmctlQueueNearFull"]["for"] == "30s"


@needs_promtool
def test_promtool_checks_the_rendered_rules(rules_dir: Path) -> None:
    files = [str(rules_dir / "alerts.yml"), str(rules_dir / "recording.yml")]
    result = subprocess.run(
        [PROMTOOL or "", "check", "rules", *files], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", sorted(p.name for p in (HERE / "rules").glob("*_test.yml")))
def test_promtool_unit_tests(rules_dir: Path, tmp_path: Path, test_file: str) -> None:
    for path in rules_dir.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(HERE / "rules" / test_file, tmp_path / test_file)
    result = subprocess.run(
        [PROMTOOL or "", "test", "rules", test_file], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
