"""Lay the sections out as one self-contained HTML page: inline SVG, CSS and script, no fetches.

The page forbids itself every fetch (Content-Security-Policy `default-src 'none'`), so it reads the
same offline, attached to an email, as on the machine that wrote it. What each figure plots is also
embedded as JSON (`<script id="report-data">`), so its numbers can be read back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from importlib import resources

from llmctl.report.model import RunInfo
from llmctl.report.sections import Section
from llmctl.report.svg import render_svg
from llmctl.report.tables import Table

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
NOT_RECORDED = "not recorded in this run"


def _asset(name: str) -> str:
    return (resources.files("llmctl.report") / "assets" / name).read_text(encoding="utf-8")


def _meta(info: RunInfo) -> str:
    """The run's header: its label, where it came from, which llmctl, when, on what, its notes
    (bench --metadata), and every setting (the target's limits among them)."""
    items: list[tuple[str, str]] = [("label", info.label)] if info.label else []
    items += [
        ("file", info.path),
        ("tool", f"llmctl {info.tool} (schema {info.schema_version})"),
        ("llmctl", info.llmctl_version or NOT_RECORDED),
        ("started", info.started_at or NOT_RECORDED),
        ("machine", info.metadata.get("machine", NOT_RECORDED)),
    ]
    items += [(key, value) for key, value in info.metadata.items() if key != "machine"]
    if info.unrecorded:
        items.append(("not recorded", "; ".join(info.unrecorded)))
    items += list(info.settings.items())
    cells = "".join(
        f"<div><dt>{escape(key)}</dt><dd>{escape(value)}</dd></div>" for key, value in items
    )
    return f'<dl class="meta">{cells}</dl>'


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            # Text that is not a number (messages, violations) wraps and aligns left.
            wordy = i > 0 and len(cell) > 24
            cells.append(
                f'<td class="text">{escape(cell)}</td>' if wordy else f"<td>{escape(cell)}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    rows = "".join(body) if body else ""
    return (
        f"<h3>{escape(table.title)}</h3>{note}"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
    )


def _section(section: Section) -> str:
    parts = [f'<section id="{escape(section.key)}"><h2>{escape(section.heading)}</h2>']
    if section.summary:
        parts.append(f'<p class="summary">{escape(section.summary)}</p>')
    if len(section.runs) == 1:
        parts.append(_meta(section.runs[0]))
    parts.append('<div class="figures">')
    for fig in section.figures:
        state = " empty" if fig.empty else ""
        parts.append(
            f'<figure class="plot{state}" id="{escape(section.key)}-{escape(fig.key)}">'
            f"{render_svg(fig)}</figure>"
        )
    parts.append("</div>")
    parts += [_table(t) for t in section.tables]
    parts.append("</section>")
    return "".join(parts)


def _data(sections: Sequence[Section]) -> str:
    """The plotted numbers as JSON, safe inside a script element."""
    data = {
        "sections": [{"key": s.key, "figures": [f.data() for f in s.figures]} for s in sections]
    }
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def render_html(sections: Sequence[Section], *, title: str, generated: str) -> str:
    """The whole report page; `generated` says by what and when (e.g. "llmctl 0.1.0, <time>")."""
    nav = "".join(f'<a href="#{escape(s.key)}">{escape(s.heading)}</a>' for s in sections)
    body = "".join(_section(s) for s in sections)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_asset('report.css')}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="muted">Written by {escape(generated)}. Hover a figure to read its points; '
        "click it to widen it. Every number is also in the tables beneath.</p>"
        f"<nav>{nav}</nav></header>{body}"
        f'<script type="application/json" id="report-data">{_data(sections)}</script>'
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )
