"""What a figure plots, independent of how it is drawn: series of points, reference lines, axes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

# Okabe-Ito: told apart by colour-blind readers and in greyscale print.
PALETTE: tuple[str, ...] = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#000000",
    "#999933",
)
BAD = "#c0002b"  # the cross over a point that fails the SLO, and SLO lines

Shape = Literal["lines", "bars"]


@dataclass(frozen=True)
class Point:
    x: float | str  # a category (str) on a bar chart
    y: float
    note: str = ""  # what the point is, e.g. the level "conc 8"
    bad: bool = False  # fails the SLO: crossed out
    chosen: bool = False  # the recommendation: ringed


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Guide:
    """A horizontal reference line, e.g. an SLO."""

    y: float
    text: str


@dataclass(frozen=True)
class Figure:
    key: str  # unique within its section; part of exported file names
    title: str
    x_title: str
    y_title: str
    x_unit: str = ""
    y_unit: str = ""
    shape: Shape = "lines"
    series: tuple[Series, ...] = ()
    guides: tuple[Guide, ...] = ()
    categories: tuple[str, ...] = ()  # the bars' x values, in order
    x_integer: bool = False
    point_labels: bool = False  # write each point's note beside the last series' points
    small_marks: bool = False  # a series over time: the line matters, not each sample's dot
    note: str = ""  # why nothing is drawn, when nothing is
    legend_extra: tuple[str, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)

    def data(self) -> dict[str, Any]:
        """What the figure plots, as JSON: the report embeds it so readers and tests can check it."""
        return {
            "key": self.key,
            "title": self.title,
            "shape": self.shape,
            "x_title": self.x_title,
            "y_title": self.y_title,
            "note": self.note if self.empty else "",
            "guides": [{"y": g.y, "text": g.text} for g in self.guides],
            "series": [
                {
                    "name": s.name,
                    "color": s.color,
                    "points": [[p.x, p.y, p.note] for p in s.points],
                }
                for s in self.series
            ],
        }


def nice_ticks(low: float, high: float, *, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) from at most `low` to at least `high`."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("ticks need finite bounds")
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    n = round((last - first) / step)
    return [first + i * step for i in range(n + 1)]


def tick_text(value: float, ticks: list[float]) -> str:
    """A tick label with as many decimals as the tick step needs, thousands separated."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = next(d for d in range(7) if d == 6 or abs(round(step, d) - step) < 1e-9 * step)
    return f"{value:,.{decimals}f}"


def value_text(value: float) -> str:
    """3 significant digits, thousands separated: 1,263 / 22.1 / 0.105."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"
