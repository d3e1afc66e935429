"""Turn a StackSnapshot into a rich renderable; pure, so tests render it into a StringIO console."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmctl.observe.snapshot import StackSnapshot

MISSING = "–"
_SPARKS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 12


def num(value: float | None, fmt: str = "{:.0f}", suffix: str = "") -> str:
    """Format a value, or the dash for a missing series."""
    return MISSING if value is None else fmt.format(value) + suffix


def seconds(value: float | None) -> str:
    """A latency in the unit that reads best: ms below one second, else s."""
    if value is None:
        return MISSING
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def span(seconds_: float) -> str:
    """A window's length as a label: `last 10 s`, `last 2 min`."""
    if seconds_ >= 120:
        return f"last {seconds_ / 60:.0f} min"
    return f"last {seconds_:.0f} s"


def bar(used: float | None, limit: float | None, width: int = BAR_WIDTH) -> Text:
    """`███░░░  3 / 4`: green, then yellow from 70 %, red when full; dashes when unknown."""
    label = f" {num(used)} / {num(limit)}"
    if used is None or limit is None:
        return Text("░" * width + label, style="dim")
    # QUEUE_MAX=0 means no queue: anything waiting there is "full".
    ratio = (1.0 if used > 0 else 0.0) if limit <= 0 else min(max(used / limit, 0.0), 1.0)
    filled = round(ratio * width)
    style = "red" if ratio >= 1 else "yellow" if ratio >= 0.7 else "green"
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    text.append(label)
    return text


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """Values as block characters scaled to their own max; the dash when there is no history."""
    points = list(values)[-width:]
    if not points:
        return MISSING
    top = max(points)
    if top <= 0:
        return _SPARKS[0] * len(points)
    return "".join(_SPARKS[min(int(v / top * (len(_SPARKS) - 1) + 0.5), 7)] for v in points)


def _pairs(rows: Sequence[tuple[str | Text, str | Text]]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def _header(snap: StackSnapshot, live: bool) -> Text:
    clock = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    text = Text("llmctl top", style="bold")
    text.append(f"  {clock}  source: ")
    text.append(snap.source, style="green" if snap.source == "prometheus" else "yellow")
    text.append(f" {snap.source_url}")
    if snap.note:
        text.append(f"  ({snap.note})", style="yellow")
    if live:
        text.append("   q to quit", style="dim")
    return text


_ARROWS = {"up": "↑", "down": "↓"}


def limit_line(snap: StackSnapshot) -> Text:
    """`12 ↑ adaptive (headroom): TTFT p95 410 ms < 1.00 s, ITL p95 40 ms < 100 ms, KV 63 %`, or
    `12 static`; the p95s are of requests admitted under the current limit (what the mode steers on)."""
    text = Text(num(snap.slots_max))
    if snap.limit_adaptive is None:
        return text
    if snap.limit_adaptive != 1:
        text.append(" static", style="dim")
        return text
    arrow = _ARROWS.get(snap.limit_direction or "")
    if arrow:
        text.append(f" {arrow}", style="green" if arrow == "↑" else "yellow")
    text.append(" adaptive", style="cyan")
    if snap.limit_reason:
        text.append(f" ({snap.limit_reason})", style="dim")
    parts = []
    for name, value, target in (
        ("TTFT p95", snap.adaptive_ttft_p95_s, snap.adaptive_slo_ttft_s),
        ("ITL p95", snap.adaptive_itl_p95_s, snap.adaptive_slo_itl_s),
    ):
        if value is None:
            continue
        if target is None:
            parts.append(f"{name} {seconds(value)}")
        else:
            parts.append(
                f"{name} {seconds(value)} {'<' if value <= target else '>'} {seconds(target)}"
            )
    if snap.kv_cache_usage is not None:
        parts.append(f"KV {snap.kv_cache_usage * 100:.0f} %")
    if parts:
        text.append(": " + ", ".join(parts))
    return text


def _admission(snap: StackSnapshot) -> Panel:
    rows: list[tuple[str | Text, str | Text]] = [
        ("slots", bar(snap.slots_active, snap.slots_max)),
        ("queue", bar(snap.queue_depth, snap.queue_max)),
        ("wait p95", seconds(snap.queue_wait_p95_s)),
    ]
    return Panel(_pairs(rows), title=f"admission ({span(snap.window_s)})", title_align="left")


def _traffic(snap: StackSnapshot) -> Panel:
    rate = "{:.1f}"
    rows: list[tuple[str | Text, str | Text]] = [
        ("ok", num(snap.ok_per_s, rate, "/s")),
        ("429", num(snap.rejected_429_per_s, rate, "/s")),
        ("503", num(snap.unavailable_503_per_s, rate, "/s")),
        ("errors", num(snap.error_per_s, rate, "/s")),
    ]
    return Panel(_pairs(rows), title=f"traffic ({span(snap.window_s)})", title_align="left")


def _latency(snap: StackSnapshot) -> Panel:
    """What users feel (from arrival at the gateway, queue included), then the engine's part."""
    rows: list[tuple[str | Text, str | Text]] = [
        ("TTFT p50", seconds(snap.ttft_p50_s)),
        ("TTFT p95", seconds(snap.ttft_p95_s)),
        ("E2E p50", seconds(snap.e2e_p50_s)),
        ("E2E p95", seconds(snap.e2e_p95_s)),
        ("E2E p99", seconds(snap.e2e_p99_s)),
        ("TPOT p95", seconds(snap.tpot_p95_s)),
        (Text("engine TTFT p95", style="dim"), seconds(snap.admitted_ttft_p95_s)),
    ]
    title = f"latency ({span(snap.window_s)})"
    return Panel(_pairs(rows), title=title, title_align="left")


def _engine(snap: StackSnapshot) -> Panel:
    kv = None if snap.kv_cache_usage is None else snap.kv_cache_usage * 100
    rows: list[tuple[str | Text, str | Text]] = [
        ("running", num(snap.engine_running)),
        ("waiting", num(snap.engine_waiting)),
        ("KV cache", num(kv, "{:.1f}", " %")),
        ("preemptions", num(snap.preemptions_per_s, "{:.2f}", "/s")),
        ("prompt tok", num(snap.prompt_tokens_per_s, "{:.0f}", "/s")),
        ("gen tok", num(snap.generation_tokens_per_s, "{:.0f}", "/s")),
    ]
    return Panel(_pairs(rows), title="engine", title_align="left")


def _gpus(snap: StackSnapshot) -> Panel:
    table = Table(expand=True, box=None, padding=(0, 1))
    for column in ("GPU", "util", "memory", "temp", "power"):
        table.add_column(column, justify="left" if column == "GPU" else "right")
    for gpu in snap.gpus:
        name = f"{gpu.gpu} {gpu.name}" if gpu.name else gpu.gpu
        used = None if gpu.mem_used_mib is None else gpu.mem_used_mib / 1024
        total = None if gpu.mem_total_mib is None else gpu.mem_total_mib / 1024
        table.add_row(
            name,
            num(gpu.util_pct, "{:.0f}", " %"),
            f"{num(used, '{:.1f}')} / {num(total, '{:.1f}')} GiB",
            num(gpu.temp_c, "{:.0f}", " °C"),
            num(gpu.power_w, "{:.0f}", " W"),
        )
    if not snap.gpus:
        table.add_row(MISSING, MISSING, MISSING, MISSING, MISSING)
    return Panel(table, title="GPU", title_align="left")


def _engines(snap: StackSnapshot) -> Panel | None:
    """One row per engine behind the gateway (shown when there are several)."""
    if len(snap.engines) < 2:
        return None
    table = Table(expand=True, box=None, padding=(0, 1))
    for column in ("engine", "slots", "state"):
        table.add_column(column, justify="left")
    for e in snap.engines:
        state = (
            Text("up", "green")
            if e.up
            else Text("out of rotation", "red")
            if e.up is False
            else Text(MISSING)
        )
        table.add_row(e.engine, bar(e.active, e.limit), state)
    return Panel(table, title="engines", title_align="left")


def _classes(snap: StackSnapshot) -> Panel | None:
    """Waiting and active requests per priority class (with a tenants file)."""
    if not snap.classes:
        return None
    rows: list[tuple[str | Text, str | Text]] = [
        (c.name, f"{num(c.queued)} waiting, {num(c.active)} active") for c in snap.classes
    ]
    return Panel(_pairs(rows), title="classes", title_align="left")


def _cache(snap: StackSnapshot) -> Panel | None:
    """The gateway's response cache (shown while it is on): what it served, and its size."""
    if not snap.cache_max_bytes:
        return None
    hit, miss = snap.cache_hit_per_s, snap.cache_miss_per_s
    ratio = None
    if hit is not None and miss is not None and hit + miss > 0:
        ratio = 100 * hit / (hit + miss)
    mib = 1 << 20
    held = None if snap.cache_bytes is None else snap.cache_bytes / mib
    rows: list[tuple[str | Text, str | Text]] = [
        ("hits", f"{num(hit, '{:.1f}', '/s')} ({num(ratio, '{:.0f}', ' %')})"),
        ("misses", num(miss, "{:.1f}", "/s")),
        ("held MiB", bar(held, snap.cache_max_bytes / mib)),
    ]
    return Panel(_pairs(rows), title=f"response cache ({span(snap.window_s)})", title_align="left")


def _history(snap: StackSnapshot) -> Panel:
    h = snap.history

    def row(values: list[float], last: Callable[[float], str]) -> str:
        return f"{sparkline(values)}  {last(values[-1])}" if values else MISSING

    rows: list[tuple[str | Text, str | Text]] = [
        ("requests/s", row(h.request_rate, lambda v: f"{v:.1f}/s")),
        ("E2E p95", row(h.e2e_p95_s, seconds)),
        ("queue", row(h.queue_depth, lambda v: f"{v:.0f}")),
        ("GPU util", row(h.gpu_util_pct, lambda v: f"{v:.0f} %")),
    ]
    title = f"history ({span(snap.history_span_s)}, 1 min averages)"
    if snap.source == "direct":
        title = f"history ({span(snap.history_span_s)}, one point per refresh)"
    return Panel(_pairs(rows), title=title, title_align="left")


# What a short terminal gives up first, in order: the sparklines, the response cache, then the
# per-class and per-engine rows (the totals above them stay).
OPTIONAL = ("history", "cache", "classes", "engines")


def render(
    snap: StackSnapshot, *, live: bool = False, omit: tuple[str, ...] = (), stacked: bool = False
) -> RenderableType:
    """The whole `llmctl top` screen for one snapshot (`live`: with the key hint; `omit`: sections
    of OPTIONAL to leave out; `stacked`: panels one under another, each as wide as its content,
    for a log or a pipe, where there is no screen to share out)."""
    panels = [_admission(snap), _traffic(snap), _latency(snap), _engine(snap), _gpus(snap)]
    extra = [
        p
        for name, make in (
            ("engines", _engines),
            ("classes", _classes),
            ("cache", _cache),
            ("history", _history),
        )
        if name not in omit and (p := make(snap)) is not None
    ]
    limit = Text("limit ", style="bold").append_text(limit_line(snap))
    if stacked:
        return Group(_header(snap, live), limit, *(_shrunk(p) for p in (*panels, *extra)))
    top = Table.grid(expand=True, padding=(0, 1))
    for ratio in (3, 2, 2):
        top.add_column(ratio=ratio)
    top.add_row(*panels[:3])
    middle = Table.grid(expand=True, padding=(0, 1))
    middle.add_column(ratio=1)
    middle.add_column(ratio=2)
    middle.add_row(*panels[3:])
    return Group(_header(snap, live), limit, top, middle, *extra)


def _shrunk(panel: Panel) -> Panel:
    """`panel` as wide as its content rather than its share of a screen."""
    panel.expand = False
    if isinstance(panel.renderable, Table):
        panel.renderable.expand = False
    return panel


def fit(snap: StackSnapshot, console: Console, *, live: bool = False) -> RenderableType:
    """The screen for `console`'s height: whole if it fits, else without OPTIONAL sections, the
    least needed first (a full-screen view would otherwise lose its bottom rows)."""
    dropped: tuple[str, ...] = ()
    for name in ("", *OPTIONAL):
        dropped = (*dropped, name) if name else dropped
        screen = render(snap, live=live, omit=dropped)
        if len(console.render_lines(screen, console.options, pad=False)) <= console.height:
            return screen
    return screen
