"""The routing policies and the affinity index as pure functions: a table of cases."""

from __future__ import annotations

import pytest

from llmctl.gateway.affinity import CHUNK_CHARS, AffinityIndex, chain, prompt_text
from llmctl.gateway.routing import EngineLoad, choose

A = EngineLoad("a", active=3, limit=4)
B = EngineLoad("b", active=1, limit=4)
C = EngineLoad("c", active=1, limit=4, waiting=2.0)  # queues inside the engine
D = EngineLoad("d", active=0, limit=4, kv_usage=0.9)
IDLE = [EngineLoad(name, active=0, limit=4) for name in ("x", "y", "z")]


@pytest.mark.parametrize(
    ("policy", "candidates", "kw", "expected"),
    [
        ("round_robin", [A, B, C], {"turn": 0}, ("a", "round_robin")),
        ("round_robin", [A, B, C], {"turn": 4}, ("b", "round_robin")),
        ("least_loaded", [A, B], {}, ("b", "least_loaded")),
        ("least_loaded", [B, C], {}, ("b", "least_loaded")),  # engine-side waiting counts
        ("least_loaded", [B, D], {}, ("b", "least_loaded")),  # 0.25 < 0 + 0.45 (KV)
        (
            "prefix_affinity",
            [A, B],
            {"preferred": "a", "slack": 0.25},
            ("b", "affinity_overloaded"),
        ),
        ("prefix_affinity", [A, B], {"preferred": "a", "slack": 0.6}, ("a", "affinity")),
        ("prefix_affinity", [A, B], {"preferred": "gone"}, ("b", "affinity_overloaded")),
        ("prefix_affinity", [A, B], {}, ("b", "least_loaded")),
        # Ties go in turn: an idle pool spreads new work (and new prefixes) over every engine.
        ("least_loaded", IDLE, {"turn": 0}, ("x", "least_loaded")),
        ("least_loaded", IDLE, {"turn": 4}, ("y", "least_loaded")),
        # Bounded loads: 1 in flight of 4 engines allows ceil(1.25 x 2/4) = 1 each, so b (1)
        # may take no second one however generous the slack; with 6 in flight, 3 each.
        (
            "prefix_affinity",
            [B, *IDLE],
            {"preferred": "b", "slack": 1.0, "total_active": 1, "engines": 4},
            ("x", "affinity_overloaded"),
        ),
        (
            "prefix_affinity",
            [B, *IDLE],
            {"preferred": "b", "slack": 1.0, "total_active": 6, "engines": 4},
            ("b", "affinity"),
        ),
    ],
)
def test_choose(
    policy: str, candidates: list[EngineLoad], kw: dict[str, object], expected: tuple[str, str]
) -> None:
    choice = choose(policy, candidates, **kw)  # type: ignore[arg-type]
    assert (choice.engine, choice.reason) == expected


def test_choose_needs_a_candidate() -> None:
    with pytest.raises(ValueError, match="candidate"):
        choose("least_loaded", [])


def test_the_index_finds_the_longest_prefix_and_pins_sessions() -> None:
    index = AffinityIndex()
    system = "s" * (2 * CHUNK_CHARS)
    first = chain(system + "one" * CHUNK_CHARS)
    other = chain(system + "two" * CHUNK_CHARS)
    index.record(first, "e1")
    assert index.lookup(first) == "e1"
    assert index.lookup(other) == "e1"  # the shared system prompt
    index.record(other, "e2")
    assert index.lookup(other) == "e2"
    assert index.lookup(chain("short")) is None  # under one chunk: nothing to match
    index.record([], "e3", session="s1")
    assert index.lookup(first, "s1") == "e3"
    index.forget("e3")
    assert index.lookup(first, "s1") == "e1"


def test_the_index_is_bounded() -> None:
    index = AffinityIndex(capacity=10)
    for i in range(50):
        index.record(chain(f"{i:04d}" * CHUNK_CHARS), "e")
    assert len(index) <= 10


def test_prompt_text_of_chat_and_completions() -> None:
    body = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}
    assert prompt_text(body, "messages") == "system: S\nuser: U"
    assert prompt_text({"prompt": "P"}, "prompt") == "P"
