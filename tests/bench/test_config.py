"""SLO and duration parsing, and the one-stop-rule of a bench config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmctl.bench.config import BenchConfig, parse_duration_ms, parse_slo
from llmctl.bench.strategies import ConcurrentStrategy
from llmctl.core.errors import UsageError


def test_parse_slo_units_and_aliases() -> None:
    slo = parse_slo("ttft=2s, itl=100ms,e2e=1.5")
    assert (slo.ttft_ms, slo.itl_ms, slo.e2e_ms) == (2000.0, 100.0, 1500.0)
    assert parse_slo("tpot=50ms").itl_ms == 50.0
    assert parse_duration_ms("1m") == 60_000.0


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
