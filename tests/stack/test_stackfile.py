"""Editing the stack file (what `tune --apply` does): one value changes, everything else stays."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmctl.core.errors import ConfigError, LlmctlError
from llmctl.stack.settings import edit_stack_file, load_stack
from llmctl.stack.stackfile import locator

STACK = """\
# my stack
name = "mine"

[gateway]
# tuned on 2026-01-01
max_active = 4  # keep the comment
queue_max = 10

[ports]
gateway = 18080
engine = 18000
"""


def _set(path: Path, value: int) -> None:
    edit_stack_file(path, {"gateway.max_active": value})


def test_one_value_changes_and_the_rest_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_text(STACK)
    _set(path, 12)
    assert path.read_text() == STACK.replace("max_active = 4  #", "max_active = 12  #")


def test_the_key_or_the_table_is_added_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_text('name = "a"\n\n[gateway]\nqueue_max = 3\n')
    _set(path, 7)
    assert load_stack(config=path, environ={}).spec.gateway.max_active == 7
    assert "queue_max = 3" in path.read_text()
    path.write_text('name = "b"\n')
    _set(path, 9)
    assert path.read_text().endswith("[gateway]\nmax_active = 9\n")


@pytest.mark.parametrize(
    "text",
    [
        'name = "a"\ngateway.max_active = 3\ngateway.queue_max = 5\n',
        'name = "a"\ngateway = { max_active = 3, queue_max = 5 }\n',
    ],
    ids=["dotted", "inline"],
)
def test_dotted_keys_and_inline_tables_are_edited_in_place(tmp_path: Path, text: str) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_text(text)
    _set(path, 11)
    assert path.read_text() == text.replace("max_active = 3", "max_active = 11")


def test_crlf_line_endings_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_bytes(STACK.replace("\n", "\r\n").encode())
    _set(path, 6)
    data = path.read_bytes()
    assert b"max_active = 6  # keep the comment\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_a_file_it_cannot_make_valid_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    broken = 'name = "a"\nsurprise = 1\n'
    path.write_text(broken)
    with pytest.raises(ConfigError, match="surprise"):
        _set(path, 5)
    assert path.read_text() == broken
    assert [p.name for p in tmp_path.iterdir()] == ["llmctl.toml"]


def test_mode_is_kept_and_a_symlinked_file_is_updated_through_its_link(tmp_path: Path) -> None:
    real = tmp_path / "real" / "stack.toml"
    real.parent.mkdir()
    real.write_text(STACK)
    os.chmod(real, 0o600)
    link = tmp_path / "llmctl.toml"
    link.symlink_to(real)
    _set(link, 3)
    assert link.is_symlink()
    assert "max_active = 3" in real.read_text()
    assert oct(real.stat().st_mode & 0o777) == oct(0o600)


def test_a_read_only_file_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_text(STACK)
    os.chmod(path, 0o444)
    with pytest.raises(LlmctlError, match="read-only"):
        _set(path, 3)
    assert path.read_text() == STACK


def test_a_planted_temporary_symlink_is_not_written_through(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_text(STACK)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (tmp_path / "llmctl.toml.tmp").symlink_to(victim)
    _set(path, 5)
    assert victim.read_text() == "untouched\n"
    assert "max_active = 5" in path.read_text()


def test_locator_finds_tables_dotted_and_inline_keys() -> None:
    text = 'name = "a"\n\n[gateway]\nmax_active = 3\n[engine]\nsim = { profile = "x" }\nports.gateway = 1\n'
    locate = locator(text)
    assert locate("gateway.max_active") == (4, 1)
    assert locate("engine.sim.profile") == (6, 9)
    assert locate("engine.ports.gateway") == (7, 1)
    assert locate("gateway.unknown") == (3, 1)  # the nearest known parent: the table header
    assert locate("nowhere") is None


def test_a_typo_names_the_line_and_suggests_the_key(tmp_path: Path) -> None:
    path = tmp_path / "llmctl.toml"
    path.write_text(STACK.replace("max_active = 4", "max_activ = 4"))
    with pytest.raises(ConfigError) as err:
        load_stack(config=path, environ={})
    message = str(err.value)
    assert f"{path}:6:1: gateway.max_activ: unknown key; did you mean 'max_active'?" in message
