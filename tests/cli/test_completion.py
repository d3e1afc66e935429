"""Shell completion through Typer's completion protocol, as a shell runs it: the program with
_LLMCTL_COMPLETE set, the words so far in COMP_WORDS. Presets, services and choices complete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmctl.stack.settings import list_presets
from tests.support import REPO


def _complete(cwd: Path, words: str) -> list[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "_LLMCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "llmctl"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_presets_complete(tmp_path: Path) -> None:
    assert _complete(tmp_path, "llmctl init --preset ") == list_presets()
    assert _complete(tmp_path, "llmctl up -p local") == [
        p for p in list_presets() if p.startswith("local")
    ]


def test_services_complete_from_the_stack_at_hand(tmp_path: Path) -> None:
    assert _complete(tmp_path, "llmctl logs ") == ["engine", "gateway", "prometheus"]
    # A docker preset's stack publishes Grafana too (and no engine port, but its logs exist).
    docker = _complete(tmp_path, "llmctl logs --preset llama3.1-8b-h100 ")
    assert {"engine", "gateway", "prometheus", "grafana"} <= set(docker)
    assert _complete(tmp_path, "llmctl logs g") == ["gateway"]
    assert _complete(tmp_path, "llmctl restart gateway e") == ["engine"]


def test_choices_complete(tmp_path: Path) -> None:
    assert _complete(tmp_path, "llmctl bench --arrival ") == ["poisson", "constant", "gamma"]
    assert _complete(tmp_path, "llmctl top --format ") == ["table", "plain", "md", "json"]
    assert _complete(tmp_path, "llmctl sim serve --profile rtx") == ["rtx3090-qwen2.5-14b-awq"]
