"""Every command that prints results, run with its output captured (not a terminal) at COLUMNS
unset, 80 and 40 against a real simulator and gateway: every number of its JSON result is in the
text whole, no line has an ellipsis where a value was, and no escape code is written (with
NO_COLOR, and without: captured output is not a terminal). The other formats carry the same
numbers; a terminal forced by FORCE_COLOR gets colour unless NO_COLOR says no."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmctl.bench.catalog import BY_FIELD, fmt
from llmctl.bench.compare import compare_reports
from llmctl.bench.export import change_text
from llmctl.bench.report import BenchReport, load_report
from llmctl.observe.snapshot import StackSnapshot
from llmctl.observe.view import num
from llmctl.tune.report import TuneReport
from tests.bench.test_live import assert_whole
from tests.cli.conftest import ADMIN_ENV, Run, llmctl
from tests.tune.conftest import ADMIN_KEY, Stack

# COLUMNS as the run sees it (None: unset); NO_COLOR on for some, so both cases are covered.
WIDTHS: tuple[tuple[str | None, bool], ...] = ((None, False), ("80", True), ("40", False))
ESC = "\x1b"
DATA = Path(__file__).resolve().parents[1] / "bench" / "data"


def _env(columns: str | None, no_color: bool) -> dict[str, str]:
    env = {"COLUMNS": columns} if columns else {}
    return {**env, "NO_COLOR": "1"} if no_color else env


def assert_clean(text: str) -> None:
    """No escape code, and no value cut short with an ellipsis."""
    assert ESC not in text, repr(text[text.index(ESC) - 40 : text.index(ESC) + 20])
    # rich cuts with "…"; a "..." right after a character is a cut too ("(429, 503, ...)" is not)
    cut = [line for line in text.splitlines() if "…" in line or re.search(r"\S\.\.\.", line)]
    assert not cut, cut


def _bench_args(stack: Stack, *more: str) -> list[str]:
    return [
        "bench", "--target", stack.gateway, "--metrics-url", f"{stack.engine}/metrics",
        "--concurrency", "1,3", "--requests", "6", "--input-len", "16", "--output-len", "8",
        "--slo", "ttft=1s", "--label", "width test", "--metadata", "k=v", "--verbose", *more,
    ]  # fmt: skip


@dataclass
class Bench:
    run: Run
    path: Path

    @property
    def report(self) -> BenchReport:
        return load_report(self.path)


@pytest.fixture(scope="module")
def benches(served: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[Bench]:
    """One verbose bench run per width, each with its own --json result."""
    tmp = tmp_path_factory.mktemp("bench-widths")
    done = []
    with contextlib.chdir(tmp):
        for i, (columns, no_color) in enumerate(WIDTHS):
            path = tmp / f"run{i}.json"
            run = llmctl(*_bench_args(served, "--json", str(path)), env=_env(columns, no_color))
            assert run.code == 0, run.out + run.err
            done.append(Bench(run, path))
    return done


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(WIDTHS)))
def test_bench_prints_every_number_whole_at_any_width(benches: list[Bench], index: int) -> None:
    bench = benches[index]
    assert_clean(bench.run.out + bench.run.err)
    assert_whole(bench.run.out, bench.report)
    # The piped run said it was alive: a line as each level started and ended.
    for level in bench.report.levels:
        assert f"] {level.label} started" in bench.run.out
        assert re.search(rf"done {level.label} in [\d.]+s: {level.completed} ok", bench.run.out)


@pytest.mark.slow
def test_bench_formats_carry_the_same_numbers(served: Stack, tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        as_json = llmctl(*_bench_args(served, "--json", "json.json", "--format", "json"))
        plain = llmctl(*_bench_args(served, "--json", "plain.json", "--format", "plain"))
        md = llmctl(*_bench_args(served, "--json", "md.json", "--format", "md"))
    assert as_json.code == plain.code == md.code == 0
    # json: stdout is the result alone (progress went to stderr), the same as --json wrote.
    assert BenchReport.model_validate_json(as_json.out) == load_report(tmp_path / "json.json")
    assert "started" in as_json.err
    assert "started" in md.err
    assert "started" not in md.out
    assert_clean(plain.out)
    assert_whole(plain.out, load_report(tmp_path / "plain.json"))
    assert "  ok: 6" in plain.out  # a header and its value on one line
    assert_whole(md.out, load_report(tmp_path / "md.json"))
    assert re.search(r"^\| level \| s \| ok \| fail \|", md.out, re.M)


@pytest.mark.slow
@pytest.mark.parametrize(("columns", "no_color"), WIDTHS)
@pytest.mark.parametrize("form", ["table", "plain", "md"])
def test_compare_prints_every_number_whole(
    benches: list[Bench], form: str, columns: str | None, no_color: bool
) -> None:
    a, b = (str(bench.path) for bench in benches[:2])
    run = llmctl("bench", "compare", a, b, "--format", form, env=_env(columns, no_color))
    assert run.code == 0, run.err
    assert_clean(run.out)
    data = json.loads(llmctl("bench", "compare", a, b, "--format", "json").out)
    numbers = {(lv["level"], m["metric"]): m for lv in data["levels"] for m in lv["metrics"]}
    comparison = compare_reports(benches[0].report, benches[1].report, "a", "b")
    assert len(numbers) == len(comparison.rows)
    for row in comparison.rows:
        assert numbers[(row.level, row.metric)]["a"] == row.a
        digits = BY_FIELD[row.metric].digits
        for side in (row.a, row.b):
            assert fmt(side, digits) in run.out, (row.label, side)
        assert change_text(row) in run.out, row.label


@pytest.fixture(scope="module")
def tunes(served: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Run, TuneReport]]:
    """A two-trial grid tune per width (each restores the gateway's limits)."""
    tmp = tmp_path_factory.mktemp("tune-widths")
    done = []
    with contextlib.chdir(tmp):
        for i, (columns, no_color) in enumerate(WIDTHS):
            path = tmp / f"tune{i}.json"
            env = {**_env(columns, no_color), ADMIN_ENV: ADMIN_KEY}
            run = llmctl(
                "tune", "max-active", "--gateway", served.gateway, "--admin-key-env", ADMIN_ENV,
                "--engine-metrics", f"{served.engine}/metrics", "--grid", "--min", "1", "--max",
                "2", "--trial-duration", "0.5", "--warmup", "0", "--input-len", "16",
                "--output-len", "8", "--json", str(path), env=env,
            )  # fmt: skip
            assert run.code == 0, run.out + run.err
            done.append((run, TuneReport.model_validate_json(path.read_text())))
    return done


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(WIDTHS)))
def test_tune_prints_every_number_whole_at_any_width(
    tunes: list[tuple[Run, TuneReport]], index: int
) -> None:
    run, report = tunes[index]
    assert_clean(run.out + run.err)
    lines = run.out.splitlines()
    for i, trial in enumerate(report.trials):
        assert f"trial {i + 1}: MAX_ACTIVE {trial.max_active} ({trial.concurrency} clients) " in (
            run.out
        )  # its start and its end, one line each
        row = next(line.split() for line in lines if re.match(rf"\s*{trial.max_active}\s+\d", line))
        assert row[:3] == [
            str(trial.max_active),
            str(trial.concurrency),
            f"{trial.output_throughput:.0f}",
        ]
        assert f"{trial.output_throughput:.4g}" in run.out  # the chart's number
    assert f"Recommended MAX_ACTIVE = {report.recommendation.max_active}" in run.out
    assert report.recommendation.reason in " ".join(run.out.split())


@pytest.mark.slow
def test_tune_json_is_the_report_alone(served: Stack, in_tmp: Path) -> None:
    run = llmctl(
        "tune", "max-active", "--gateway", served.gateway, "--admin-key-env", ADMIN_ENV,
        "--grid", "--min", "2", "--max", "2", "--trial-duration", "0.3", "--warmup", "0",
        "--input-len", "16", "--output-len", "8", "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.err
    report = TuneReport.model_validate_json(run.out)
    assert [t.max_active for t in report.trials] == [2]
    assert "trial 1: MAX_ACTIVE 2" in run.err


def _top(stack: Stack, *more: str, env: dict[str, str] | None = None) -> Run:
    return llmctl(
        "top", "--source", "direct", "--gateway", stack.gateway, "--engine", stack.engine,
        "--window", "1", *more, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(("columns", "no_color"), WIDTHS)
def test_top_once_prints_every_number_whole(
    served: Stack, in_tmp: Path, columns: str | None, no_color: bool
) -> None:
    run = _top(served, "--once", env=_env(columns, no_color))
    assert run.code == 0, run.err
    assert_clean(run.out)
    # A second snapshot, for the numbers that hold still between two (limits, sizes).
    snap = StackSnapshot.model_validate_json(_top(served, "--json").out)
    assert snap.reached == ["engine", "gateway", "gpu"]
    assert f" / {num(snap.slots_max)}" in run.out
    assert f" / {num(snap.queue_max)}" in run.out
    for gpu in snap.gpus:
        total = None if gpu.mem_total_mib is None else gpu.mem_total_mib / 1024
        assert f" / {num(total, '{:.1f}')} GiB" in run.out
        assert f"{gpu.gpu} {gpu.name}" in run.out


def test_top_formats(served: Stack, in_tmp: Path) -> None:
    as_json = _top(served, "--format", "json")
    snap = StackSnapshot.model_validate_json(as_json.out)
    plain = _top(served, "--format", "plain")
    md = _top(served, "--format", "md")
    assert as_json.code == plain.code == md.code == 0
    assert_clean(plain.out)
    assert f"slots  ░░░░░░░░░░░░ 0 / {num(snap.slots_max)}" in plain.out
    assert "### admission (last 1 s)" in md.out


def test_top_once_fails_when_nothing_answers(in_tmp: Path, refused_url: str) -> None:
    run = llmctl(
        "top", "--once", "--source", "direct", "--gateway", refused_url, "--engine", refused_url,
        "--window", "1",
    )  # fmt: skip
    assert run.code == 1
    assert run.err.startswith("error: nothing answered (")
    assert "hint: is the stack up?" in run.err
    assert "slots" in run.out  # the (empty) snapshot is still printed


def test_no_color_wins_over_a_forced_terminal() -> None:
    """FORCE_COLOR makes rich treat the capture as a terminal: colour then, unless NO_COLOR (or
    TERM=dumb) says no."""
    files = [str(DATA / "bench-v1.json"), str(DATA / "bench-v2-early.json")]
    coloured = llmctl("bench", "compare", *files, env={"FORCE_COLOR": "1"})
    plain = llmctl("bench", "compare", *files, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    dumb = llmctl("bench", "compare", *files, env={"FORCE_COLOR": "1", "TERM": "dumb"})
    assert coloured.code == plain.code == dumb.code == 0
    assert ESC in coloured.out
    assert ESC not in plain.out
    assert ESC not in dumb.out
    assert plain.out.replace(" ", "") == dumb.out.replace(" ", "")


# The stack commands print what they found, not a number a run measured: their JSON rows
# (config's values, status's services, doctor's checks) as the table shows each cell.
STACK_ROWS = {"config": "settings", "status": "services", "doctor": "checks"}
# A Docker engine and a vLLM that cannot be there, so doctor answers at once (not after importing
# vLLM, about 8 s), on any machine.
NO_DOCKER = {
    "DOCKER_HOST": "unix:///nonexistent/llmctl-test/docker.sock",
    "LLMCTL_VLLM_PYTHON": "/nonexistent/llmctl-test/python",
}


def _cells(command: str, row: dict[str, object]) -> list[str]:
    if command == "config":
        value = row["value"]
        shown = (
            "-" if value is None
            else value if isinstance(value, str)
            else str(value).lower() if isinstance(value, bool)
            else repr(value)
        )  # fmt: skip
        return [str(row["key"]), shown, str(row["source"])]
    if command == "status":
        return [str(row[k]) for k in ("name", "state", "health", "url", "detail") if row[k]]
    return [str(row[k]) for k in ("name", "detail")]


@pytest.fixture
def stack_file(in_tmp: Path) -> Path:
    assert llmctl("init", "--preset", "local-sim").code == 0
    return in_tmp


@pytest.mark.parametrize(("columns", "no_color"), WIDTHS)
@pytest.mark.parametrize("command", list(STACK_ROWS))
def test_stack_commands_print_every_value_whole(
    stack_file: Path, command: str, columns: str | None, no_color: bool
) -> None:
    run = llmctl(command, env={**NO_DOCKER, **_env(columns, no_color)})
    as_json = llmctl(command, "--format", "json", env=NO_DOCKER)
    assert run.code == as_json.code  # status: 1, nothing is up
    assert_clean(run.out + run.err)
    rows = json.loads(as_json.out)[STACK_ROWS[command]]
    assert rows
    for row in rows:
        for cell in _cells(command, row):
            assert cell in run.out, (row, cell)


@pytest.mark.parametrize("command", list(STACK_ROWS))
def test_stack_commands_plain_and_md_carry_the_same_values(stack_file: Path, command: str) -> None:
    rows = json.loads(llmctl(command, "--format", "json", env=NO_DOCKER).out)[STACK_ROWS[command]]
    for form in ("plain", "md"):
        run = llmctl(command, "--format", form, env={**NO_DOCKER, "COLUMNS": "40"})
        assert_clean(run.out)
        for row in rows:
            for cell in _cells(command, row):
                assert cell in run.out, (form, row, cell)
