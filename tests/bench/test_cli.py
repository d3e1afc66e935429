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
    assert "change" in out
    assert "Median TTFT (ms)" in out


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


def test_unreachable_target_exits_1(capsys: pytest.CaptureFixture[str], refused_url: str) -> None:
    code, _, err = _run(
        capsys,
        "--target",
        refused_url,
        "--concurrency",
        "1",
        "--requests",
        "1",
    )
    assert code == 1
    assert "cannot reach" in err


def test_without_target_the_stacks_gateway_is_used(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refused_url: str,
) -> None:
    port = refused_url.rsplit(":", 1)[1]  # the stack's gateway, where nothing listens
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMCTL__PORTS__GATEWAY", port)
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


def _stack_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gateway: str) -> None:
    """A stack (the default preset in an empty folder) whose gateway is at `gateway`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMCTL__PORTS__GATEWAY", gateway.rsplit(":", 1)[1])


def test_without_target_the_stacks_api_key_is_sent(
    fake_engine: StartServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support import free_port, llmctl_server

    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    port = free_port()  # the gateway CLI does not say which port it got for port 0
    with (
        fake_engine("--ttft-ms", "1", "--itl-ms", "1") as engine,
        llmctl_server(
            ["gateway", "serve", "--upstream", engine, "--port", str(port),
             "--api-keys-file", str(keys)],
            ready_url=f"http://127.0.0.1:{port}/health",
            log=tmp_path / "gateway.log",
        ),
    ):  # fmt: skip
        _stack_env(monkeypatch, tmp_path, f"http://127.0.0.1:{port}")
        monkeypatch.setenv("LLMCTL__PORTS__ENGINE", engine.rsplit(":", 1)[1])
        monkeypatch.setenv("LLMCTL_API_KEYS", "k1,k2")
        out_file = tmp_path / "r.json"
        code, _, err = _run(capsys, "--concurrency", "1", "--requests", "2",
                            "--input-len", "8", "--output-len", "4", "--json", str(out_file))  # fmt: skip
    assert code == 0, err
    level = json.loads(out_file.read_text())["levels"][0]
    assert level["completed"] == 2
    assert "k1" not in out_file.read_text()  # the report never holds the key


def test_a_stack_without_an_engine_address_samples_only_the_gateway(
    fake_engine: StartServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A docker stack publishes no engine port; bench must not guess 127.0.0.1:8000.
    with fake_engine("--ttft-ms", "1", "--itl-ms", "1") as url:
        _stack_env(monkeypatch, tmp_path, url)
        (tmp_path / "llmctl.toml").write_text('name = "d"\nruntime = "docker"\n')
        out_file = tmp_path / "r.json"
        code, _, err = _run(capsys, "--concurrency", "1", "--requests", "1",
                            "--input-len", "8", "--output-len", "4", "--json", str(out_file))  # fmt: skip
    assert code == 0, err
    sources = json.loads(out_file.read_text())["levels"][0]["server"]["sources"]
    assert sources == [f"{url}/metrics"]


@pytest.mark.parametrize("flag", ["--json", "--csv"])
def test_an_unwritable_output_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, refused_url: str
) -> None:
    missing = tmp_path / "nonexist" / "x.out"
    # The target does not answer: a run would fail with "cannot reach"; the check comes first.
    code, _, err = _run(capsys, "--target", refused_url, "--concurrency", "1", flag, str(missing))
    assert code == 2
    assert "does not exist" in err
    assert "Traceback" not in err


def test_an_output_that_fails_after_the_run_is_a_clear_error(
    fake_engine: StartServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmctl.bench import runner

    json_out, csv_out = tmp_path / "sub" / "r.json", tmp_path / "r.csv"
    json_out.parent.mkdir()
    real = runner.run_bench

    def run_then_lose_the_folder(*args: object, **kwargs: object) -> object:
        report = real(*args, **kwargs)  # type: ignore[arg-type]
        json_out.parent.rmdir()  # gone while the run went on
        return report

    monkeypatch.setattr("llmctl.cli.bench.run_bench", run_then_lose_the_folder)
    with fake_engine("--ttft-ms", "1", "--itl-ms", "1") as url:
        code, out, err = _run(capsys, "--target", url, "--concurrency", "1", "--requests", "1",
                              "--json", str(json_out), "--csv", str(csv_out))  # fmt: skip
    assert code == 1
    assert f"cannot write {json_out}" in err
    assert "Traceback" not in err
    assert "conc 1" in out  # the results were shown
    assert len(csv_out.read_text().splitlines()) == 2  # and the other output still written


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink", "dotted"])
def test_json_and_csv_on_the_same_file_is_a_usage_error_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, alias: str
) -> None:
    from tests.support import free_port

    first = tmp_path / "out.txt"
    first.write_text("keep me\n")
    second = {
        "same": first,
        "symlink": tmp_path / "link.txt",
        "hardlink": tmp_path / "hard.txt",
        "dotted": tmp_path / "sub" / ".." / "out.txt",
    }[alias]
    (tmp_path / "sub").mkdir()
    if alias == "symlink":
        second.symlink_to(first)
    elif alias == "hardlink":
        second.hardlink_to(first)
    target = f"http://127.0.0.1:{free_port()}"  # a run would fail otherwise: the check comes first
    code, _, err = _run(capsys, "--target", target, "--concurrency", "1",
                        "--json", str(first), "--csv", str(second))  # fmt: skip
    assert code == 2
    assert "--json and --csv name the same file" in err
    assert first.read_text() == "keep me\n"


def test_outputs_keep_their_mode_and_are_written_through_a_symlink(
    fake_engine: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = tmp_path / "results" / "r.json"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "r.json"
    link.symlink_to(real)
    with fake_engine("--ttft-ms", "1", "--itl-ms", "1") as url:
        code, _, err = _run(capsys, "--target", url, "--concurrency", "1", "--requests", "1",
                            "--json", str(link))  # fmt: skip
    assert code == 0, err
    assert link.is_symlink()
    assert json.loads(real.read_text())["model"] == "fake"
    assert real.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["r.json"]  # no temporary left
