"""Every `reason` label value that top, the dashboards, the rules and the gateway use is one of
core.metrics.REASONS, so renaming an outcome breaks a test instead of silently emptying a panel."""

from __future__ import annotations

import re
from pathlib import Path

from llmctl.core import metrics as m
from llmctl.observe import queries
from tests.support import REPO

# reason="ok", reason!="ok", reason=~"a|b", reason!~"a|b"
_MATCHER = re.compile(r'\breason\s*(?:=~|!~|!=|=)\s*\\?"([^"\\]*)\\?"')
# The gateway sets a request's reason in these calls; the last string argument is the reason.
_GATEWAY_SETS = re.compile(
    r'(?:outcome\.set\([^,()]+,\s*|AdmissionRefusedError\(\s*|\.reason or\s+)"([a-z_]+)"'
)


def _values(text: str) -> set[str]:
    return {part for found in _MATCHER.findall(text) for part in found.split("|") if part}


def test_dashboards_rules_and_top_use_only_known_reasons(rules_dir: Path) -> None:
    texts = {str(p): p.read_text() for p in sorted((REPO / "dashboards").glob("*.json"))}
    texts.update({str(p): p.read_text() for p in sorted(rules_dir.glob("*.yml"))})
    texts["observe/queries.py"] = "\n".join(queries.all_queries())
    used: set[str] = set()
    for where, text in texts.items():
        unknown = _values(text) - set(m.REASONS)
        assert not unknown, (where, unknown)
        used |= _values(text)
    assert m.REASON_OK in used  # the scan found the matchers (it cannot pass by matching nothing)


def test_the_matcher_scan_sees_every_form() -> None:
    assert _values('x{reason="ok"} y{reason!~"queue_full|rejected"}') == {
        "ok",
        "queue_full",
        "rejected",
    }
    assert _values(r"{\"expr\": \"rate(x{reason!=\"nope\"}[1m])\"}") == {"nope"}


def test_the_gateway_counts_only_known_reasons() -> None:
    source = "\n".join(p.read_text() for p in sorted((REPO / "llmctl" / "gateway").glob("*.py")))
    reasons = set(_GATEWAY_SETS.findall(source))
    # If the gateway comes to take its reasons from core, this scan finds fewer literals: fine,
    # but it must still see the calls it is meant to check.
    assert {"ok", "queue_full", "unauthorized"} <= reasons
    assert reasons <= set(m.REASONS), reasons - set(m.REASONS)
