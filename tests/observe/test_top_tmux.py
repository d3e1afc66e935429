"""`llmctl top` in a real terminal (tmux): it draws the live view, and `q` or Ctrl-C quits cleanly."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.observe.conftest import MAX_ACTIVE, LiveStack
from tests.support import REPO, eventually

TMUX = shutil.which("tmux")
pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux not installed (Debian tmux)"),
    pytest.mark.timeout(120),
]


class Tmux:
    """A private tmux server (its own socket), killed at the end: never the user's."""

    def __init__(self) -> None:
        self.socket = f"llmctl-test-{os.getpid()}-{time.monotonic_ns()}"

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            [TMUX or "tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode != 0:
            raise RuntimeError(f"tmux {args}: {result.stderr}")
        return result.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def wait_for(self, *texts: str, timeout: float = 30.0) -> str:
        def shown() -> str:
            screen = self.screen()
            size = self("display", "-p", "-t", "top", "#{pane_width}x#{pane_height}").strip()
            assert all(t in screen for t in texts), f"{texts} not on the {size} screen:\n{screen}"
            return screen

        return eventually(shown, timeout=timeout, interval=0.25)

    def kill(self) -> None:
        subprocess.run([TMUX or "tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_top_draws_in_tmux_and_quits(live_stack: LiveStack, tmp_path: Path, quit_key: str) -> None:
    rc = tmp_path / "rc"
    top = shlex.join(
        [
            sys.executable, "-m", "llmctl", "top", "--prometheus", live_stack.prometheus,
            "--gateway", live_stack.gateway, "--engine", live_stack.engine, "--interval", "0.5",
        ]
    )  # fmt: skip
    # The shell records top's exit status (tmux 3.3 reports a dead pane's status unreliably); its
    # no-op INT trap keeps it alive through Ctrl-C while top gets the default SIGINT handling.
    # COLUMNS/LINES from the test's own environment would override the pane's real size.
    command = f"trap : INT; unset COLUMNS LINES; {top}; echo $? > {shlex.quote(str(rc))}"
    tmux = Tmux()
    try:
        tmux("new-session", "-d", "-s", "top", "-x", "110", "-y", "40", "-c", str(REPO))
        tmux("set-option", "-t", "top", "remain-on-exit", "on")
        tmux("respawn-pane", "-k", "-t", "top", f"bash -c {shlex.quote(command)}")
        screen = tmux.wait_for("source: prometheus", "admission", "history")
        assert f"/ {MAX_ACTIVE}" in screen
        assert "GPU" in screen
        tmux("send-keys", "-t", "top", quit_key)

        def exit_status() -> str:
            assert rc.exists(), f"top did not quit on {quit_key}:\n{tmux.screen()}"
            return rc.read_text().strip()

        assert eventually(exit_status, timeout=15, interval=0.2) == "0"
        # The alternate screen is gone: the terminal shows what was there before, not the view.
        assert "admission" not in tmux.screen()
    finally:
        tmux.kill()
