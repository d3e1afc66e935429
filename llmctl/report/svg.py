"""Draw a Figure as one SVG document: the same text goes inline into the HTML and into .svg files.

Every drawn point carries its numbers (`data-x`, `data-y`, exact) and the root carries the plot
box and axis domains, so a reader (the page's hover script, a test) can map pixels back to values.
"""

from __future__ import annotations

from html import escape

from llmctl.report.chart import BAD, Figure, Point, Series, nice_ticks, tick_text, value_text

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, BOTTOM = 68, 20, 50
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
CHAR_W = 6.6  # average width of a 12 px character of FONT, for laying out labels


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _legend(fig: Figure) -> tuple[list[str], float]:
    """The legend's entries laid out left to right, wrapping; returns SVG parts and its height."""
    entries: list[tuple[str, str]] = [(s.name, s.color) for s in fig.series]
    entries += [(text, "") for text in fig.legend_extra]
    if any(p.bad for s in fig.series for p in s.points):
        entries.append(("× fails the SLO", BAD))
    if any(p.chosen for s in fig.series for p in s.points):
        entries.append(("○ recommended", "#222"))
    parts: list[str] = []
    x, y = float(LEFT), 46.0
    for text, color in entries:
        width = 22 + len(text) * CHAR_W + 16
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, y = LEFT, y + 18
        if color and not text.startswith(("×", "○")):
            parts.append(
                f'<line x1="{x}" y1="{y - 4}" x2="{x + 16}" y2="{y - 4}" stroke="{color}" '
                f'stroke-width="3"/>'
            )
            parts.append(f'<text x="{x + 22}" y="{y}">{escape(text)}</text>')
        else:
            fill = f' fill="{color}"' if color else ""
            parts.append(f'<text x="{x}" y="{y}"{fill}>{escape(text)}</text>')
        x += width
    return parts, (y - 46.0 + 18) if entries else 0.0


class _Frame:
    """The plot box and the mapping from values to pixels."""

    def __init__(self, fig: Figure, top: float) -> None:
        self.x0, self.x1 = float(LEFT), float(WIDTH - RIGHT)
        self.y0, self.y1 = top, float(HEIGHT - BOTTOM)
        ys = [p.y for s in fig.series for p in s.points] + [g.y for g in fig.guides]
        self.y_ticks = nice_ticks(min([0.0, *ys]), max(ys) * 1.04 if ys else 1.0)
        self.categories = list(fig.categories)
        self.x_ticks: list[float] = []
        if fig.shape == "lines":
            xs = [float(p.x) for s in fig.series for p in s.points]
            self.x_ticks = nice_ticks(min([0.0, *xs]), max([0.0, *xs]), integer=fig.x_integer)

    @property
    def x_domain(self) -> tuple[float, float]:
        if self.x_ticks:
            return self.x_ticks[0], self.x_ticks[-1]
        return 0.0, float(len(self.categories))

    def px(self, x: float) -> float:
        lo, hi = self.x_domain
        return self.x0 + (x - lo) / (hi - lo) * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        lo, hi = self.y_ticks[0], self.y_ticks[-1]
        return self.y1 - (y - lo) / (hi - lo) * (self.y1 - self.y0)

    def band(self, category: str) -> tuple[float, float]:
        """Left edge and width of a category's band on a bar chart."""
        width = (self.x1 - self.x0) / max(1, len(self.categories))
        return self.x0 + self.categories.index(category) * width, width


def _axes(fig: Figure, f: _Frame) -> list[str]:
    out: list[str] = []
    for y in f.y_ticks:
        py = _num(f.py(y))
        out.append(
            f'<line x1="{f.x0}" y1="{py}" x2="{f.x1}" y2="{py}" stroke="#e6e6e6"/>'
            f'<text x="{f.x0 - 6}" y="{py}" dy="4" text-anchor="end">{tick_text(y, f.y_ticks)}</text>'
        )
    base = _num(f.y1 + 16)
    slant = False
    if f.x_ticks:
        for x in f.x_ticks:
            out.append(
                f'<text x="{_num(f.px(x))}" y="{base}" text-anchor="middle">'
                f"{tick_text(x, f.x_ticks)}</text>"
            )
    else:
        widest = max((len(c) for c in f.categories), default=0) * CHAR_W
        slant = widest > (f.x1 - f.x0) / max(1, len(f.categories)) - 4
        for category in f.categories:
            left, width = f.band(category)
            cx = _num(left + width / 2)
            turn = f' transform="rotate(-20 {cx} {base})" text-anchor="end"' if slant else ""
            anchor = "" if slant else ' text-anchor="middle"'
            out.append(f'<text x="{cx}" y="{base}"{anchor}{turn}>{escape(category)}</text>')
    # Slanted category names reach down to where the axis title would go; they name themselves.
    x_title = "" if slant else escape(fig.x_title)
    out.append(
        f'<path d="M{f.x0} {f.y0}V{f.y1}H{f.x1}" fill="none" stroke="#444"/>'
        f'<text x="{(f.x0 + f.x1) / 2}" y="{HEIGHT - 8}" text-anchor="middle">{x_title}</text>'
        f'<text transform="translate(16 {_num((f.y0 + f.y1) / 2)}) rotate(-90)" '
        f'text-anchor="middle">{escape(fig.y_title)}</text>'
    )
    return out


def _tip(fig: Figure, series: Series, point: Point) -> str:
    what = f"{series.name} · {point.note}" if point.note else series.name
    y = f"{value_text(point.y)} {fig.y_unit}".rstrip()
    if isinstance(point.x, str):
        return f"{what}: {y}"
    return f"{what}: {y} at {value_text(point.x)} {fig.x_unit}".rstrip()


def _mark(
    fig: Figure, series: Series, point: Point, at: tuple[float, float], index: int, radius: float
) -> str:
    tip = _tip(fig, series, point)
    cx, cy = at
    out = (
        f'<circle class="pt" cx="{_num(cx)}" cy="{_num(cy)}" r="{radius}" fill="{series.color}" '
        f'data-s="{index}" data-x="{_attr(point.x)}" data-y="{point.y!r}">'
        f"<title>{escape(tip)}</title></circle>"
    )
    if point.bad:
        d = 5
        out += (
            f'<path d="M{_num(cx - d)} {_num(cy - d)}L{_num(cx + d)} {_num(cy + d)}'
            f'M{_num(cx - d)} {_num(cy + d)}L{_num(cx + d)} {_num(cy - d)}" '
            f'stroke="{BAD}" stroke-width="2"/>'
        )
    if point.chosen:
        out += f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="8" fill="none" stroke="#222" stroke-width="1.5"/>'
    return out


def _labels(fig: Figure, f: _Frame) -> list[str]:
    """The last series' point notes; notes of points that (nearly) coincide share one label."""
    spots: list[tuple[float, float, list[str]]] = []
    for point in fig.series[-1].points if fig.series else ():
        x, y = f.px(float(point.x)), f.py(point.y)
        near = next((s for s in spots if abs(s[0] - x) < 8 and abs(s[1] - y) < 10), None)
        if near is None:
            spots.append((x, y, [point.note]))
        else:
            near[2].append(point.note)
    return [
        f'<text x="{_num(x + 8)}" y="{_num(y - 6)}" font-size="10" fill="#555">'
        f"{escape(', '.join(notes))}</text>"
        for x, y, notes in spots
    ]


def _lines(fig: Figure, f: _Frame) -> list[str]:
    """Each series is drawn a size thinner than the one before it, so that series lying on top
    of each other (p50 = p95 = p99 when every request took as long) still all show."""
    out: list[str] = []
    count = len(fig.series)
    for index, series in enumerate(fig.series):
        wider = min(count - 1 - index, 3)
        if fig.small_marks:
            radius = 1.5 + wider
        else:
            radius = 3.0 + 1.5 * wider if len(series.points) <= 60 else 1.5
        coords = [(f.px(float(p.x)), f.py(p.y)) for p in series.points]
        if len(coords) > 1:
            path = " ".join(f"{_num(x)},{_num(y)}" for x, y in coords)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{series.color}" '
                f'stroke-width="{2 + wider}" stroke-linejoin="round"/>'
            )
        out += [
            _mark(fig, series, p, at, index, radius)
            for p, at in zip(series.points, coords, strict=True)
        ]
    if fig.point_labels:
        out += _labels(fig, f)
    return out


def _bars(fig: Figure, f: _Frame) -> list[str]:
    out: list[str] = []
    count = max(1, len(fig.series))
    for index, series in enumerate(fig.series):
        for point in series.points:
            left, width = f.band(str(point.x))
            bar = width * 0.8 / count
            x = left + width * 0.1 + index * bar
            top, zero = f.py(max(point.y, 0.0)), f.py(0.0)
            tip = _tip(fig, series, point)
            out.append(
                f'<rect class="pt" x="{_num(x)}" y="{_num(top)}" width="{_num(bar - 1)}" '
                f'height="{_num(zero - top)}" fill="{series.color}" data-s="{index}" '
                f'data-x="{_attr(point.x)}" data-y="{point.y!r}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    return out


def _guides(fig: Figure, f: _Frame) -> list[str]:
    out: list[str] = []
    for guide in fig.guides:
        y = _num(f.py(guide.y))
        out.append(
            f'<line x1="{f.x0}" y1="{y}" x2="{f.x1}" y2="{y}" stroke="{BAD}" '
            f'stroke-dasharray="6 4" stroke-width="1.5"/>'
            f'<text x="{f.x1 - 4}" y="{y}" dy="-4" text-anchor="end" fill="{BAD}">'
            f"{escape(guide.text)}</text>"
        )
    return out


def render_svg(fig: Figure) -> str:
    """The whole figure as a standalone SVG document (no XML declaration, so it can go inline)."""
    legend, legend_height = _legend(fig)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" font-family="{FONT}" font-size="12" fill="#222" class="chart'
    )
    title = f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(fig.title)}</text>'
    background = f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
    if fig.empty:
        note = (
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#666">'
            f"{escape(fig.note or 'nothing to plot')}</text>"
        )
        return (
            f'{head} empty" data-figure="{_attr(fig.key)}" role="img" '
            f'aria-label="{_attr(fig.title)}">{background}{title}{note}</svg>'
        )
    frame = _Frame(fig, 46.0 + legend_height + 6)
    body = _axes(fig, frame) + _guides(fig, frame)
    body += _lines(fig, frame) if fig.shape == "lines" else _bars(fig, frame)
    lo, hi = frame.x_domain
    attrs = (
        f'data-figure="{_attr(fig.key)}" data-plot="{frame.x0!r} {frame.y0!r} {frame.x1!r} '
        f'{frame.y1!r}" data-x-domain="{lo!r} {hi!r}" '
        f'data-y-domain="{frame.y_ticks[0]!r} {frame.y_ticks[-1]!r}" role="img" '
        f'aria-label="{_attr(fig.title)}"'
    )
    return f'{head}" {attrs}>{background}{title}{"".join(legend)}{"".join(body)}</svg>'
