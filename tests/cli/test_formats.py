"""The format layer on its own (pure): a rich view as plain lines and as Markdown, printed whole
when piped; `up`'s service lines. The commands' own output is tested in test_output.py."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmctl.cli.output import markdown, plain, print_whole
from llmctl.cli.services import ServiceLines
from llmctl.stack.runtime import ServiceStatus


def _view() -> Group:
    table = Table(title="per level")
    table.add_column("level")
    table.add_column("metric")
    table.add_column("out\ntok/s", justify="right")
    table.add_column("")
    table.add_row("conc 1", "TTFT", "1,355.25", Text("better", "green"))
    table.add_row("", "E2E", "7|8", "worse")
    pairs = Table.grid()
    pairs.add_row("slots", "3 / 4")
    return Group(Text("header line\nsecond line"), table, Panel(pairs, title="admission"))


def test_plain_is_a_block_per_row() -> None:
    assert plain(_view()).splitlines() == [
        "header line",
        "second line",
        "per level",
        "conc 1",
        "  metric: TTFT",
        "  out tok/s: 1,355.25 better",  # a headerless column joins the line before it
        "conc 1",  # a blank first cell continues the group above it
        "  metric: E2E",
        "  out tok/s: 7|8 worse",
        "admission",
        "  slots  3 / 4",
    ]


def test_markdown_tables_keep_alignment_and_escape_pipes() -> None:
    text = markdown(_view())
    assert "| level | metric | out tok/s |  |\n|---|---|---:|---|" in text
    assert "|  | E2E | 7\\|8 | worse |" in text
    assert "**per level**" in text
    assert "### admission" in text
    assert "header line\n\nsecond line" in text


def test_print_whole_piped_never_cuts() -> None:
    out = io.StringIO()
    console = Console(file=out, width=20)  # a file: not a terminal
    table = Table()
    for name in ("a long header", "another long header"):
        table.add_column(name)
    table.add_row("1,355,123.45", "1,485,999.01")
    print_whole(table, console)
    text = out.getvalue()
    assert "1,355,123.45" in text
    assert "1,485,999.01" in text
    assert "…" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_service_lines_print_each_change_once() -> None:
    out = io.StringIO()
    lines = ServiceLines(Console(file=out, width=40))
    starting = [ServiceStatus("engine", "running", "starting", "pid 12")]
    lines(starting)
    lines(starting)
    lines(
        [
            ServiceStatus("engine", "running", "healthy", "pid 12"),
            ServiceStatus("gateway", "running"),
        ]
    )
    printed = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert printed == [
        "engine: running, starting (pid 12)",
        "engine: running, healthy (pid 12)",
        "gateway: running, none",
    ]
