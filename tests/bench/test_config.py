"""SLO and duration parsing, and the one-stop-rule of a bench config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmctl.bench.config import BenchConfig
from llmctl.bench.prompts import load_dataset
from llmctl.bench.strategies import ConcurrentStrategy
from llmctl.core.errors import UsageError
from llmctl.core.slo import parse_duration_s, parse_slo


def test_parse_slo_units_and_aliases() -> None:
    slo = parse_slo("ttft=2s, itl=100ms,e2e=1.5")
    assert (slo.ttft_s, slo.itl_s, slo.e2e_s) == (2.0, 0.1, 1.5)
    assert parse_slo("tpot=50ms").itl_s == 0.05
    assert parse_duration_s("1m") == 60.0
    assert slo.text() == "ttft=2s,itl=100ms,e2e=1.5s"


@pytest.mark.parametrize("text", ["ttft", "foo=1s", "ttft=fast", "ttft=0s", "itl=-1ms"])
def test_bad_slo_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_slo(text)


def test_config_needs_exactly_one_stop_rule() -> None:
    levels = [ConcurrentStrategy(concurrency=1)]
    with pytest.raises(ValidationError, match="duration or a request count"):
        BenchConfig(target="http://x", levels=levels)
    with pytest.raises(ValidationError, match="not both"):
        BenchConfig(target="http://x", levels=levels, duration_s=1, requests=1)
    assert BenchConfig(target="http://x", levels=levels, requests=3).requests == 3


def test_dataset_lines_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}]}\n{"prompt": "no messages"}\n')
    with pytest.raises(
        UsageError, match=r"bad\.jsonl:2: expected a request object with 'messages'"
    ):
        load_dataset(bad)
    with pytest.raises(UsageError, match=r"bad\.jsonl:1"):
        load_dataset(bad, "prompt")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(UsageError, match="not JSON"):
        load_dataset(broken)
    with pytest.raises(UsageError, match="cannot read"):
        load_dataset(tmp_path / "missing.jsonl")
