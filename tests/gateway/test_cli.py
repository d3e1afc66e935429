"""`llmctl gateway serve` as a real process: bad settings stop it, good ones serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.gateway.client import health_saying
from tests.support import free_port, llmctl_server


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("MAX_ACTIVE", "WEB_CONCURRENCY")}
    full_env.update(env or {})
    return subprocess.run(
        # Port 0: each of these must stop before it listens, and none can race another for a port.
        [sys.executable, "-m", "llmctl", "gateway", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"MAX_ACTIVE": "0"}, "max_active"),
        # A flag's value is named by the flag, a variable's by its key (and the variable).
        (("--max-active", "-3"), {}, "--max-active: must be at least 1"),
        (("--queue-max", "-1"), {}, "--queue-max: must be at least 0"),
        (("--queue-timeout", "0"), {}, "--queue-timeout: must be greater than 0"),
        (("--request-timeout", "-5"), {}, "--request-timeout: must be greater than 0"),
        ((), {"QUEUE_MODE": "drop"}, "queue_mode"),
        ((), {"VLLM_BASE_URL": "localhost:8000"}, "upstreams"),
        (("--workers", "2"), {}, "exactly one process"),
        ((), {"WEB_CONCURRENCY": "4"}, "WEB_CONCURRENCY"),
        (("--api-keys-file", "/nonexistent/keys"), {}, "cannot read"),
    ],
)
def test_invalid_settings_stop_startup_with_a_clear_message(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = _serve(*args, env=env)
    assert result.returncode != 0
    assert "error" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_runs_with_keys_from_files(tmp_path: Path, refused_url: str) -> None:
    port = free_port()  # the gateway CLI does not say which port it got for port 0
    keys = tmp_path / "keys"
    keys.write_text("# one key a line\nk-one\n")
    admin = tmp_path / "admin"
    admin.write_text("adm\n")
    args = ["gateway", "serve", "--port", str(port), "--upstream", refused_url, "--max-active", "3"]
    args += ["--api-keys-file", str(keys), "--admin-key-file", str(admin)]
    url = f"http://127.0.0.1:{port}"
    with llmctl_server(args, ready_url=f"{url}/livez", log=tmp_path / "gw.log"):
        # Nothing listens upstream: the probe's verdict, not the 503 from before its first answer.
        assert health_saying(url, "unreachable", timeout=5.0).status_code == 503
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
        ok_key = {"Authorization": "Bearer k-one"}
        down = httpx.post(f"{url}/v1/chat/completions", json=body, headers=ok_key)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "engine_unavailable"
        limits = httpx.get(f"{url}/admin/limits", headers={"Authorization": "Bearer adm"})
        assert limits.json()["max_active"] == 3
        assert "llmctl_gateway_max_active 3.0" in httpx.get(f"{url}/metrics").text


def test_busy_port_is_a_clear_error_without_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "llmctl", "gateway", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr + result.stdout


def test_indented_comments_in_key_files_are_not_keys(tmp_path: Path) -> None:
    from llmctl.cli.gateway import _read_keys
    from llmctl.core.errors import ConfigError

    keys = tmp_path / "keys"
    keys.write_text("  # an indented comment\n\tk-one  \n")
    assert _read_keys(keys, "API keys") == ["k-one"]
    keys.write_text("   # only a comment\n")
    with pytest.raises(ConfigError, match="holds no key"):
        _read_keys(keys, "API keys")
