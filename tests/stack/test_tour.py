"""The README's tour, line by line, on the local-sim stack in a scratch folder.

The commands are read from README.md, so the tour cannot drift from what works. What this machine
lacks and what a test cannot wait for is changed, and only that (SUBSTITUTIONS): the GPU preset
becomes local-sim, the benchmark and tuning runs are shorter; ports, the simulator's speed and
the scrape interval come from the environment, which leaves every command line as written.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmctl.stack import processes
from tests.support import REPO, default_sigint, free_port

SUBSTITUTIONS = {
    "--preset qwen2.5-14b-awq-3090": "--preset local-sim",  # no GPU here
    "--duration 30": "--duration 3",
    "--apply": "--apply --trial-duration 2 --warmup 0.5 --max 16",
}
SCRUB = ("MAX_ACTIVE", "QUEUE_MODE", "QUEUE_MAX", "LLMCTL_API_KEYS", "LLMCTL_ADMIN_KEY")


def tour_commands() -> list[str]:
    """Each command of the tour's code block, comments dropped, `a && b` as two."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## A tour\s+```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README.md has no tour"
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("#", 1)[0].strip()
        commands += [part.strip() for part in command.split("&&") if part.strip()]
    return commands


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB and not k.startswith("LLMCTL__")}
    return {
        **env,
        "NO_COLOR": "1",
        "COLUMNS": "120",
        "LLMCTL__PORTS__GATEWAY": str(free_port()),
        "LLMCTL__PORTS__ENGINE": str(free_port()),
        "LLMCTL__PORTS__PROMETHEUS": str(free_port()),
        "LLMCTL__ENGINE__SIM__TIME_SCALE": "10",
        "LLMCTL__OBSERVABILITY__SCRAPE_INTERVAL": "1s",
    }


def _follow(argv: list[str], cwd: Path, env: dict[str, str], until: str) -> tuple[int, str]:
    """A command that follows (`logs -f`): run it until it printed `until`, then Ctrl-C it."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    seen: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if until in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return code, "".join(seen)


@pytest.mark.slow
def test_the_readme_tour_runs_line_by_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    commands = tour_commands()
    assert commands[0].startswith("llmctl init")
    assert commands[-1] == "llmctl down"
    said: dict[str, str] = {}
    try:
        for command in commands:
            for written, instead in SUBSTITUTIONS.items():
                command = command.replace(written, instead)
            argv = [sys.executable, "-m", "llmctl", *shlex.split(command)[1:]]
            if "-f" in argv:
                code, out = _follow(argv, tmp_path, env, until="limits at start-up")
                assert "limits at start-up" in out, out
            else:
                done = subprocess.run(
                    argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
                )
                code, out = done.returncode, done.stdout + done.stderr
            assert code == 0, f"`{command}` exited {code}:\n{out}"
            said[command] = out
        # What the tour promises along the way.
        live = said["llmctl up --max-active 12 --queue-max 32"]
        assert "gateway.max_active: 8 -> 12  (changed live)" in live
        assert "restarted" not in live
        assert "max_active = " in (tmp_path / "llmctl.toml").read_text()
        assert (tmp_path / "report.html").stat().st_size > 10_000
        assert {"before.json", "after.json"} <= {p.name for p in tmp_path.iterdir()}
    finally:
        records = [processes.read_pidfile(p) for p in tmp_path.glob(".llmctl/*/run/*.pid")]
        processes.stop_all([r for r in records if r is not None], grace=2)


def test_tune_apply_without_a_stack_file_says_to_run_init(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "LLMCTL_ADMIN_KEY": "some-key"}
    done = subprocess.run(
        [sys.executable, "-m", "llmctl", "tune", "max-active", "--apply"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "`llmctl init --preset local-sim`" in done.stderr
