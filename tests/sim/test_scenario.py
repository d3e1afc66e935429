"""Scenario files and the conditions clock, as pure functions of virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.core.errors import ConfigError
from llmctl.sim.scenario import Conditions, ConditionsClock, load_scenario

TOML = """
[[events]]
at_s = 60
prompt_scale = 3
slowdown = 1.0

[[events]]
at_s = 30
slowdown = 2.0

[[events]]
at_s = 90
kv_fraction = 0.5
"""


def test_events_apply_in_time_order_and_keep_what_they_do_not_name(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(TOML)
    clock = ConditionsClock(load_scenario(path))
    assert clock.advance(0) == Conditions()
    assert clock.advance(29.9).slowdown == 1.0
    assert clock.advance(30).slowdown == 2.0
    at_60 = clock.advance(75)
    assert (at_60.slowdown, at_60.prompt_scale, at_60.kv_fraction) == (1.0, 3.0, 1.0)
    at_90 = clock.advance(1e6)
    assert (at_90.prompt_scale, at_90.kv_fraction) == (3.0, 0.5)
    assert clock.pending == []


def test_a_live_change_holds_until_an_event_names_the_same_field(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"events": [{"at_s": 10, "slowdown": 4}]}')
    clock = ConditionsClock(load_scenario(path))
    clock.set({"slowdown": 1.5, "output_scale": 2})
    assert clock.advance(5).slowdown == 1.5
    after = clock.advance(10)
    assert (after.slowdown, after.output_scale) == (4.0, 2.0)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"slowdown": 0}, "slowdown"),
        ({"slowdown": "2"}, "slowdown"),
        ({"kv_fraction": 1.5}, "kv_fraction"),
        ({"prompt_scale": 1e9}, "prompt_scale"),
        ({"output_scale": float("nan")}, "output_scale"),
        ({"speed": 2}, "speed"),
    ],
)
def test_a_bad_live_change_names_the_field_and_changes_nothing(
    changes: dict[str, object], named: str
) -> None:
    clock = ConditionsClock()
    with pytest.raises(ConfigError, match=named):
        clock.set(changes)
    assert clock.current == Conditions()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.toml", "[[events]]\nat_s = -1\n", "at_s"),
        ("b.toml", "[[events]]\nat_s = 1\nslowdwn = 2\n", "slowdwn"),
        ("c.toml", "[[events]\n", "not valid TOML"),
        ("d.json", "{", "not valid JSON"),
        ("e.json", '{"events": [{"at_s": 1, "kv_fraction": 0}]}', "kv_fraction"),
    ],
)
def test_a_bad_scenario_file_is_one_clear_error(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_scenario(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
