"""Every command's help at COLUMNS=80 and 120: within the width, flags never cut, conventional
metavars (none on a flag), defaults and environment variables said one way, choices listed, and
`-h` the same as `--help`. The environment variables it names really set what it says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from llmctl.cli import app
from llmctl.cli.help import metavar
from llmctl.core.config import GATEWAY_ENV
from llmctl.stack.settings import env_var_for, list_presets, load_stack
from tests.cli.conftest import llmctl

WIDTHS = ("80", "120")
# What a value's placeholder may be: the conventional types, a named form, or a choice list.
METAVAR = re.compile(r"^(INTEGER|FLOAT|TEXT|PATH|NAME|KEY=VALUE|\[[\w.-]+(\|[\w.-]+)+\])$")
# Typer's own renderings that must not come back.
TYPER_LOOKS = ("<bool>", "<list", "range>", "<int>", "<str>", "<float>", "<path>", "╭", "│")


def _commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    group = group or typer.main.get_command(app)
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


COMMANDS = list(_commands())


def _command(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _help(path: tuple[str, ...], columns: str, flag: str = "--help") -> str:
    run = llmctl(*path, flag, env={"COLUMNS": columns})
    assert run.code == 0, run.err
    assert run.err == ""
    return run.out


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "llmctl")
def test_help_reads_well(path: tuple[str, ...], columns: str) -> None:
    text = _help(path, columns)
    assert text.startswith(f"Usage: {' '.join(('llmctl', *path))}")
    long = [line for line in text.splitlines() if len(line) > int(columns)]
    assert not long, long
    for look in TYPER_LOOKS:
        assert look not in text, look
    # Defaults one way only: in the notes bracket.
    prose = re.sub(r"\[env: [^\]]*\]|\[default: [^\]]*\]", "", " ".join(text.split()))
    assert not re.search(r"(?<![-\w])default\b(?!-)", prose, re.I), prose
    lines = text.partition("\nOptions:\n")[2].splitlines()
    for param in _command(path).params:
        if getattr(param, "hidden", False) or param.param_type_name == "argument":
            continue
        # Every flag whole, on the line that starts its row, with its metavar (none on a flag).
        flag = max(param.opts, key=len)
        row = next(line for line in lines if re.match(rf"^\s+(-\w, )?{flag}( |$)", line))
        shown = metavar(param)
        if shown is None:
            assert re.match(rf"^\s+(-\w, )?{flag}( / --no-[\w-]+)?(  |$)", row), row
        else:
            assert METAVAR.match(shown), (param.opts, shown)
            assert f"{flag} {shown}" in row, row
    assert _help(path, columns, "-h") == text


def _row(text: str, flag: str) -> str:
    """An option's row with its wrapped lines joined."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^\s+(-\w, )?{flag} ", line))
    row = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 8) or line.strip().startswith("-"):
            break
        row.append(line)
    return " ".join(" ".join(row).split())


@pytest.mark.parametrize("command", ["up", "config", "render"])
def test_stack_overrides_name_their_environment_variable_and_it_works(command: str) -> None:
    text = _help((command,), "80")
    flags = re.findall(r"^\s+(--[\w-]+) \S+\s+([\w.]+) \[env: (\w+)\]", text, re.M)
    joined = {flag: _row(text, flag) for flag in re.findall(r"^\s+(--[\w-]+)", text, re.M)}
    keyed = {f: row for f, row in joined.items() if re.search(r" [a-z_]+\.[a-z_]+ ", row)}
    assert len(keyed) >= 10, joined
    values = {"runtime": "docker", "queue_mode": "reject", "bind_address": "127.0.0.2"}
    for flag, row in keyed.items():
        match = re.search(r" ([a-z_]+\.[a-z_]+) \[env: (\w+)\]", row)
        assert match, row
        key, var = match.groups()
        assert var == env_var_for(key)
        value = values.get(key.split(".")[-1], "7s" if "interval" in key else "17")
        loaded = load_stack(preset="local-sim", environ={var: value})
        sources = {k: source for k, _, source in loaded.effective_values()}
        assert sources[key] == f"env {var}", (flag, key, var)
    assert flags or keyed
    assert "[env: MAX_ACTIVE]" in joined["--max-active"]
    assert "[env: LLMCTL_RUNTIME]" in joined["--runtime"]


def test_gateway_serve_names_every_variable_of_its_table() -> None:
    text = " ".join(_help(("gateway", "serve"), "80").split())
    for var in GATEWAY_ENV:
        assert f"env: {var}" in text, var


def test_choices_are_listed() -> None:
    up = " ".join(_help(("up",), "80").split())
    for preset in list_presets():
        assert preset in up
    assert "--runtime [local|docker]" in up
    logs = " ".join(_help(("logs",), "80").split())
    assert "SERVICE One service: engine, gateway, prometheus" in logs
    bench = _help(("bench",), "80")
    assert "--arrival [poisson|constant|gamma]" in bench
    assert "--format [table|plain|md|json]" in bench
    assert "[default: poisson]" in _row(bench, "--arrival")
    assert "--format [table|plain|md|csv|json]" in _help(("bench", "compare"), "80")


def test_defaults_the_code_cannot_compute_are_said_the_same_way() -> None:
    tune = _help(("tune", "max-active"), "80")
    assert "[default: the stack's alert SLOs (ttft, e2e)]" in _row(tune, "--slo")
    assert "[default: 20; at least 0.1]" in _row(tune, "--trial-duration")
    chat = _help(("chat",), "80")
    assert "[default: stream]" in _row(chat, "--stream")
