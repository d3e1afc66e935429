"""The user-facing error tree.

    LlmctlError            -- shown to the user as a red message, exit code 1
      +-- ConfigError      -- a stack file, flag or environment variable has a bad value
      |     +-- StackFileError -- the stack's settings do not load (commands on a running
      |                           stack fall back to what `up` recorded)
      +-- UsageError       -- the command line itself is wrong (exit code 2)
      +-- RuntimeBackendError -- docker / local process management failed
      +-- TargetError      -- a running stack, engine or Prometheus could not be reached or answered badly

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class LlmctlError(Exception):
    """An error whose message is meant for the user; `hint`, when there is one, the obvious next
    step (shown on a line of its own)."""

    exit_code = 1

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(LlmctlError):
    """A configuration value is missing or invalid."""


class StackFileError(ConfigError):
    """The stack's settings (its file, with the environment and flags on top) do not load."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class UsageError(LlmctlError):
    """The command line is wrong."""

    exit_code = 2


class RuntimeBackendError(LlmctlError):
    """Starting, stopping or inspecting a stack's processes or containers failed.

    When a command failed, `command`, `returncode` and `stderr` say which one and how.
    """

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr


class TargetError(LlmctlError):
    """A server llmctl talks to (gateway, engine, Prometheus) is unreachable or misbehaves."""
