"""What an `llmctl report` page costs with each plotting library: bytes, and the time headless
Chromium takes from navigation to every figure drawn.

Every candidate page is the same report (header, tables, the embedded figure data, the CSS); only
the figures differ: llmctl's inline SVG, or the same data drawn in the browser by uPlot, Plotly
(basic and full bundles) or Vega-Lite (vega + vega-lite + vega-embed), each library inlined.
The libraries come from npm (`npm pack`, cached in ~/.cache/llmctl/report-libs). Each load is a
fresh browser (cold, as someone opening a mailed report), candidates interleaved round by round.

    python benchmarks/report_libraries.py                 # the 4-run comparison and one bench run
    python benchmarks/report_libraries.py --rounds 7 --keep /tmp/report-pages
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmctl.report.html import render_html  # noqa: E402
from llmctl.report.load import load_runs  # noqa: E402
from llmctl.report.sections import build_sections  # noqa: E402
from tests.report.chromium import chromium, devtools_page  # noqa: E402

CACHE = Path.home() / ".cache" / "llmctl" / "report-libs"
DATA = REPO / "tests" / "report" / "data"
# candidate -> [(npm package@version, file inside it)], in load order
LIBRARIES: dict[str, list[tuple[str, str]]] = {
    "uplot": [
        ("uplot@1.6.32", "dist/uPlot.iife.min.js"),
        ("uplot@1.6.32", "dist/uPlot.min.css"),
    ],
    "plotly-basic": [("plotly.js-basic-dist-min@4.1.1", "plotly-basic.min.js")],
    "plotly": [("plotly.js-dist-min@4.1.2", "plotly.min.js")],
    "vega-lite": [
        ("vega@6.4.0", "build/vega.min.js"),
        ("vega-lite@6.5.0", "build/vega-lite.min.js"),
        ("vega-embed@7.3.0", "build/vega-embed.min.js"),
    ],
}

# Per library: draw(el, fig) returns a promise (or nothing) once the figure is drawn.
ADAPTERS = {
    "uplot": """
function draw(el, fig) {
  var bars = fig.shape === "bars", xs = [];
  fig.series.forEach(function (s) { s.points.forEach(function (p) {
    if (xs.indexOf(p[0]) < 0) xs.push(p[0]); }); });
  if (!bars) xs.sort(function (a, b) { return a - b; });
  var data = [bars ? xs.map(function (_, i) { return i; }) : xs];
  fig.series.forEach(function (s) { data.push(xs.map(function (x) {
    var p = s.points.find(function (q) { return q[0] === x; }); return p ? p[1] : null; })); });
  var series = [{}].concat(fig.series.map(function (s) { return {
    label: s.name, stroke: s.color, fill: bars ? s.color : undefined, spanGaps: true,
    paths: bars ? uPlot.paths.bars({size: [0.6, 60]}) : undefined}; }));
  new uPlot({title: fig.title, width: el.clientWidth, height: 360, series: series,
    scales: {x: {time: false}}, axes: [{label: fig.x_title, values: bars ? function (u, v) {
      return v.map(function (i) { return xs[i]; }); } : undefined}, {label: fig.y_title}]},
    data, el);
}""",
    "plotly": """
function draw(el, fig) {
  var traces = fig.series.map(function (s) { return {
    type: fig.shape === "bars" ? "bar" : "scatter", mode: "lines+markers", name: s.name,
    x: s.points.map(function (p) { return p[0]; }), y: s.points.map(function (p) { return p[1]; }),
    marker: {color: s.color}, line: {color: s.color}}; });
  var shapes = fig.guides.map(function (g) { return {type: "line", xref: "paper", x0: 0, x1: 1,
    y0: g.y, y1: g.y, line: {dash: "dash", color: "#c0002b"}}; });
  return Plotly.newPlot(el, traces, {title: {text: fig.title}, height: 360, barmode: "group",
    xaxis: {title: {text: fig.x_title}}, yaxis: {title: {text: fig.y_title}, rangemode: "tozero"},
    shapes: shapes, margin: {l: 60, r: 20, t: 50, b: 50}}, {displaylogo: false});
}""",
    "vega-lite": """
function draw(el, fig) {
  var rows = [], bars = fig.shape === "bars";
  fig.series.forEach(function (s) { s.points.forEach(function (p) {
    rows.push({series: s.name, x: p[0], y: p[1], note: p[2]}); }); });
  var layers = [{mark: bars ? "bar" : {type: "line", point: true}, encoding: {
    x: {field: "x", type: bars ? "nominal" : "quantitative", title: fig.x_title, sort: null},
    y: {field: "y", type: "quantitative", title: fig.y_title},
    xOffset: bars ? {field: "series"} : undefined,
    color: {field: "series", scale: {domain: fig.series.map(function (s) { return s.name; }),
      range: fig.series.map(function (s) { return s.color; })}},
    tooltip: [{field: "series"}, {field: "note"}, {field: "x"}, {field: "y"}]}}];
  if (fig.guides.length) layers.push({data: {values: fig.guides}, mark: {type: "rule",
    strokeDash: [6, 4], color: "#c0002b"}, encoding: {y: {field: "y", type: "quantitative"}}});
  return vegaEmbed(el, {$schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: fig.title, width: "container", height: 280, data: {values: rows}, layer: layers},
    {actions: false});
}""",
}
ADAPTERS["plotly-basic"] = ADAPTERS["plotly"]

DRAWN_SVG = (
    "<script>requestAnimationFrame(function () { window.__drawn = performance.now(); });</script>"
)
DRAWN_LIB = """<script>
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent), jobs = [];
  data.sections.forEach(function (section) { section.figures.forEach(function (fig) {
    var el = document.getElementById(section.key + "-" + fig.key + "-lib");
    if (el) jobs.push(Promise.resolve(draw(el, fig)));
  }); });
  Promise.all(jobs).then(function () { requestAnimationFrame(function () {
    window.__drawn = performance.now(); }); });
})();
</script>"""


def library_file(package: str, member: str) -> str:
    """A file from an npm package, packed once into the cache."""
    name, version = package.rsplit("@", 1)
    tgz = CACHE / f"{name}-{version}.tgz"
    if not tgz.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", "--silent", package], cwd=CACHE, check=True)
    with tarfile.open(tgz) as archive:
        extracted = archive.extractfile(f"package/{member}")
        if extracted is None:
            raise SystemExit(f"{package} has no {member}")
        return extracted.read().decode("utf-8")


def pages(report: str) -> dict[str, str]:
    """The report as drawn by each candidate: SVG figures swapped for library-drawn ones."""
    out = {"inline-svg": report.replace("</body>", DRAWN_SVG + "</body>")}
    # Only figures with data are redrawn; a "not recorded" note stays what it is.
    figure = re.compile(r'<figure class="plot" id="([^"]+)"><svg .*?</svg></figure>', re.S)
    bare = figure.sub(r'<figure class="plot" id="\1"><div id="\1-lib"></div></figure>', report)
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", bare)
    for name, files in LIBRARIES.items():
        assets = []
        for package, member in files:
            text = library_file(package, member)
            tag = "style" if member.endswith(".css") else "script"
            assets.append(f"<{tag}>{text}</{tag}>")
        head = "".join(a for a in assets if a.startswith("<style>"))
        scripts = "".join(a for a in assets if a.startswith("<script>"))
        page = bare.replace("</head>", head + "</head>")
        out[name] = page.replace(
            "</body>", f"{scripts}<script>{ADAPTERS[name]}</script>{DRAWN_LIB}</body>"
        )
    return out


async def load_ms(browser: str, url: str) -> tuple[float, list[str]]:
    async with devtools_page(browser) as page:
        await page.open(url)
        deadline = time.monotonic() + 60
        while (drawn := await page.evaluate("window.__drawn")) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: figures never finished drawing")
            await asyncio.sleep(0.02)
        return float(drawn), page.log.errors


def measure(files: dict[str, Path], rounds: int, work: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, path in files.items():
            with chromium(Path(tempfile.mkdtemp(dir=work, prefix=f"profile-{name}-"))) as browser:
                ms, errors = asyncio.run(load_ms(browser, path.resolve().as_uri()))
            if errors:
                print(f"  {name}: console errors: {errors[:3]}")
            times[name].append(ms)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Write the candidate pages here.")
    args = parser.parse_args()
    bench, tune = DATA / "bench-v1.json", DATA / "tune-v1.json"
    reports = {
        "one bench run (8 figures, 7 drawn)": [bench],
        "2 bench + 2 tune runs compared (36 figures, 33 drawn)": [bench, bench, tune, tune],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for title, runs in reports.items():
            html = render_html(build_sections(load_runs(runs)), title="bench", generated="bench")
            candidates = pages(html)
            files = {}
            for name, text in candidates.items():
                files[name] = work / f"{len(runs)}-{name}.html"
                files[name].write_text(text, encoding="utf-8")
            times = measure(files, args.rounds, work)
            print(f"\n{title}, {args.rounds} cold loads each (median, min-max):")
            print("| candidate | bytes | gzip -9 | load to drawn (ms) |")
            print("|---|---:|---:|---:|")
            for name, text in candidates.items():
                raw = text.encode()
                ms = times[name]
                print(
                    f"| {name} | {len(raw):,} | {len(gzip.compress(raw, 9)):,} | "
                    f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f}) |"
                )


if __name__ == "__main__":
    main()
