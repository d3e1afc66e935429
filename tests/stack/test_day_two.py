"""Day two on a real local-sim stack: `up` on the running stack changes the gateway's limit live
while a stream of requests sees no error, restarts only what changed, agrees with `tune --apply`;
`restart`, `logs --tail/--since/--timestamps`, `status --json`, and a broken stack file."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from llmctl.core.admin import GatewayAdmin
from llmctl.stack import processes
from llmctl.stack.credentials import ADMIN_KEY, read_env_file
from llmctl.stack.settings import edit_stack_file
from tests.stack.test_local_e2e import RUN, llmctl, stack_dir  # noqa: F401 (a fixture)
from tests.support import eventually, free_port

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ")


@dataclass
class Stream:
    """Clients sending streamed completions back to back; every answer and failure is kept."""

    url: str
    clients: int = 4
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        body = {"prompt": "hello", "max_tokens": 24, "stream": True}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    with client.stream("POST", "/v1/completions", json=body) as resp:
                        text = resp.read().decode()
                        self.statuses[resp.status_code] += 1
                        if resp.status_code != 200 or "[DONE]" not in text or '"error"' in text:
                            self.failures.append(f"{resp.status_code}: {text[-200:]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Stream:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def served(self) -> int:
        return self.statuses[200]


def _pids(cwd: Path) -> dict[str, int]:
    records = {p.stem: processes.read_pidfile(p) for p in (cwd / RUN).glob("*.pid")}
    return {name: r.pid for name, r in records.items() if r is not None}


@pytest.mark.slow
def test_day_two_on_a_running_stack(stack_dir: Path) -> None:  # noqa: F811
    assert llmctl(stack_dir, "init").returncode == 0
    gw, engine = free_port(), free_port()
    flags = ["--gateway-port", str(gw), "--engine-port", str(engine)]
    flags += ["--set", "observability.prometheus=false", "--set", "engine.sim.time_scale=10"]
    up = llmctl(stack_dir, "up", *flags, "--max-active", "2")
    assert up.returncode == 0, up.stdout + up.stderr
    url = f"http://127.0.0.1:{gw}"
    key = read_env_file(stack_dir / ".llmctl" / "local-sim" / ".env")[ADMIN_KEY]
    with GatewayAdmin(url, key, source="test") as admin:
        _live_changes(stack_dir, flags, url, admin)
    _restart_logs_status_and_a_broken_file(stack_dir)


def _live_changes(stack_dir: Path, flags: list[str], url: str, admin: GatewayAdmin) -> None:  # noqa: F811
    before = _pids(stack_dir)

    # The limit changes under load: no request fails, nothing restarts.
    with Stream(url) as stream:
        eventually(lambda: stream.served() >= 8, timeout=60, interval=0.1, what="load running")
        changed = llmctl(stack_dir, "up", *flags, "--max-active", "5")
        assert changed.returncode == 0, changed.stdout + changed.stderr
        at_change = stream.served()
        eventually(lambda: stream.served() >= at_change + 8, timeout=60, interval=0.1)
    assert stream.failures == []
    assert set(stream.statuses) == {200}
    assert "gateway.max_active: 2 -> 5  (changed live)" in changed.stdout
    assert "no restart, no request dropped" in changed.stdout
    assert "restarted" not in changed.stdout
    assert admin.get().max_active == 5
    assert _pids(stack_dir) == before

    # What `tune --apply` leaves behind (the limit live and in the file): `up` agrees, quietly.
    admin.put(max_active=7)
    edit_stack_file(stack_dir / "llmctl.toml", {"gateway.max_active": 7})
    agreed = llmctl(stack_dir, "up", *flags)
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert "gateway.max_active: 5 -> 7  (already live)" in agreed.stdout
    assert "note:" not in agreed.stderr
    assert _pids(stack_dir) == before

    # An engine setting restarts the engine alone.
    engine_change = llmctl(stack_dir, "up", *flags[:-2], "--set", "engine.sim.time_scale=20")
    assert engine_change.returncode == 0, engine_change.stdout + engine_change.stderr
    assert "engine.sim.time_scale: 10.0 -> 20.0" in engine_change.stdout
    assert "restarted engine: its configuration changed" in engine_change.stdout
    after = _pids(stack_dir)
    assert after["engine"] != before["engine"]
    assert after["gateway"] == before["gateway"]
    assert admin.get().max_active == 7  # the gateway kept its live limit

    # --force-recreate restarts every service, changed or not; the gateway starts at the file's 7.
    forced = llmctl(stack_dir, "up", *flags[:-2], "--set", "engine.sim.time_scale=20",
                    "--force-recreate")  # fmt: skip
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "restarted engine: --force-recreate" in forced.stdout
    assert "restarted gateway: --force-recreate" in forced.stdout
    recreated = _pids(stack_dir)
    assert recreated["engine"] != after["engine"]
    assert recreated["gateway"] != after["gateway"]
    assert admin.get().max_active == 7


def _restart_logs_status_and_a_broken_file(stack_dir: Path) -> None:  # noqa: F811
    after = _pids(stack_dir)
    restarted = llmctl(stack_dir, "restart", "gateway")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert _pids(stack_dir)["gateway"] != after["gateway"]
    assert _pids(stack_dir)["engine"] == after["engine"]

    status = llmctl(stack_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["schema"] == "llmctl.status/1"
    assert report["ready"] is True
    assert {s["name"]: s["state"] for s in report["services"]}["gateway"] == "running"

    # The gateway's log as it was before the restart is gone; its new one tells the start-up.
    logs = llmctl(stack_dir, "logs", "gateway", "--tail", "2", "--timestamps")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert len(lines) == 2, logs.stdout
    assert all(STAMP.match(line) for line in lines), lines
    recent = llmctl(stack_dir, "logs", "--since", "10m")
    assert "engine     | " in recent.stdout
    assert "gateway    | " in recent.stdout
    assert "limits at start-up" in recent.stdout
    time.sleep(1.5)
    none = llmctl(stack_dir, "logs", "gateway", "--since", "1s")
    assert none.returncode == 0
    assert "limits at start-up" not in none.stdout

    # A typo in the stack file: still status and down, with the file's error and a suggestion.
    path = stack_dir / "llmctl.toml"
    path.write_text(path.read_text().replace("max_active = 7", "max_activ = 7"))
    broken = llmctl(stack_dir, "status")
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert "did you mean 'max_active'?" in broken.stderr
    assert re.search(r"llmctl\.toml:\d+:1: gateway\.max_activ: unknown key", broken.stderr)
    down = llmctl(stack_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _pids(stack_dir)
