"""The one file writer: whole or nothing, modes kept, links followed, planted paths never used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmctl.core.errors import LlmctlError
from llmctl.core.files import check_writable, write_file


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_file_gets_the_default_mode_or_0600_when_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_file(tmp_path / "a.txt", "a\n")
        write_file(tmp_path / ".env", "SECRET=1\n", private=True)
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "a\n"
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / ".env") == 0o600


def test_an_existing_file_keeps_its_mode_and_private_narrows_it(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_file(path, "new")
    assert (path.read_text(), _mode(path)) == ("new", 0o640)
    write_file(path, "newer", private=True)
    assert _mode(path) == 0o600


def test_bytes_are_written_as_given(tmp_path: Path) -> None:
    write_file(tmp_path / "b", b"a\r\nb\r\n")
    assert (tmp_path / "b").read_bytes() == b"a\r\nb\r\n"


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_file(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_read_only_files_and_folders_are_refused_with_the_old_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "ro"
    path.write_text("keep")
    os.chmod(path, 0o444)
    with pytest.raises(LlmctlError, match="read-only"):
        write_file(path, "x")
    with pytest.raises(LlmctlError, match="read-only"):
        check_writable(path)
    assert path.read_text() == "keep"
    with pytest.raises(LlmctlError, match="folder"):
        write_file(tmp_path, "x")
    with pytest.raises(LlmctlError, match="does not exist"):
        check_writable(tmp_path / "missing" / "f")


def test_planted_temporary_paths_are_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    for name in ("out.tmp", ".out.tmp", "out.txt.tmp", ".out.txt.tmp"):
        (tmp_path / name).symlink_to(victim)
    write_file(tmp_path / "out.txt", "data")
    assert victim.read_text() == "untouched"
    assert (tmp_path / "out.txt").read_text() == "data"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """A write that fails half-way (here: the file-size limit, EFBIG) is an error, and the old
    content is still there."""
    path = tmp_path / "big"
    path.write_text("old content")
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from llmctl.core.errors import LlmctlError\n"
        "from llmctl.core.files import write_file\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_file(Path(sys.argv[1]), 'x' * 100_000)\n"
        "except LlmctlError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3, done.stderr
    assert "cannot write" in done.stdout
    assert path.read_text() == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]
