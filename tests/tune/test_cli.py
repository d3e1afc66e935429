"""`llmctl tune max-active` refuses bad input with a message and a non-zero exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tune.conftest import run_cli


@pytest.fixture(autouse=True)
def _no_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder with no admin key in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMCTL_ADMIN_KEY", raising=False)
    monkeypatch.setenv("TUNE_KEY", "some-key")


def test_without_an_admin_key_it_says_how_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "--gateway", "http://127.0.0.1:9")
    assert code == 2
    assert "--admin-key-env" in out


def test_an_unset_admin_key_variable_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "--admin-key-env", "NOT_SET_ANYWHERE")
    assert code == 2
    assert "NOT_SET_ANYWHERE" in out


def test_max_below_min_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "--admin-key-env", "TUNE_KEY", "--min", "8", "--max", "4")
    assert code == 2
    assert "--max" in out


def test_apply_without_a_stack_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "--admin-key-env", "TUNE_KEY", "--apply")
    assert code == 2
    assert "llmctl.toml" in out


def test_a_bad_slo_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "--admin-key-env", "TUNE_KEY", "--slo", "ttft=fast")
    assert code == 2
    assert "fast" in out  # the value it refused, and why
    assert "duration" in out


def test_an_unreachable_gateway_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], refused_url: str
) -> None:
    code, out = run_cli(capsys, "--admin-key-env", "TUNE_KEY", "--gateway", refused_url)
    assert code == 1
    assert "unreachable" in out
    assert "Traceback" not in out


def test_apply_refuses_a_gateway_that_is_not_the_stacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "llmctl.toml").write_text('name = "s"\n[ports]\ngateway = 18080\n')
    code, out = run_cli(
        capsys, "--admin-key-env", "TUNE_KEY", "--apply", "--gateway", "http://127.0.0.1:9999"
    )
    assert code == 2
    assert "http://127.0.0.1:18080" in out


def test_a_preemption_limit_needs_engine_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(
        capsys,
        "--admin-key-env", "TUNE_KEY", "--gateway", "http://127.0.0.1:9999",
        "--max-preemptions-per-s", "0.1",
    )  # fmt: skip
    assert code == 2
    assert "--engine-metrics" in out


def test_an_unwritable_json_output_is_refused_before_tuning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, refused_url: str
) -> None:
    # Nothing at the gateway: a tune run would fail differently.
    missing = tmp_path / "nonexist" / "t.json"
    code, out = run_cli(capsys, "--gateway", refused_url, "--admin-key-env", "TUNE_KEY",
                        "--json", str(missing))  # fmt: skip
    assert code == 2
    assert "does not exist" in out
    assert "Traceback" not in out


def test_apply_to_a_read_only_stack_file_is_refused_before_tuning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file = tmp_path / "llmctl.toml"
    stack_file.write_text('name = "s"\n')
    stack_file.chmod(0o444)
    code, out = run_cli(capsys, "--admin-key-env", "TUNE_KEY", "--apply")
    assert code == 2
    assert "read-only" in out
    assert "Traceback" not in out
