"""One error style everywhere: a red `error:` line in the user's terms (flags, not field names),
at most a `hint:` line after it, nothing on stdout, and a meaningful exit code (2 for a mistake
in the command line, 1 for anything else that failed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import llmctl

BENCH = ("bench", "--target", "http://127.0.0.1:9", "--concurrency", "1")
# Words that only the parser's or pydantic's own messages use.
LEAKS = ("Input should", "Value error", "╭", "Traceback", "duration_s", "input_spread", "^[")

CASES = [
    # The parser's mistakes, said like every other error.
    (("bench", "--foo"), 2, "no such option --foo", "usage: llmctl bench [OPTIONS]"),
    (("bench", "--concurrencyy", "1"), 2, "no such option", "did you mean --concurrency?"),
    (("bnech",), 2, "no such command 'bnech'", "did you mean 'bench'?"),
    (("bench", "compare"), 2, "missing argument A", "usage: llmctl bench compare [OPTIONS] A B"),
    (("up", "--max-active", "x"), 2, "--max-active: must be a whole number (got 'x')", "--help"),
    (
        ("tune", "max-active", "--trial-duration", "0"),
        2,
        "--trial-duration: must be at least 0.1",
        None,
    ),
    (("top", "--source", "x"), 2, "--source: must be one of auto, prometheus, direct", None),
    (("up", "--runtime", "k8s"), 2, "--runtime: must be one of local, docker (got 'k8s')", None),
    # Values checked by llmctl's models, named by their flags.
    ((*BENCH, "--duration", "0"), 2, "--duration: must be greater than 0", None),
    ((*BENCH, "--input-spread", "2"), 2, "--input-spread: must be less than 1", None),
    (("gateway", "serve", "--max-active", "0"), 1, "--max-active: must be at least 1", None),
    (("tenants", "add", "t", "--weight", "0"), 2, "--weight: must be greater than 0", None),
    (("config", "--scrape-interval", "5x"), 1, "'5x' is not a duration", None),
    (("config", "--preset", "nosuch"), 1, "no preset named 'nosuch'", None),
    # The stack's day-two commands.
    (("logs", "--tail", "-2"), 2, "--tail: must be a number of lines, 0 or more (got -2)", None),
    (("logs", "--since", "5x"), 2, "--since: must be a duration back from now", None),
    (("restart", "nosuch"), 2, "no service 'nosuch' in stack local-sim: engine, gateway", None),
    (("status", "--format", "xml"), 2, "--format: must be one of table, plain, md, json", None),
    # A next step that is obvious gets said.
    (("chat",), 2, "nothing to say", 'llmctl chat "Hello"'),
]


@pytest.mark.parametrize(("args", "code", "message", "hint"), CASES, ids=lambda v: str(v))
def test_errors_have_one_style(
    in_tmp: Path, args: tuple[str, ...], code: int, message: str, hint: str | None
) -> None:
    run = llmctl(*args, stdin="")
    assert run.code == code, run.err
    assert run.out == ""
    lines = run.err.splitlines()
    assert lines[0].startswith("error: "), run.err
    assert message in run.err, run.err
    hints = [line for line in lines if line.startswith("hint: ")]
    assert len(hints) <= 1
    assert lines.index(hints[0]) == len(lines) - 1 if hints else True
    if hint is not None:
        assert hints, run.err
        assert hint in hints[0]
    for leak in LEAKS:
        assert leak not in run.err, leak


def test_help_and_success_exit_0_a_bare_group_2(in_tmp: Path) -> None:
    assert llmctl("--version").code == 0
    assert llmctl("bench", "-h").code == 0
    bare = llmctl("bench")
    assert bare.code == 2
    assert bare.out.startswith("Usage: llmctl bench [OPTIONS] COMMAND [ARGS]...")
