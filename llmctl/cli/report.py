"""`llmctl report`: bench and tune results as one HTML page to share, and their figures as images."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from llmctl import __version__
from llmctl.cli.console import console
from llmctl.cli.options import check_output, write_output
from llmctl.report.export import ImageFormat, figure_files, write_files
from llmctl.report.html import render_html
from llmctl.report.load import load_runs
from llmctl.report.sections import build_sections


def report(
    files: list[Path] = typer.Argument(
        ..., help="Results written by `llmctl bench --json` or `llmctl tune max-active --json`."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="The HTML file to write.",
        show_default="report.html, unless --figures",
    ),
    figures: Path | None = typer.Option(
        None, "--figures", help="Also write every figure as an image file into this folder."
    ),
    figure_format: ImageFormat = typer.Option("svg", "--figure-format", help="Image format."),
    title: str | None = typer.Option(None, "--title", help="The page's title."),
) -> None:
    """One self-contained HTML report (opens offline) of bench runs, tune runs, or several compared."""
    if output is None and figures is None:
        output = Path("report.html")
    check_output(output, "--output")
    runs = load_runs(files)
    sections = build_sections(runs)
    if output is not None:
        names = ", ".join(r.info.name for r in runs)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        page = render_html(
            sections,
            title=title or f"llmctl report: {names}",
            generated=f"llmctl {__version__}, {now}",
        )
        write_output(output, page)
        console.print(f"wrote {output} ({len(page.encode()) / 1024:.0f} KiB)", highlight=False)
    if figures is not None:
        written = write_files(figures, figure_files(sections, figure_format))
        console.print(f"wrote {len(written)} figures to {figures}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `report` to the top-level app."""
    app.command("report")(report)
