"""The search policies against model systems whose knee and SLO limit are known exactly."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from llmctl.tune.search import (
    GridSweep,
    GrowBisect,
    SearchPolicy,
    TrialOutcome,
    recommend,
)

Model = Callable[[int], TrialOutcome]


def saturating(knee: int, slo_limit: int | None = None, per_slot: float = 100.0) -> Model:
    """Throughput grows linearly up to `knee` slots, then stays flat; values above `slo_limit` fail."""

    def measure(value: int) -> TrialOutcome:
        passed = slo_limit is None or value <= slo_limit
        return TrialOutcome(value, per_slot * min(value, knee), passed)

    return measure


def drive(policy: SearchPolicy, model: Model, limit: int = 64) -> list[TrialOutcome]:
    """Run the policy to the end against `model`, like the runner does against a live stack."""
    outcomes: list[TrialOutcome] = []
    while (value := policy.next_candidate()) is not None:
        assert len(outcomes) < limit, "the policy does not terminate"
        assert value not in {o.max_active for o in outcomes}, f"{value} proposed twice"
        outcome = model(value)
        policy.record(outcome)
        outcomes.append(outcome)
    return outcomes


def test_knee_of_eight_found_exactly_in_at_most_eight_trials() -> None:
    outcomes = drive(GrowBisect(1, 256), saturating(8))
    assert recommend(outcomes).max_active == 8
    assert len(outcomes) <= 8
    # It grew by doubling first: 1, 2, 4, 8, 16 (flat), then searched between 4 and 8.
    assert [o.max_active for o in outcomes[:5]] == [1, 2, 4, 8, 16]
    assert all(4 < o.max_active < 8 for o in outcomes[5:])


@pytest.mark.parametrize("knee", [1, 2, 3, 5, 6, 7, 8, 9, 12, 13, 16, 24])
def test_small_knees_are_found_within_one(knee: int) -> None:
    outcomes = drive(GrowBisect(1, 256), saturating(knee))
    choice = recommend(outcomes)
    # Within 5 % of the plateau counts as on it, so 24 may come out as 23.
    assert choice.max_active is not None
    assert abs(choice.max_active - knee) <= 1
    assert choice.basis == "flat"
    assert len(outcomes) <= 10


@pytest.mark.parametrize("knee", [40, 100, 120])
def test_large_knees_are_found_within_the_resolution(knee: int) -> None:
    outcomes = drive(GrowBisect(1, 256), saturating(knee))
    value = recommend(outcomes).max_active
    assert value is not None
    assert abs(value - knee) <= max(1, 0.1 * knee)
    assert len(outcomes) <= 16


@pytest.mark.parametrize(("knee", "limit"), [(64, 12), (64, 5), (20, 17), (256, 10)])
def test_slo_limit_below_the_knee_gives_the_highest_passing_value(knee: int, limit: int) -> None:
    outcomes = drive(GrowBisect(1, 256), saturating(knee, slo_limit=limit))
    choice = recommend(outcomes)
    assert choice.max_active == limit
    assert choice.basis == "slo"
    assert choice.first_fail == limit + 1
    assert len(outcomes) <= 10


def test_a_high_slo_limit_is_found_within_the_resolution() -> None:
    outcomes = drive(GrowBisect(1, 256), saturating(100, slo_limit=75))
    choice = recommend(outcomes)
    assert choice.max_active is not None
    assert 75 - 7 <= choice.max_active <= 75
    assert choice.basis == "slo"
    assert len(outcomes) <= 12


def test_still_rising_at_the_top_recommends_the_top() -> None:
    # The knee (200) lies between the last two values tried; with nothing above the top, the
    # policy cannot tell the plateau from a slope and says so.
    outcomes = drive(GrowBisect(1, 256), saturating(200))
    choice = recommend(outcomes)
    assert (choice.max_active, choice.basis) == (256, "top")


def test_slo_limit_above_the_knee_recommends_the_knee() -> None:
    # 8 slots saturate the engine; latency holds up to 13; throughput is flat in between.
    outcomes = drive(GrowBisect(1, 256), saturating(8, slo_limit=13))
    choice = recommend(outcomes)
    assert choice.max_active == 8
    assert choice.basis == "flat"
    assert choice.first_fail is not None
    assert choice.first_fail > 13
    assert len(outcomes) <= 8


def test_a_failing_value_that_adds_nothing_turns_the_search_to_the_knee() -> None:
    # 16 breaks the SLO, but it also adds no throughput over 8: where exactly between 8 and 16
    # the SLO breaks does not matter, the knee below 8 does.
    outcomes = drive(GrowBisect(1, 256), saturating(8, slo_limit=8))
    assert [o.max_active for o in outcomes][:5] == [1, 2, 4, 8, 16]
    assert all(o.max_active < 8 for o in outcomes[5:])
    choice = recommend(outcomes)
    assert (choice.max_active, choice.basis, choice.first_fail) == (8, "flat", 16)
    assert len(outcomes) <= 7


def test_nothing_passes_stops_after_one_trial() -> None:
    outcomes = drive(GrowBisect(1, 256), saturating(8, slo_limit=0))
    assert [o.max_active for o in outcomes] == [1]
    choice = recommend(outcomes)
    assert (choice.max_active, choice.basis, choice.first_fail) == (None, "none", 1)


def test_still_rising_at_the_top_of_the_range() -> None:
    outcomes = drive(GrowBisect(1, 20), saturating(1000))
    assert [o.max_active for o in outcomes] == [1, 2, 4, 8, 16, 20]
    choice = recommend(outcomes)
    assert (choice.max_active, choice.basis) == (20, "top")


def test_growth_starts_at_the_minimum() -> None:
    outcomes = drive(GrowBisect(3, 256), saturating(10))
    assert [o.max_active for o in outcomes[:4]] == [3, 6, 12, 24]
    assert recommend(outcomes).max_active in (9, 10, 11)


def test_flat_from_the_minimum_recommends_the_minimum() -> None:
    outcomes = drive(GrowBisect(4, 256), saturating(2))
    assert [o.max_active for o in outcomes] == [4, 8]
    assert recommend(outcomes).max_active == 4


def test_max_trials_caps_the_search() -> None:
    outcomes = drive(GrowBisect(1, 256, max_trials=3), saturating(100))
    assert len(outcomes) == 3


@pytest.mark.parametrize("seed", range(8))
def test_noise_of_two_percent_keeps_the_knee_within_one(seed: int) -> None:
    rng = random.Random(seed)
    exact = saturating(8)

    def noisy(value: int) -> TrialOutcome:
        o = exact(value)
        return TrialOutcome(value, o.throughput * rng.uniform(0.98, 1.02), o.passed)

    outcomes = drive(GrowBisect(1, 256), noisy)
    value = recommend(outcomes).max_active
    assert value is not None
    assert abs(value - 8) <= 1
    assert len(outcomes) <= 8


def test_a_limit_at_the_batch_size_a_few_percent_short_of_the_plateau() -> None:
    # A gateway limit equal to the engine's batch size loses a few percent to slot hand-over
    # (the next request reaches the engine a step late); one more slot reaches the plateau.
    def handoff(value: int) -> TrialOutcome:
        return TrialOutcome(value, 100.0 * min(value, 8) * (0.945 if value == 8 else 1.0), True)

    outcomes = drive(GrowBisect(1, 256), handoff)
    assert recommend(outcomes).max_active == 9
    assert len(outcomes) <= 7


@pytest.mark.parametrize("knee", [8, 12, 40, 100])
def test_concave_throughput_still_converges(knee: int) -> None:
    # Throughput rising as the square root of the limit: the proportional estimate overshoots
    # every time, and the bisection steps keep the search short.
    def concave(value: int) -> TrialOutcome:
        return TrialOutcome(value, 1000.0 * min(1.0, value / knee) ** 0.5, True)

    outcomes = drive(GrowBisect(1, 256), concave)
    value = recommend(outcomes).max_active
    assert value is not None
    # On a square-root curve "within 5 % of the plateau" starts at knee / 1.05**2.
    assert knee / 1.05**2 - max(1, 0.1 * knee) <= value <= knee
    assert len(outcomes) <= 14


def test_throughput_falling_past_the_knee_counts_as_flat() -> None:
    # Preemptions make 16 slower than 8.
    def thrashing(value: int) -> TrialOutcome:
        return TrialOutcome(
            value, 100.0 * min(value, 8) - (40.0 * (value - 8) if value > 8 else 0), True
        )

    outcomes = drive(GrowBisect(1, 256), thrashing)
    assert recommend(outcomes).max_active == 8


def test_grid_sweep_tries_every_step_and_the_top() -> None:
    outcomes = drive(GridSweep(2, 11, step=3), saturating(5))
    assert [o.max_active for o in outcomes] == [2, 5, 8, 11]
    assert recommend(outcomes).max_active == 5


def test_grid_sweep_exhaustive_finds_the_exact_slo_limit() -> None:
    outcomes = drive(GridSweep(1, 16), saturating(64, slo_limit=11))
    assert len(outcomes) == 16
    choice = recommend(outcomes)
    assert (choice.max_active, choice.first_fail) == (11, 12)


def test_recommend_prefers_the_smallest_value_on_the_plateau() -> None:
    outcomes = [
        TrialOutcome(4, 400.0, True),
        TrialOutcome(8, 790.0, True),
        TrialOutcome(16, 800.0, True),
        TrialOutcome(32, 810.0, False),
    ]
    choice = recommend(outcomes)
    # 32 breaks the SLO, and adds under 5 % too: flat up to 32.
    assert (choice.max_active, choice.basis, choice.flat_from, choice.first_fail) == (
        8,
        "flat",
        32,
        32,
    )


@pytest.mark.parametrize(("low", "high"), [(0, 4), (5, 4)])
def test_bad_ranges_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="min"):
        GrowBisect(low, high)
    with pytest.raises(ValueError, match="min"):
        GridSweep(low, high)
