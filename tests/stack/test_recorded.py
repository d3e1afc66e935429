"""A broken stack file locks nobody out: `status`, `logs` and `down` act on the stack `up`
recorded, and say what is wrong with the file, where, and what was probably meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.core.errors import StackFileError
from llmctl.stack.recorded import fallback, named_in
from llmctl.stack.settings import save_spec
from llmctl.stack.spec import StackSpec
from tests.stack.test_cli import NO_DOCKER, llmctl
from tests.support import free_port


def _recorded(cwd: Path, name: str = "local-sim") -> StackSpec:
    """A stack as `up` records it, on ports nothing listens on."""
    spec = StackSpec.model_validate(
        {
            "name": name,
            "ports": {"gateway": free_port(), "engine": free_port(), "prometheus": free_port()},
        }
    )
    save_spec(spec, cwd / ".llmctl" / name)
    return spec


def test_status_logs_and_down_work_on_the_recorded_stack_despite_a_typo(tmp_path: Path) -> None:
    spec = _recorded(tmp_path)
    (tmp_path / "llmctl.toml").write_text('name = "local-sim"\n\n[gateway]\nmax_activ = 6\n')
    status = llmctl(tmp_path, "status", env=NO_DOCKER)
    assert status.returncode == 1, status.stderr  # nothing runs: it says so, for the recorded stack
    assert f"127.0.0.1:{spec.ports.gateway}" in status.stdout
    assert "stopped" in status.stdout
    # The file's error, where it is, and the likely fix; then what the command did instead.
    assert "llmctl.toml:4:1: gateway.max_activ: unknown key; did you mean 'max_active'?" in (
        status.stderr
    )
    assert "acts on stack local-sim as `llmctl up` recorded it" in status.stderr
    logs = llmctl(tmp_path, "logs", "gateway", "--tail", "5", env=NO_DOCKER)
    assert logs.returncode == 0, logs.stderr
    down = llmctl(tmp_path, "down", env=NO_DOCKER)
    assert down.returncode == 0, down.stderr
    assert "nothing was running" in down.stdout
    assert "did you mean 'max_active'?" in down.stderr


def test_a_file_that_is_not_toml_is_located_too(tmp_path: Path) -> None:
    _recorded(tmp_path, "mine")
    (tmp_path / "llmctl.toml").write_text('name = "mine"\n[gateway\n')
    status = llmctl(tmp_path, "status", env=NO_DOCKER)
    assert "acts on stack mine" in status.stderr, status.stderr
    assert "llmctl.toml:2:9: not valid TOML" in status.stderr


def test_the_stack_the_file_names_wins_over_other_recorded_ones(tmp_path: Path) -> None:
    _recorded(tmp_path, "alpha")
    beta = _recorded(tmp_path, "beta")
    path = tmp_path / "llmctl.toml"
    path.write_text('name = "beta"\n[ports]\ngateway = "x"\n')
    assert named_in(path) == "beta"
    spec, notes = fallback(StackFileError("bad", str(path)), tmp_path)
    assert spec == beta
    assert "bad" in notes[0]
    # Unreadable, and two stacks recorded, none running: no way to tell, so the error stands.
    path.write_text("name = \n")
    with pytest.raises(StackFileError, match="stacks recorded here: alpha, beta"):
        fallback(StackFileError("bad", str(path)), tmp_path)


def test_with_nothing_recorded_the_error_is_the_answer(tmp_path: Path) -> None:
    (tmp_path / "llmctl.toml").write_text("[gateway]\nmax_active = 0\n")
    status = llmctl(tmp_path, "status", env=NO_DOCKER)
    assert status.returncode == 1
    assert "gateway.max_active: must be at least 1" in status.stderr
    assert "Traceback" not in status.stderr
