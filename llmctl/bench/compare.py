"""Compare two bench reports: the settings that differ, and the headline numbers level by level with
their change (pure; `view` and `export` print it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmctl.bench.catalog import BY_FIELD, HEADLINE, fmt
from llmctl.bench.report import BenchReport, LevelNumbers, LevelReport
from llmctl.core.slo import format_duration

# Changes smaller than this print as +0.0% or -0.0% and get no verdict.
_SAME_PCT = 0.05


@dataclass(frozen=True)
class SettingChange:
    """One setting that differs between the runs, both sides as text ('-' where unset)."""

    name: str
    a: str
    b: str


@dataclass(frozen=True)
class ComparisonRow:
    level: str
    metric: str  # the JSON field, e.g. median_ttft_ms
    a: float | None
    b: float | None

    @property
    def label(self) -> str:
        return BY_FIELD[self.metric].label

    @property
    def change_pct(self) -> float | None:
        """(B - A) / A in percent; None when either is missing or A is 0."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / abs(self.a) * 100.0

    @property
    def better(self) -> bool | None:
        """Whether B is better than A (None: equal, not comparable, or neither direction)."""
        higher = BY_FIELD[self.metric].higher_is_better
        if self.a is None or self.b is None or self.a == self.b or higher is None:
            return None
        pct = self.change_pct
        if pct is not None and abs(pct) < _SAME_PCT:
            return None  # printed as +0.0%: calling it better or worse would be noise
        return (self.b > self.a) == higher

    @property
    def verdict(self) -> str:
        return {True: "better", False: "worse", None: ""}[self.better]


@dataclass(frozen=True)
class Comparison:
    a_name: str
    b_name: str
    settings: list[SettingChange]
    rows: list[ComparisonRow]
    unmatched: list[str]

    @property
    def levels(self) -> list[str]:
        """Level names in order, each once (rows are grouped by level)."""
        return list(dict.fromkeys(row.level for row in self.rows))


def run_name(report: BenchReport, fallback: str) -> str:
    """How a run is called: its --label, else the file it came from."""
    return report.label or fallback


def _settings(report: BenchReport) -> dict[str, Any]:
    """The settings a person would want to see change, as name -> value."""
    config, limits = report.config, report.limits
    prompts = config.prompts
    out: dict[str, Any] = {
        "target": report.target,
        "model": report.model,
        "label": report.label,
        "MAX_ACTIVE": limits.max_active if limits else None,
        "queue mode": limits.queue_mode if limits else None,
        "queue max": limits.queue_max if limits else None,
        "queue timeout": format_duration(limits.queue_timeout_s)
        if limits and limits.queue_timeout_s is not None
        else None,
        "levels": ", ".join(level.label for level in config.levels),
        "duration (s)": config.duration_s,
        "requests per level": config.requests,
        "warmup (s)": config.warmup_s,
        "endpoint": prompts.endpoint,
        "input len": prompts.input_len,
        "input spread": prompts.input_spread,
        "output len": prompts.output_len,
        "ignore eos": prompts.ignore_eos,
        "dataset": prompts.dataset,
        "SLO": config.slo.text(),
        "seed": config.seed,
        "llmctl": report.llmctl_version,
    }
    out.update({f"metadata {k}": v for k, v in report.metadata.items()})
    return out


def _text(value: Any) -> str:
    return fmt(value, None) if isinstance(value, int | float | None) else str(value)


def setting_changes(a: BenchReport, b: BenchReport) -> list[SettingChange]:
    sa, sb = _settings(a), _settings(b)
    names = list(dict.fromkeys([*sa, *sb]))
    return [
        SettingChange(name, _text(sa.get(name)), _text(sb.get(name)))
        for name in names
        if sa.get(name) != sb.get(name)
    ]


def _key(level: LevelReport) -> str:
    return level.strategy.model_dump_json()


def _rows(name: str, a: LevelNumbers, b: LevelNumbers) -> list[ComparisonRow]:
    rows = []
    for metric in HEADLINE:
        va, vb = getattr(a, metric), getattr(b, metric)
        if va is None and vb is None:
            continue
        rows.append(
            ComparisonRow(
                name, metric, None if va is None else float(va), None if vb is None else float(vb)
            )
        )
    return rows


def compare_reports(
    a: BenchReport, b: BenchReport, a_name: str = "A", b_name: str = "B"
) -> Comparison:
    """Pair levels with the same strategy (else by position) and compare the headline numbers."""
    b_by_key = {_key(level): level for level in b.levels}
    pairs: list[tuple[LevelReport, LevelReport]] = []
    if all(_key(level) in b_by_key for level in a.levels):
        pairs = [(level, b_by_key[_key(level)]) for level in a.levels]
    else:
        pairs = list(zip(a.levels, b.levels, strict=False))
    rows: list[ComparisonRow] = []
    for la, lb in pairs:
        name = la.label if la.label == lb.label else f"{la.label} / {lb.label}"
        rows += _rows(name, la, lb)
        # A mix level's streams are compared by name, after their level.
        b_streams = {s.name: s for s in lb.streams}
        for sa in la.streams:
            sb = b_streams.get(sa.name)
            if sb is not None:
                rows += _rows(f"{name} / {sa.name}", sa, sb)
    paired_a = {id(la) for la, _ in pairs}
    paired_b = {id(lb) for _, lb in pairs}
    unmatched = [lv.label for lv in a.levels if id(lv) not in paired_a] + [
        lv.label for lv in b.levels if id(lv) not in paired_b
    ]
    names = run_name(a, a_name), run_name(b, b_name)
    if names[0] == names[1]:  # two runs with one label: the files tell them apart
        names = a_name, b_name
    return Comparison(*names, setting_changes(a, b), rows, unmatched)
