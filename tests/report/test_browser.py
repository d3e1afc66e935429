"""A generated report opened in real headless Chromium with the network cut off: it loads without
errors or requests, every figure is drawn, and the numbers it plots are the JSON files' numbers."""

from __future__ import annotations

import asyncio
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from llmctl.bench.report import SCHEMA_VERSION as BENCH_SCHEMA
from llmctl.report.chart import value_text
from llmctl.tune.report import SCHEMA_VERSION as TUNE_SCHEMA
from tests.report.chromium import CHROMIUM, Page, PageLog, chromium, devtools_page
from tests.report.conftest import BENCH_V1, BENCH_V2, TUNE_V1, LiveRuns, llmctl

pytestmark = [
    pytest.mark.slow,  # the real runs behind it take about 15 s, once per session
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
    ),
]

# Everything the test needs from the page, read in one evaluation.
READ_PAGE = """JSON.stringify({
  data: JSON.parse(document.getElementById("report-data").textContent),
  figures: Array.from(document.querySelectorAll("figure.plot")).map(function (f) {
    var svg = f.querySelector("svg"), box = svg.getBoundingClientRect();
    return {
      id: f.id, empty: f.classList.contains("empty"), text: svg.textContent,
      box: [box.left + scrollX, box.top + scrollY, box.width, box.height],
      plot: svg.getAttribute("data-plot"), x: svg.getAttribute("data-x-domain"),
      y: svg.getAttribute("data-y-domain"), width: svg.viewBox.baseVal.width,
      points: Array.from(svg.querySelectorAll(".pt")).map(function (p) {
        var a = function (n) { return p.getAttribute(n); };
        return {s: +a("data-s"), x: a("data-x"), y: a("data-y"), tag: p.tagName,
                cx: a("cx"), cy: a("cy"), height: a("height")};
      })
    };
  })
})"""


@dataclass
class Visit:
    log: PageLog
    data: dict[str, Any]  # the embedded report data: section key -> figure key -> figure
    figures: list[dict[str, Any]]  # what the DOM holds, per figure element
    shots: dict[str, Image.Image]  # figure id -> its plot area (whole figure when empty)
    hover: dict[str, Any]  # the mouse over the first point of the first figure, then a click


async def _visit(browser: str, page_url: str) -> Visit:
    async with devtools_page(browser) as page:
        await page.open(page_url)
        read = json.loads(await page.evaluate(READ_PAGE))
        shots = {}
        for fig in read["figures"]:
            left, top, width, height = fig["box"]
            if not fig["empty"]:
                x0, y0, x1, y1 = (float(v) for v in fig["plot"].split())
                k = width / fig["width"]
                left, top, width, height = left + x0 * k, top + y0 * k, (x1 - x0) * k, (y1 - y0) * k
            png = await page.screenshot(left, top, width, height)
            shots[fig["id"]] = Image.open(io.BytesIO(png)).convert("RGB")
        data = {s["key"]: {f["key"]: f for f in s["figures"]} for s in read["data"]["sections"]}
        return Visit(page.log, data, read["figures"], shots, await _hover(page, read["figures"]))


def _alone(fig: dict[str, Any], p: dict[str, Any]) -> bool:
    """No other mark within 30 units: the page's script names the nearest mark within 28."""
    here = (float(p["cx"]), float(p["cy"]))
    return all(
        q is p or math.dist(here, (float(q["cx"]), float(q["cy"]))) > 30 for q in fig["points"]
    )


async def _hover(page: Page, figures: list[dict[str, Any]]) -> dict[str, Any]:
    """Point at the first mark of a latency figure that no other mark is near (runs of one sweep
    can plot nearly the same point) and read the tip; then click the figure."""
    fig, point = next(
        (f, p)
        for f in figures
        if f["id"].endswith(("-ttft", "-itl", "-e2e")) and not f["empty"]
        for p in f["points"]
        if _alone(f, p)
    )
    left, top, width, _ = fig["box"]
    k = width / fig["width"]
    at = (left + float(point["cx"]) * k, top + float(point["cy"]) * k)
    await page.mouse("mouseMoved", *at)
    tip = await page.evaluate(
        'var t = document.querySelector(".tip"); t.hidden ? null : t.textContent'
    )
    await page.mouse("mousePressed", *at)
    await page.mouse("mouseReleased", *at)
    wide = await page.evaluate(f'document.getElementById("{fig["id"]}").className')
    return {"figure": fig["id"], "point": point, "tip": tip, "class": wide}


@pytest.fixture(scope="module")
def visit(live_runs: LiveRuns, tmp_path_factory: pytest.TempPathFactory) -> Visit:
    """Three bench runs (one live, a schema-1 file, a labelled schema-2 file) and two tune runs,
    compared and each alone."""
    tmp = tmp_path_factory.mktemp("report-page")
    page = tmp / "report.html"
    llmctl("report", str(live_runs.bench), str(BENCH_V1), str(BENCH_V2), str(live_runs.tune),
           str(TUNE_V1), "-o", str(page))  # fmt: skip
    with chromium(tmp / "profile") as browser:
        return asyncio.run(_visit(browser, page.resolve().as_uri()))


def _label(level: dict[str, Any]) -> str:
    strategy = level["strategy"]
    if strategy["kind"] == "concurrent":
        return f"conc {strategy['concurrency']}"
    return f"{strategy['rate']:g}/s {strategy['arrival']}"


def _xy(points: list[list[Any]]) -> list[tuple[Any, float]]:
    return [(p[0], p[1]) for p in points]


def _series(fig: dict[str, Any]) -> dict[str, list[tuple[Any, float]]]:
    return {s["name"]: _xy(s["points"]) for s in fig["series"]}


def _bench_expected(raw: dict[str, Any]) -> dict[str, dict[str, list[tuple[Any, float]]]]:
    """What each bench figure must plot, computed straight from the JSON file."""
    levels = raw["levels"]

    def line(field: str) -> list[tuple[Any, float]]:
        return [(lv["output_throughput"], lv[field]) for lv in levels if lv[field] is not None]

    def bars(pick: Any) -> list[tuple[Any, float]]:
        return [(_label(lv), pick(lv)) for lv in levels if pick(lv) is not None]

    expected = {
        metric: {p: line(f"{stat}_{metric}_ms") for p, stat in
                 (("p50", "median"), ("p95", "p95"), ("p99", "p99"))}
        for metric in ("ttft", "itl")
    }  # fmt: skip
    expected["e2e"] = {p: line(f"{stat}_e2el_ms") for p, stat in
                       (("p50", "median"), ("p95", "p95"), ("p99", "p99"))}  # fmt: skip
    expected["queue-wait"] = {s: line(f"{s}_queue_wait_ms") for s in ("mean", "p95", "p99")}
    expected["goodput"] = {
        "all finished": bars(lambda lv: lv["request_throughput"]),
        "within the SLO": bars(lambda lv: lv["request_goodput"]),
    }
    classes = sorted({c for lv in levels for c, n in lv["failures"].items() if n})
    expected["failures"] = {c: bars(lambda lv, c=c: lv["failures"][c]) for c in classes}
    expected["kv-cache"] = {
        "KV cache": bars(lambda lv: lv["server"]["peak_kv_cache_usage_perc"] * 100)
    }
    expected["server-peaks"] = {
        "engine running": bars(lambda lv: lv["server"]["peak_num_requests_running"]),
        "gateway queue": bars(lambda lv: lv["server"]["peak_gateway_queue_depth"]),
    }
    if any(lv["server"].get("series") for lv in levels):

        def over_time(gauge: str, scale: float = 1.0) -> list[tuple[Any, float]]:
            """On the run's clock: each level's start plus its points' times."""
            return [
                (series["start_s"] + t, v * scale)
                for lv in levels
                if (series := lv["server"]["series"])
                for t, v in zip(series["t_s"], series[gauge], strict=True)
                if v is not None
            ]

        expected["server-series"] = {
            "engine running": over_time("num_requests_running"),
            "engine waiting": over_time("num_requests_waiting"),
            "gateway queue": over_time("gateway_queue_depth"),
            "gateway active": over_time("gateway_active_requests"),
        }
        expected["kv-cache-series"] = {"KV cache": over_time("kv_cache_usage_perc", 100)}
    return expected


def _tune_expected(raw: dict[str, Any]) -> dict[str, dict[str, list[tuple[Any, float]]]]:
    trials = sorted(raw["trials"], key=lambda t: t["max_active"])
    by_value = {
        f"p95-{m}": {f"p95 {name}": [(t["max_active"], t[f"p95_{m}_ms"]) for t in trials]}
        for m, name in (("ttft", "TTFT"), ("itl", "ITL"), ("e2e", "E2E latency"))
    }
    return {
        "throughput": {"output tok/s": [(t["max_active"], t["output_throughput"]) for t in trials]},
        "trials": {
            "MAX_ACTIVE tried": [(i + 1, t["max_active"]) for i, t in enumerate(raw["trials"])]
        },
        **by_value,
    }


def test_the_page_loads_without_errors_or_requests(visit: Visit) -> None:
    assert visit.log.errors == []
    assert visit.log.blocked == []
    # The only thing fetched is the report file itself.
    assert [url.startswith("file://") for url in visit.log.requests] == [True]


def test_hovering_a_point_reads_it_and_a_click_widens_the_figure(visit: Visit) -> None:
    plotted = _plotted(visit, visit.hover["figure"])
    series = plotted["series"][visit.hover["point"]["s"]]
    # Numbers, not their text: the page's JSON, read back through the browser, writes 576.0 as 576.
    x, y, note = next(
        p for p in series["points"] if float(p[0]) == float(visit.hover["point"]["x"])
    )
    assert (
        visit.hover["tip"]
        == f"{series['name']} · {note}: {value_text(y)} ms at {value_text(x)} tok/s"
    )
    assert "wide" in visit.hover["class"].split()


def test_every_figure_is_drawn(visit: Visit) -> None:
    drawn = 0
    for fig in visit.figures:
        shot = visit.shots[fig["id"]]
        if fig["empty"]:
            assert "not recorded in this run" in fig["text"] or "no request failed" in fig["text"]
            assert shot.convert("L").getextrema()[0] < 128, f"{fig['id']}: its note is not shown"
            continue
        plotted = _plotted(visit, fig["id"])
        counts = shot.getcolors(shot.width * shot.height) or []
        for i, series in enumerate(plotted["series"]):
            points = _xy(series["points"])
            # A zero bar has no height, and a series equal to a later one lies under it (only a
            # sub-pixel rim shows at this scale); every other series must show.
            later = [_xy(s["points"]) for s in plotted["series"][i + 1 :]]
            if not points or points in later:
                continue
            if plotted["shape"] == "bars" and all(y <= 0 for _, y in points):
                continue
            color = tuple(int(series["color"][j : j + 2], 16) for j in (1, 3, 5))
            near = sum(
                n for n, c in counts if max(abs(a - b) for a, b in zip(c, color, strict=True)) <= 8
            )
            assert near >= 3, f"{fig['id']}: series {series['name']} not drawn ({near} pixels)"
        drawn += 1
    assert drawn >= 30


def _plotted(visit: Visit, figure_id: str) -> dict[str, Any]:
    for section, figures in visit.data.items():
        prefix = f"{section}-"
        if figure_id.startswith(prefix) and figure_id[len(prefix) :] in figures:
            return figures[figure_id[len(prefix) :]]
    raise AssertionError(f"no data for {figure_id}")


def test_the_drawn_points_carry_the_plotted_numbers(visit: Visit) -> None:
    """Each mark's data-x/data-y is a plotted point, and its pixel position encodes that value."""
    for fig in visit.figures:
        if fig["empty"]:
            continue
        plotted = _plotted(visit, fig["id"])
        want = sorted(
            (i, str(x), float(y))
            for i, s in enumerate(plotted["series"])
            for x, y, _ in s["points"]
        )
        got = sorted((p["s"], p["x"], float(p["y"])) for p in fig["points"])
        assert [(s, float(x) if plotted["shape"] == "lines" else x, y) for s, x, y in got] == [
            (s, float(x) if plotted["shape"] == "lines" else x, y) for s, x, y in want
        ], fig["id"]
        x0, y0, x1, y1 = (float(v) for v in fig["plot"].split())
        ylo, yhi = (float(v) for v in fig["y"].split())
        for p in fig["points"]:
            height = (float(p["y"]) - ylo) / (yhi - ylo) * (y1 - y0)
            if p["tag"] == "rect":
                assert float(p["height"]) == pytest.approx(height, abs=0.11), fig["id"]
            else:
                xlo, xhi = (float(v) for v in fig["x"].split())
                cx = x0 + (float(p["x"]) - xlo) / (xhi - xlo) * (x1 - x0)
                assert float(p["cx"]) == pytest.approx(cx, abs=0.06), fig["id"]
                assert float(p["cy"]) == pytest.approx(y1 - height, abs=0.06), fig["id"]


@pytest.mark.parametrize("which", ["live", "v1", "v2"])
def test_bench_figures_plot_the_json_numbers(visit: Visit, live_runs: LiveRuns, which: str) -> None:
    path, section_key = {
        "live": (live_runs.bench, "bench"),
        "v1": (BENCH_V1, "bench-v1"),
        "v2": (BENCH_V2, "max2"),  # a labelled run's section is named by its label
    }[which]
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == (1 if which == "v1" else BENCH_SCHEMA)
    section = visit.data[section_key]
    expected = _bench_expected(raw)
    for key, series in expected.items():
        plotted = _series(section[key])
        for name, points in series.items():
            assert plotted[name] == points, f"{path.stem}/{key}/{name}"
    # Schema 2 records the server side over time; schema 1 says it did not.
    assert ("server-series" in expected) is (which != "v1")
    if which == "v1":
        assert section["server-series"]["note"].startswith("not recorded in this run")
    else:  # every sample of every level (short levels: nothing thinned)
        running = next(
            s for s in section["server-series"]["series"] if s["name"] == "engine running"
        )
        for level in raw["levels"]:
            drawn = [p for p in running["points"] if p[2] == _label(level)]
            assert len(drawn) == level["server"]["samples"] >= 2
    # The live run queued (queue wait) and turned requests away (429s), so both figures have data.
    if which == "live":
        assert any(y > 0 for _, y in _series(section["queue-wait"])["p99"])
        assert _series(section["failures"])["http_429"]
        # Over time, each level reaches the peak its file records (the queue filled up).
        queue = next(s for s in section["server-series"]["series"] if s["name"] == "gateway queue")
        for level in raw["levels"]:
            peak = level["server"]["peak_gateway_queue_depth"]
            assert max(y for _, y, note in queue["points"] if note == _label(level)) == peak
        assert raw["levels"][-1]["server"]["peak_gateway_queue_depth"] > 0


@pytest.mark.parametrize("which", ["live", "v1"])
def test_tune_figures_plot_the_json_numbers(visit: Visit, live_runs: LiveRuns, which: str) -> None:
    path = live_runs.tune if which == "live" else TUNE_V1
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == (TUNE_SCHEMA if which == "live" else 1)
    section = visit.data[path.stem]
    for key, series in _tune_expected(raw).items():
        assert _series(section[key]) == series, f"{path.stem}/{key}"
    slo = raw["settings"]["slo"]
    ttft_ms = slo["ttft_ms"] if raw["schema_version"] == 1 else slo["ttft_s"] * 1000
    assert [g["y"] for g in section["p95-ttft"]["guides"]] == [pytest.approx(ttft_ms)]


def test_comparisons_overlay_every_run(visit: Visit, live_runs: LiveRuns) -> None:
    files = (live_runs.bench, BENCH_V1, BENCH_V2)
    benches = {}
    for path in files:
        raw = json.loads(path.read_text())
        benches[raw.get("label") or path.stem] = raw  # a run is named by its label
    compared = visit.data["compare-bench"]
    assert _series(compared["ttft"]) == {
        name: [(lv["output_throughput"], lv["p95_ttft_ms"]) for lv in raw["levels"]]
        for name, raw in benches.items()
    }
    assert _series(compared["failures"]) == {
        name: [(_label(lv), lv["failed"]) for lv in raw["levels"]] for name, raw in benches.items()
    }
    tunes = {p.stem: json.loads(p.read_text()) for p in (live_runs.tune, TUNE_V1)}
    assert _series(visit.data["compare-tune"]["throughput"]) == {
        name: sorted((t["max_active"], t["output_throughput"]) for t in raw["trials"])
        for name, raw in tunes.items()
    }


def test_the_harness_sees_a_page_that_reaches_out(tmp_path: Path) -> None:
    """The checks above are not vacuous: a page that fetches is caught, and its errors are seen."""
    page = tmp_path / "leaky.html"
    page.write_text(
        "<!doctype html><html><body><img src='https://cdn.example.com/logo.png'>"
        "<script>console.error('boom')</script></body></html>"
    )

    async def visit_leaky(browser: str) -> PageLog:
        async with devtools_page(browser) as tab:
            await tab.open(page.as_uri())
            return tab.log

    with chromium(tmp_path / "profile") as browser:
        log = asyncio.run(visit_leaky(browser))
    assert "https://cdn.example.com/logo.png" in log.requests
    assert log.blocked == ["https://cdn.example.com/logo.png"]
    assert "boom" in log.errors
