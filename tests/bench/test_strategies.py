"""Arrival-time generators: mean rate and burstiness, checked statistically with fixed seeds."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from llmctl.bench.strategies import arrival_gaps, planned_offsets


def _gaps(
    rate: float, arrival: str, burstiness: float = 1.0, seed: int = 7, n: int = 20_000
) -> list[float]:
    return list(itertools.islice(arrival_gaps(rate, arrival, burstiness, seed), n))  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [2.0, 50.0, 500.0])
def test_poisson_has_the_mean_rate_and_cv_one(rate: float) -> None:
    gaps = _gaps(rate, "poisson")
    mean = statistics.fmean(gaps)
    cv = statistics.pstdev(gaps) / mean
    # 20k samples: the standard error of the mean is 1/sqrt(20000) = 0.7 %, of the CV about 1 %.
    assert 1 / mean == pytest.approx(rate, rel=0.03)
    assert cv == pytest.approx(1.0, abs=0.04)


def test_poisson_counts_per_window_are_poisson() -> None:
    """Counts in unit windows have variance equal to their mean (index of dispersion 1)."""
    rate = 20.0
    offsets = list(
        itertools.takewhile(lambda t: t < 2000, planned_offsets(rate, "poisson", seed=3))
    )
    counts = [0] * 2000
    for t in offsets:
        counts[int(t)] += 1
    mean = statistics.fmean(counts)
    assert mean == pytest.approx(rate, rel=0.03)
    assert statistics.pvariance(counts) / mean == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_sets_cv(burstiness: float) -> None:
    gaps = _gaps(10.0, "gamma", burstiness)
    mean = statistics.fmean(gaps)
    assert 1 / mean == pytest.approx(10.0, rel=0.04)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1 / math.sqrt(burstiness), rel=0.06)


def test_constant_is_exact_and_seeds_reproduce() -> None:
    assert set(_gaps(4.0, "constant", n=100)) == {0.25}
    assert _gaps(5.0, "poisson", seed=1, n=50) == _gaps(5.0, "poisson", seed=1, n=50)
    assert _gaps(5.0, "poisson", seed=1, n=50) != _gaps(5.0, "poisson", seed=2, n=50)
    first = list(itertools.islice(planned_offsets(5.0, "poisson", seed=1), 3))
    assert first[0] == 0.0
    assert first[1] < first[2]


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        next(arrival_gaps(0.0, "poisson"))
