"""Fixtures: a real simulator behind a real gateway (admin key set), and a way to run the CLI in
this process with its output captured (not a terminal) under a given environment."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmctl.cli import main
from tests.tune.conftest import ADMIN_KEY, Stack, run_stack

# What would make rich think it writes to a terminal, or change how it looks, if the caller's
# shell (or a CI runner) had it set.
SCRUBBED = ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS", "LINES", "TERM")
ADMIN_ENV = "LLMCTL_TEST_ADMIN_KEY"


@dataclass
class Run:
    code: int
    out: str
    err: str


def llmctl(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Run:
    """`llmctl ARGS` in this process, stdout and stderr captured, with the terminal-related
    variables of SCRUBBED unset unless `env` sets them."""
    out, err = io.StringIO(), io.StringIO()
    saved = {name: os.environ.get(name) for name in (*SCRUBBED, *(env or {}))}
    for name in SCRUBBED:
        os.environ.pop(name, None)
    os.environ.update(env or {})
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _stdin(stdin),
        ):
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return Run(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(text: str | None) -> Iterator[None]:
    if text is None:
        yield
        return
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The tiny simulator (20x time) behind a gateway with an admin key, for the whole package."""
    with run_stack(tmp_path_factory.mktemp("cli"), "--time-scale", "20") as stack:
        yield stack


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working folder with no stack file, and the admin key in ADMIN_ENV."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ADMIN_ENV, ADMIN_KEY)
    for name in ("MAX_ACTIVE", "QUEUE_MAX", "QUEUE_MODE", "LLMCTL_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path
