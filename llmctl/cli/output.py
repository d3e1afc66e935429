"""Results in the format asked for: `--format table|plain|md|json`, from one rich view.

A command builds one rich renderable of its result (tables, text, panels) and a JSON text of the
same result; `emit` prints one of four forms:

- table: the rich view. On a terminal it fits the window; anywhere else (a pipe, a file, a CI log)
  it takes the width it needs, so no value is ever cut, and carries no escape codes.
- plain: the same view as lines that never need width: a table becomes a block per row, its first
  cell as the heading and `header: value` lines under it; panels and text as they read.
- md: the same view as Markdown (tables as pipe tables), to paste into an issue or a PR.
- json: the result as JSON, every number whole (what scripts read).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import typer
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmctl.cli.console import console, interactive

Format = Literal["table", "plain", "md", "json"]
FORMATS: tuple[Format, ...] = ("table", "plain", "md", "json")
FORMAT_HELP = (
    "How to print the result: table, plain (lines, for logs), md (Markdown) or json. "
    "Piped or redirected, a table takes the width it needs."
)


FormatOpt = Annotated[Format, typer.Option("--format", help=FORMAT_HELP)]


def chosen(form: Format, as_json: bool) -> Format:
    """The format asked for, `--json` (an older flag some commands have) meaning `--format json`."""
    return "json" if as_json else form


def natural_width(renderable: RenderableType) -> int:
    """Columns `renderable` needs so that nothing in it wraps or is cut."""
    wide = Console(width=10_000)
    return Measurement.get(wide, wide.options, renderable).maximum


def print_whole(renderable: RenderableType, target: Console | None = None) -> None:
    """Print so that no value is cut: piped, rich would squeeze a table into 80 columns."""
    out = target or console
    if interactive(out):
        out.print(renderable)
        return
    out.file.write(render_text(renderable, max(out.width, natural_width(renderable))))
    out.file.flush()


def render_text(renderable: RenderableType, width: int) -> str:
    """`renderable` as text `width` columns wide, without escapes or trailing blanks."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False).print(renderable)
    # rich pads every line to the table's width; a log is easier to read and diff without that
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def emit(view: RenderableType, form: str, json_text: Callable[[], str]) -> None:
    """Print a result in `form` (one of FORMATS); `json_text` makes its JSON when asked."""
    if form == "json":
        text = json_text()
        console.file.write(text if text.endswith("\n") else text + "\n")
    elif form == "plain":
        console.file.write(plain(view))
    elif form == "md":
        console.file.write(markdown(view))
    else:
        print_whole(view)
        return
    console.file.flush()


def _text(cell: RenderableType) -> str | None:
    """A cell's text, or None when it is not text (a panel, a nested table)."""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return None


def _header(column_header: RenderableType) -> str:
    return " ".join((_text(column_header) or "").split())


def _children(renderable: RenderableType) -> list[RenderableType] | None:
    if isinstance(renderable, Group):
        return list(renderable.renderables)
    if isinstance(renderable, Padding):
        return [renderable.renderable]
    return None


def _has_header(table: Table) -> bool:
    return table.show_header and any(_header(c.header) for c in table.columns)


def _rows(table: Table) -> Iterator[list[RenderableType]]:
    columns = [list(c.cells) for c in table.columns]
    for i in range(table.row_count):
        yield [cells[i] if i < len(cells) else "" for cells in columns]


def _record(table: Table, row: list[RenderableType], heading: str) -> list[str]:
    """One row as a heading line and `header: value` lines (a headerless column's value joins
    the line before it, as it reads in the table: `change: +12.5% better`)."""
    lines = [heading]
    for column, cell in zip(table.columns[1:], row[1:], strict=True):
        value = " ".join((_text(cell) or "").split())
        name = _header(column.header)
        if not name and len(lines) > 1:
            lines[-1] += f" {value}" if value else ""
        elif value or name:
            lines.append(f"  {name}: {value}" if name else f"  {value}")
    return lines


def _plain_lines(renderable: RenderableType) -> list[str]:
    children = _children(renderable)
    if children is not None:
        return [line for child in children for line in _plain_lines(child)]
    text = _text(renderable)
    if text is not None:
        return [line.rstrip() for line in text.splitlines()]
    if isinstance(renderable, Panel):
        title = _text(renderable.title) if renderable.title is not None else None
        inner = ["  " + line for line in _plain_lines(renderable.renderable)]
        return ([title] if title else []) + inner
    if isinstance(renderable, Table):
        return _plain_table(renderable)
    # Anything else (a bar, a rule): as rich renders it, wide enough not to wrap.
    return render_text(renderable, natural_width(renderable)).splitlines()


def _plain_table(table: Table) -> list[str]:
    lines = [_text(table.title) or ""] if table.title is not None else []
    if _has_header(table):
        heading = ""
        for row in _rows(table):
            first = " ".join((_text(row[0]) or "").split())
            heading = first or heading  # a blank first cell continues the group above it
            lines += _record(table, row, heading)
        return lines
    for row in _rows(table):
        texts = [_text(cell) for cell in row]
        if all(t is not None and "\n" not in t for t in texts):
            lines.append("  ".join(t.strip() for t in texts if t and t.strip()))
        else:
            lines += [line for cell in row for line in _plain_lines(cell)]
    return lines


def plain(view: RenderableType) -> str:
    """`view` as plain lines (no width, no escapes, no box drawing)."""
    return "".join(line + "\n" for line in _plain_lines(view))


def _md_cell(cell: RenderableType) -> str:
    return " ".join((_text(cell) or "").split()).replace("|", "\\|")


def _md_blocks(renderable: RenderableType) -> list[str]:
    children = _children(renderable)
    if children is not None:
        return [block for child in children for block in _md_blocks(child)]
    text = _text(renderable)
    if text is not None:
        # A line of its own stays one: each becomes a paragraph.
        return [line.rstrip() for line in text.splitlines() if line.strip()]
    if isinstance(renderable, Panel):
        title = _text(renderable.title) if renderable.title is not None else None
        return ([f"### {title}"] if title else []) + _md_blocks(renderable.renderable)
    if isinstance(renderable, Table):
        return _md_table(renderable)
    return ["```\n" + render_text(renderable, natural_width(renderable)) + "```"]


def _md_table(table: Table) -> list[str]:
    blocks = [f"**{_text(table.title)}**"] if table.title is not None else []
    if not _has_header(table):
        for row in _rows(table):
            texts = [_text(cell) for cell in row]
            if all(t is not None for t in texts):
                blocks.append(" ".join(" ".join(t.split()) for t in texts if t and t.strip()))
            else:
                blocks += [b for cell in row for b in _md_blocks(cell)]
        return blocks
    align = {"right": "---:", "center": ":---:"}
    lines = [
        "| " + " | ".join(_md_cell(c.header) for c in table.columns) + " |",
        "|" + "|".join(align.get(str(c.justify), "---") for c in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in _rows(table)]
    return [*blocks, "\n".join(lines)]


def markdown(view: RenderableType) -> str:
    """`view` as Markdown: text lines as paragraphs, tables as pipe tables."""
    return "\n\n".join(_md_blocks(view)) + "\n"
