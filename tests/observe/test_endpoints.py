"""`top` against a stack that lacks services: no guessed Prometheus or engine address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_top_on_a_stack_without_prometheus_or_engine_address(
    tmp_path: Path, refused_url: str
) -> None:
    # A docker stack with Prometheus off: only the gateway has an address (nothing listens there).
    (tmp_path / "llmctl.toml").write_text(
        f'name = "d"\nruntime = "docker"\n\n[observability]\nprometheus = false\n\n'
        f"[ports]\ngateway = {refused_url.rsplit(':', 1)[1]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCTL")}
    result = subprocess.run(
        [sys.executable, "-m", "llmctl", "top", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # nothing answered (the snapshot still prints)
    data = json.loads(result.stdout)
    assert data["source"] == "direct"
    assert "Prometheus not configured" in data["note"]
    assert "no engine address" in data["note"]
    assert "8000" not in data["source_url"]
    assert data["engine_running"] is None
    assert data["generation_tokens_per_s"] is None
