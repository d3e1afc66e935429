"""Gauges over time in bounded memory: at most `capacity` points, spread evenly, no peak lost."""

from __future__ import annotations

import math

import pytest

from llmctl.bench.series import PeakSeries


def _filled(capacity: int, times: list[float], value: object) -> PeakSeries:
    series = PeakSeries(capacity)
    for t in times:
        series.add(t, {"running": value(t)} if callable(value) else {"running": float(t)})
    return series


@pytest.mark.parametrize(
    ("capacity", "times", "points"),
    [
        (5, [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]),  # room for all: the readings themselves
        (3, [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]),
        (3, [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),  # equal gaps: the earliest pair merges
        (3, [0.0, 0.1, 0.2, 5.0, 10.0], [0.2, 5.0, 10.0]),  # the dense start merges first
        (2, [0.0, 4.0, 5.0, 6.0], [0.0, 6.0]),
    ],
)
def test_points_stay_within_capacity_and_dense_stretches_merge_first(
    capacity: int, times: list[float], points: list[float]
) -> None:
    series = _filled(capacity, times, None)
    assert series.times() == points
    assert series.values("running") == points  # rising readings: a point's max is its last
    assert series.readings == len(times)


def test_a_long_level_keeps_every_peak_and_spreads_its_points_evenly() -> None:
    """An hour at bench's sampling (0.1 s apart at first, then up to 1 s) with one-sample spikes."""
    times, t = [], 0.0
    while t < 3600.0:
        times.append(t)
        t += min(1.0, max(0.1, t / 20))
    spikes = {times[30]: 50.0, times[2000]: 80.0, times[-2]: 65.0}
    series = _filled(300, times, lambda t: spikes.get(t, math.sin(t / 60) + 2))
    assert series.readings > 3600
    assert len(series) == 300
    values = series.values("running")
    for spike in spikes.values():
        assert spike in values  # a single reading survives every merge
    assert max(v for v in values if v is not None) == 80.0
    gaps = [b - a for a, b in zip(series.times(), series.times()[1:], strict=False)]
    assert max(gaps) < 2.5 * 3600 / 300  # about evenly spread: no stretch left coarse
    assert series.times()[-1] == times[-1]  # the last point is the last reading


def test_a_gauge_missing_from_a_reading_is_none_there_and_merges_with_its_neighbours() -> None:
    series = PeakSeries(3)
    series.add(0.0, {"running": 1.0, "queue": 0.0})
    series.add(1.0, {"running": 2.0})  # the gateway's page failed this time
    series.add(2.0, {"running": 0.0, "queue": 3.0})
    assert series.names == ["running", "queue"]
    assert series.values("queue") == [0.0, None, 3.0]
    series.add(3.0, {"running": 5.0})
    assert series.times() == [1.0, 2.0, 3.0]
    assert series.values("running") == [2.0, 0.0, 5.0]
    assert series.values("queue") == [0.0, 3.0, None]
    assert series.values("kv") == [None, None, None]  # never read


def test_a_series_needs_room_for_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        PeakSeries(1)
