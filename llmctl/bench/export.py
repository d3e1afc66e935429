"""Plain-text exports, no rich markup: a run as CSV; a comparison as Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from llmctl.bench.catalog import BY_FIELD, fmt
from llmctl.bench.compare import Comparison, ComparisonRow
from llmctl.bench.report import BenchReport, LevelNumbers, LevelReport, StreamReport
from llmctl.bench.strategies import MixStrategy


def level_row(level: LevelReport, stream: StreamReport | None = None) -> dict[str, Any]:
    """One flat CSV row: strategy fields, failure classes and server numbers as their own columns
    (the server series over time are left to the JSON: a row holds numbers, not lists); with
    `stream`, that stream of a mix level (its numbers, the level's name and no server)."""
    row: dict[str, Any] = {"level": level.label}
    if level.streams:
        row["stream"] = stream.name if stream else ""
    strategy = level.strategy.model_dump(exclude={"streams"})
    row.update(strategy)
    if stream is not None and isinstance(level.strategy, MixStrategy):
        spec = next((s for s in level.strategy.streams if s.name == stream.name), None)
        row["stream_class"] = spec.class_name if spec else None
        row["stream_load"] = spec.load.label if spec else None
    numbers: LevelNumbers = stream if stream is not None else level
    exclude = {"strategy", "failures", "error_samples", "server", "streams", "name"}
    row.update(numbers.model_dump(exclude=exclude))
    row.update({f"failures_{k}": v for k, v in numbers.failures.items()})
    if stream is None and level.server is not None:
        server = level.server.model_dump(exclude={"sources", "errors", "series"})
        row.update({f"server_{k}": v for k, v in server.items()})
    return row


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_csv(report: BenchReport) -> str:
    """A run, one row per level with every number as a column, and after a mix level one row per
    stream (its `stream` column set)."""
    rows = []
    for level in report.levels:
        rows.append(level_row(level))
        rows += [level_row(level, stream) for stream in level.streams]
    return _csv(rows)


def change_text(row: ComparisonRow) -> str:
    """'+12.5%', or '-' when there is no base to compare with."""
    pct = row.change_pct
    return "-" if pct is None else f"{pct:+.1f}%"


def number_text(row: ComparisonRow, side: float | None) -> str:
    return fmt(side, BY_FIELD[row.metric].digits)


def comparison_json(c: Comparison) -> str:
    """Every number whole, grouped by level."""
    levels = [
        {
            "level": level,
            "metrics": [
                {
                    "metric": r.metric,
                    "label": r.label,
                    "a": r.a,
                    "b": r.b,
                    "change_pct": r.change_pct,
                    "better": r.better,
                }
                for r in c.rows
                if r.level == level
            ],
        }
        for level in c.levels
    ]
    data = {
        "a": c.a_name,
        "b": c.b_name,
        "settings": [{"name": s.name, "a": s.a, "b": s.b} for s in c.settings],
        "levels": levels,
        "unmatched": c.unmatched,
    }
    return json.dumps(data, indent=2) + "\n"


def comparison_csv(c: Comparison) -> str:
    """One row per level and metric; the settings that differ are left to the other formats."""
    rows = [
        {
            "level": r.level,
            "metric": r.metric,
            "a": r.a,
            "b": r.b,
            "change_pct": r.change_pct,
            "verdict": r.verdict,
        }
        for r in c.rows
    ]
    return _csv(rows) if rows else "level,metric,a,b,change_pct,verdict\n"


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def comparison_markdown(c: Comparison) -> str:
    lines = [f"## {_md(c.a_name)} (A) vs {_md(c.b_name)} (B)", ""]
    if c.settings:
        lines += ["| setting | A | B |", "|---|---|---|"]
        lines += [f"| {_md(s.name)} | {_md(s.a)} | {_md(s.b)} |" for s in c.settings]
        lines.append("")
    else:
        lines += ["Same settings.", ""]
    lines += ["| level | metric | A | B | change | |", "|---|---|---:|---:|---:|---|"]
    previous = None
    for r in c.rows:
        level = r.level if r.level != previous else ""
        previous = r.level
        lines.append(
            f"| {level} | {r.label} | {number_text(r, r.a)} | {number_text(r, r.b)} "
            f"| {change_text(r)} | {r.verdict} |"
        )
    if c.unmatched:
        lines += ["", f"Levels only in one report: {', '.join(c.unmatched)}"]
    return "\n".join(lines) + "\n"


def render_comparison(c: Comparison, form: str) -> str:
    """`form` is md, csv or json (the rich table lives in `view`)."""
    printers = {"md": comparison_markdown, "csv": comparison_csv, "json": comparison_json}
    return printers[form](c)
