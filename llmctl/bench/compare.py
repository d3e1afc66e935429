"""Compare two bench reports level by level: the key numbers side by side and their ratio."""

from __future__ import annotations

from dataclasses import dataclass

from llmctl.bench.report import BenchReport, LevelReport

# (field, True when higher is better)
KEY_METRICS: tuple[tuple[str, bool], ...] = (
    ("request_throughput", True),
    ("output_throughput", True),
    ("request_goodput", True),
    ("median_ttft_ms", False),
    ("p99_ttft_ms", False),
    ("median_itl_ms", False),
    ("p99_itl_ms", False),
    ("median_tpot_ms", False),
    ("p99_e2el_ms", False),
    ("failed", False),
)


@dataclass(frozen=True)
class ComparisonRow:
    level: str
    metric: str
    a: float | None
    b: float | None

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a

    @property
    def better(self) -> bool | None:
        """Whether B is better than A (None: equal or not comparable)."""
        if self.a is None or self.b is None or self.a == self.b:
            return None
        higher = dict(KEY_METRICS)[self.metric]
        return (self.b > self.a) == higher


@dataclass(frozen=True)
class Comparison:
    a_name: str
    b_name: str
    rows: list[ComparisonRow]
    unmatched: list[str]


def _key(level: LevelReport) -> str:
    return level.strategy.model_dump_json()


def compare_reports(
    a: BenchReport, b: BenchReport, a_name: str = "A", b_name: str = "B"
) -> Comparison:
    """Pair levels with the same strategy (else by position) and compare the key metrics."""
    b_by_key = {_key(level): level for level in b.levels}
    pairs: list[tuple[LevelReport, LevelReport]] = []
    if all(_key(level) in b_by_key for level in a.levels):
        pairs = [(level, b_by_key[_key(level)]) for level in a.levels]
    else:
        pairs = list(zip(a.levels, b.levels, strict=False))
    rows: list[ComparisonRow] = []
    for la, lb in pairs:
        name = la.label if la.label == lb.label else f"{la.label} / {lb.label}"
        for metric, _ in KEY_METRICS:
            va, vb = getattr(la, metric), getattr(lb, metric)
            if va is None and vb is None:
                continue
            rows.append(
                ComparisonRow(
                    name,
                    metric,
                    None if va is None else float(va),
                    None if vb is None else float(vb),
                )
            )
    paired = len(pairs)
    unmatched = [lv.label for lv in a.levels[paired:]] + [lv.label for lv in b.levels[paired:]]
    return Comparison(a_name, b_name, rows, unmatched)
