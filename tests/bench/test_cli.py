"""`llmctl bench` on the command line: a run writes JSON/CSV, compare reads them, bad input fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmctl.cli import main
from tests.bench.conftest import StartServer


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["bench", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_json_csv_and_compare_reads_them(
    fake_engine: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, table = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "a.csv"
    with fake_engine("--ttft-ms", "5", "--itl-ms", "5") as url:
        common = ["--target", url, "--requests", "4", "--input-len", "16", "--output-len", "8"]
        code, out, _ = _run(capsys, *common, "--concurrency", "1,2", "--json", str(a),
                            "--csv", str(table), "--slo", "ttft=1s,itl=100ms")  # fmt: skip
        assert code == 0
        assert "conc 2" in out
        assert "wrote" in out
        code, _, _ = _run(capsys, *common, "--concurrency", "1,2", "--json", str(b))
        assert code == 0
    assert json.loads(a.read_text())["model"] == "fake"
    assert len(table.read_text().splitlines()) == 3
    code, out, _ = _run(capsys, "compare", str(a), str(b))
    assert code == 0
    assert "B/A" in out
    assert "median_ttft_ms" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "http://127.0.0.1:9", "--concurrency", "1,x"], "comma list"),
        (["--target", "http://127.0.0.1:9", "--concurrency", "0"], "positive"),
        (["--target", "http://127.0.0.1:9"], "exactly one"),
        (["--target", "http://127.0.0.1:9", "--concurrency", "1", "--rate", "2"], "exactly one"),
        (["--target", "http://127.0.0.1:9", "--rate", "2", "--arrival", "zipf"], "--arrival"),
        (["--target", "http://127.0.0.1:9", "--rate", "2", "--burstiness", "3"], "gamma"),
        (["--target", "http://127.0.0.1:9", "--rate", "2", "--slo", "ttft=soon"], "duration"),
        (
            ["--target", "http://127.0.0.1:9", "--rate", "2", "--api-key-env", "NO_SUCH_VAR_X"],
            "not set",
        ),
        (["--target", "ftp://x", "--rate", "2", "--requests", "1"], "http"),
        (["--target", "http://127.0.0.1:9", "--rate", "2", "--warmup", "-1"], "warmup"),
    ],
)
def test_bad_input_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert "error" in err
    assert message in err


def test_unreachable_target_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support import free_port

    code, _, err = _run(
        capsys,
        "--target",
        f"http://127.0.0.1:{free_port()}",
        "--concurrency",
        "1",
        "--requests",
        "1",
    )
    assert code == 1
    assert "cannot reach" in err


def test_without_target_the_stacks_gateway_is_used(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support import free_port

    port = free_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMCTL__PORTS__GATEWAY", str(port))
    code, out, err = _run(capsys, "--concurrency", "1", "--requests", "1")
    assert code == 1
    assert f"127.0.0.1:{port}" in out
    assert "cannot reach" in err


def test_compare_rejects_a_non_report(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"hello": 1}')
    proc = subprocess.run(
        [sys.executable, "-m", "llmctl", "bench", "compare", str(bogus), str(bogus)],
        capture_output=True, text=True, env={"FORCE_COLOR": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "not an llmctl bench report" in proc.stderr
    assert "\x1b[1;31m" in proc.stderr  # red
