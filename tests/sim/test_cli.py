"""`llmctl sim serve` flags: every flag has help; bad values are a red error and a non-zero exit."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from llmctl.cli import main

FLAGS = (
    "--host", "--port", "--model", "--profile", "--time-scale", "--max-num-seqs",
    "--num-gpu-blocks", "--block-size", "--max-num-batched-tokens", "--seed", "--startup-delay",
    "--error-rate", "--drop-rate", "--stall-rate",
)  # fmt: skip


def llmctl(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run the CLI in-process (through the same error handler as the console script)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_help_lists_every_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = llmctl(capsys, monkeypatch, "sim", "serve", "--help")
    assert code == 0
    for flag in FLAGS:
        assert flag in out, flag
    for profile in ("tiny", "rtx3090-qwen2.5-14b-awq", "h100-llama3.1-8b"):
        assert profile in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--profile", "a100-imaginary"), "unknown simulator profile"),
        (("--error-rate", "1.5"), "error-rate must be between 0 and 1"),
        (("--drop-rate", "-0.1"), "drop-rate must be between 0 and 1"),
        (("--time-scale", "0"), "time-scale must be > 0"),
        (("--max-num-seqs", "0"), "max-num-seqs must be at least 1"),
        (("--startup-delay", "-1"), "startup-delay must be >= 0"),
    ],
)
def test_bad_values_fail_with_a_message(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    code, _, err = llmctl(capsys, monkeypatch, "sim", "serve", "--port", "0", *args)
    assert code != 0
    assert "error:" in err
    assert message in " ".join(err.split())


def test_a_busy_port_is_a_red_error_not_a_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "llmctl", "sim", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
