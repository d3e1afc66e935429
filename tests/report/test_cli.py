"""`llmctl report` on the command line: files in, a page and image files out; bad files are one
clear error with exit code 2, never a traceback."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from llmctl.cli import main
from tests.report.conftest import BENCH_V1, BENCH_V2, TUNE_V1
from tests.support import REPO


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["report", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_page_and_svg_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page, folder = tmp_path / "r.html", tmp_path / "figs"
    code, out, _ = _run(
        capsys, str(BENCH_V1), str(TUNE_V1), "-o", str(page), "--figures", str(folder)
    )
    assert code == 0, out
    html = page.read_text()
    assert html.startswith("<!doctype html>")
    assert "default-src 'none'" in html  # the page may fetch nothing
    assert "<script src" not in html
    assert "<link" not in html
    assert len(html.encode()) < 200_000  # small enough to mail
    names = sorted(p.name for p in folder.iterdir())
    assert "bench-v1-ttft.svg" in names
    assert "tune-v1-throughput.svg" in names
    assert "bench-v1-server-series.svg" not in names  # schema 1 has no series: nothing to draw
    for path in folder.iterdir():
        root = ET.fromstring(path.read_text())
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert path.stat().st_size < 12_000


def test_a_schema_2_run_has_its_series_over_time_as_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, str(BENCH_V2), "-o", str(tmp_path / "r.html"), "--figures",
                        str(tmp_path))  # fmt: skip
    assert code == 0, out
    for key in ("server-series", "kv-cache-series"):
        root = ET.fromstring((tmp_path / f"bench-{key}.svg").read_text())
        marks = root.findall(".//{http://www.w3.org/2000/svg}circle[@class='pt']")
        assert len(marks) > 40  # every sample of every level
    assert (tmp_path / "r.html").stat().st_size < 150_000


def test_png_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, str(TUNE_V1), "--figures", str(tmp_path), "--figure-format", "png")
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        f"tune-{k}.png" for k in ("p95-e2e", "p95-itl", "p95-ttft", "throughput", "trials")
    ]
    with Image.open(tmp_path / "tune-throughput.png") as image:
        assert image.size == (1280, 720)
        # Not blank: the line and its marks are there in the figure's first colour.
        colours = {c for _, c in image.convert("RGB").getcolors(1 << 20) or []}
        assert (0x00, 0x72, 0xB2) in colours


def test_without_output_flags_it_writes_report_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(capsys, str(BENCH_V1))
    assert code == 0
    assert (tmp_path / "report.html").is_file()
    assert "wrote report.html" in out


def _bench(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BENCH_V1.read_text())
    data.update(changes)
    return data


def _broken_level() -> dict[str, Any]:
    data = _bench()
    data["levels"][1]["p95_ttft_ms"] = "fast"
    return data


def _nan_level() -> dict[str, Any]:
    data = _bench()
    data["levels"][0]["output_throughput"] = float("nan")
    return data


def _bad_series(name: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BENCH_V2.read_text())
    data["levels"][0]["server"]["series"][name] = value
    return data


def _tune_without_trials() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TUNE_V1.read_text())
    del data["trials"]
    return data


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is not JSON (Expecting property name"),
        ("[1, 2]", "is not an llmctl bench or tune result"),
        (json.dumps({"benchmarks": []}), "is not an llmctl bench or tune result"),
        (json.dumps({"tool": "guidellm", "schema_version": 1}), "is a result of 'guidellm'"),
        (json.dumps(_bench(schema_version=99)), "schema_version 99 is not one this llmctl reads"),
        (json.dumps(_bench(schema_version="1")), "schema_version '1' is not one"),
        (json.dumps(_broken_level()), "levels[1].p95_ttft_ms should be a number, not text"),
        (json.dumps(_bench(levels={})), "levels should be a list, not an object"),
        (
            json.dumps(_nan_level()),
            "levels[0].output_throughput should be a finite number, not nan",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps(_tune_without_trials()), "trials is missing"),
        (
            json.dumps(_bad_series("t_s", [0, "soon"])),
            "levels[0].server.series.t_s[1] should be a number, not text",
        ),
        (
            json.dumps(_bad_series("num_requests_running", [1.0, 2.0])),
            "levels[0].server.series.num_requests_running has 2 values for 13 times",
        ),
        (
            json.dumps(_bad_series("gateway_queue_depth", {"a": 1})),
            "levels[0].server.series.gateway_queue_depth should be a list of numbers",
        ),
    ],
)
def test_a_bad_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    bad = tmp_path / "run.json"
    bad.write_text(content)
    code, _, err = _run(capsys, str(BENCH_V1), str(bad), "-o", str(tmp_path / "r.html"))
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("error: ")
    assert str(bad) in err
    assert message in " ".join(err.split())
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json"], "cannot read missing.json"),
        (["binary.json"], "cannot read binary.json"),
        ([str(BENCH_V1), "--figure-format", "gif"], "--figure-format: must be one of svg, png"),
        ([str(BENCH_V1), "-o", "no/such/folder/r.html"], "does not exist"),
    ],
)
def test_bad_arguments_are_usage_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00{")
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert message in " ".join(err.split())


def test_the_docs_figures_are_what_this_command_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/figures/*.svg come from the runs beside them; a renderer change must redraw them
    (the commands are in docs/benchmarks.md)."""
    docs = REPO / "docs" / "figures"
    runs = docs / "runs"
    bench = [str(runs / "max-active-4.json"), str(runs / "max-active-8.json")]
    assert _run(capsys, *bench, "--figures", str(tmp_path))[0] == 0
    assert _run(capsys, str(runs / "tune.json"), "--figures", str(tmp_path))[0] == 0
    committed = sorted(docs.glob("*.svg"))
    assert len(committed) == 5
    for figure in committed:
        assert figure.read_text() == (tmp_path / figure.name).read_text(), figure.name
