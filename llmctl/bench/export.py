"""Plain-text exports, no rich markup: a run as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from llmctl.bench.report import BenchReport, LevelReport


def level_row(level: LevelReport) -> dict[str, Any]:
    """One flat CSV row: strategy fields, failure classes and server numbers as their own columns."""
    row: dict[str, Any] = {"level": level.label}
    row.update(level.strategy.model_dump())
    data = level.model_dump(exclude={"strategy", "failures", "error_samples", "server"})
    row.update(data)
    row.update({f"failures_{k}": v for k, v in level.failures.items()})
    if level.server is not None:
        server = level.server.model_dump(exclude={"sources", "errors"})
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
    """A run, one row per level with every number as a column."""
    return _csv([level_row(level) for level in report.levels])
