"""Sampled gauges over time in bounded memory: each point the highest reading since the previous one.

A level is sampled about 20 times in its first two seconds and then every `sample_interval_s`, so
an hour-long level would keep thousands of readings. `PeakSeries` holds at most `capacity` points:
when one more arrives it merges the two neighbours that together span the least time, keeping the
higher reading of each gauge. The points therefore spread evenly over the level as it grows, and
no peak is lost: the highest point of a series is always the highest reading, however long the
level ran. This is Prometheus' `max_over_time` over the gaps between the points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class _Bucket:
    first_t: float  # the time of its earliest reading
    last_t: float  # the time of its latest reading: where the point is drawn
    values: dict[str, float]  # gauge -> the highest reading; a gauge never read here is absent


def _merged(a: _Bucket, b: _Bucket) -> _Bucket:
    values = dict(a.values)
    for name, value in b.values.items():
        values[name] = max(values[name], value) if name in values else value
    return _Bucket(a.first_t, b.last_t, values)


class PeakSeries:
    """Readings of several gauges at shared times, kept to at most `capacity` points."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("a series needs room for at least 2 points")
        self.capacity = capacity
        self.readings = 0  # how many were added, before any merging
        self._buckets: list[_Bucket] = []

    def __len__(self) -> int:
        return len(self._buckets)

    def add(self, t: float, values: Mapping[str, float]) -> None:
        """One reading at time `t` (not before the previous one); `values` may miss a gauge."""
        self.readings += 1
        self._buckets.append(_Bucket(t, t, dict(values)))
        if len(self._buckets) > self.capacity:
            buckets = self._buckets
            i = min(
                range(len(buckets) - 1),
                key=lambda j: buckets[j + 1].last_t - buckets[j].first_t,
            )
            buckets[i : i + 2] = [_merged(buckets[i], buckets[i + 1])]

    @property
    def names(self) -> list[str]:
        """The gauges read at least once, in the order they were first seen."""
        seen: dict[str, None] = {}
        for bucket in self._buckets:
            seen.update(dict.fromkeys(bucket.values))
        return list(seen)

    def times(self) -> list[float]:
        return [bucket.last_t for bucket in self._buckets]

    def values(self, name: str) -> list[float | None]:
        """The gauge's point at each time; None where no reading of it fell (its endpoint failed)."""
        return [bucket.values.get(name) for bucket in self._buckets]
