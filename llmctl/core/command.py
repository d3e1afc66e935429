"""Running a program to completion and reading its answer: the one subprocess runner.

(Services that must outlive the CLI are started differently, detached: llmctl.stack.processes.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from llmctl.core.errors import RuntimeBackendError

TAIL_LINES = 15


@dataclass(frozen=True)
class CommandResult:
    """How a program ended: its exit code (127: it could not start, 124: it timed out) and output."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def text(self) -> str:
        """What it said: stdout, or stderr when stdout is empty."""
        return self.stdout.strip() or self.stderr.strip()

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join((self.stderr or self.stdout).strip().splitlines()[-lines:])


def run_command(argv: Sequence[str], *, timeout_s: float | None = None) -> CommandResult:
    """Run `argv` (no shell), capture its output; never raises for the program's own failure."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]}: no answer within {timeout_s:g} s")
    except OSError as exc:
        return CommandResult(127, "", f"{argv[0]}: {exc.strerror or exc}")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def check_command(argv: Sequence[str], what: str, *, timeout_s: float | None = None) -> str:
    """Run `argv`; its stdout, or RuntimeBackendError naming `what` with the last lines it said."""
    result = run_command(argv, timeout_s=timeout_s)
    if not result.ok:
        raise RuntimeBackendError(
            f"{what} failed (exit {result.returncode}):\n{result.tail()}",
            command=list(argv),
            returncode=result.returncode,
            stderr=result.stderr,
        )
    return result.stdout
