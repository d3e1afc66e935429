"""What a report holds, in order: a comparison per tool run more than once, then each run on its
own. The HTML page and the exported image files are both drawn from this one plan."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llmctl.report.chart import Figure
from llmctl.report.comparison import bench_overlay, tune_overlay
from llmctl.report.figures import bench_figures, tune_figures
from llmctl.report.model import BenchRun, Run, RunInfo, TuneRun
from llmctl.report.tables import (
    Table,
    bench_tables,
    differences_table,
    runs_table,
    side_by_side,
    tune_tables,
)


@dataclass(frozen=True)
class Section:
    key: str  # unique in the report: the HTML anchor and the exported files' prefix
    heading: str
    runs: tuple[RunInfo, ...]
    figures: tuple[Figure, ...]
    tables: tuple[Table, ...]
    summary: str = ""  # a sentence that matters most, e.g. the tuner's recommendation


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def _recommendation(run: TuneRun) -> str:
    if run.recommended is None:
        verdict = "No MAX_ACTIVE met the SLO"
    else:
        kept = "applied" if run.applied else "not applied"
        was = f"; it was {run.original_max_active}" if run.original_max_active is not None else ""
        verdict = f"Recommended MAX_ACTIVE = {run.recommended} ({kept}{was})"
    return f"{verdict}: {run.reason}" if run.reason else verdict


def _run_section(run: Run, key: str) -> Section:
    if isinstance(run, BenchRun):
        return Section(
            key,
            f"Bench run {run.info.name}",
            (run.info,),
            tuple(bench_figures(run)),
            tuple(bench_tables(run)),
        )
    return Section(
        key,
        f"Tune run {run.info.name}",
        (run.info,),
        tuple(tune_figures(run)),
        tuple(tune_tables(run)),
        _recommendation(run),
    )


def build_sections(runs: Sequence[Run]) -> list[Section]:
    """Comparisons first (bench, then tune) when a tool has several runs, then every run."""
    sections: list[Section] = []
    benches = [r for r in runs if isinstance(r, BenchRun)]
    tunes = [r for r in runs if isinstance(r, TuneRun)]
    if len(benches) > 1:
        sections.append(
            Section(
                "compare-bench",
                f"{len(benches)} bench runs compared",
                tuple(r.info for r in benches),
                tuple(bench_overlay(benches)),
                (runs_table(benches), differences_table(benches), side_by_side(benches)),
            )
        )
    if len(tunes) > 1:
        summary = " · ".join(
            f"{r.info.name}: {r.recommended if r.recommended is not None else 'none'}"
            for r in tunes
        )
        sections.append(
            Section(
                "compare-tune",
                f"{len(tunes)} tune runs compared",
                tuple(r.info for r in tunes),
                tuple(tune_overlay(tunes)),
                (runs_table(tunes), differences_table(tunes)),
                f"Recommended MAX_ACTIVE · {summary}",
            )
        )
    if len(runs) == 1:
        return [_run_section(runs[0], runs[0].info.tool)]
    taken = {s.key for s in sections}
    for run in runs:
        key = slug(run.info.name)
        while key in taken:
            key += "-x"
        taken.add(key)
        sections.append(_run_section(run, key))
    return sections
