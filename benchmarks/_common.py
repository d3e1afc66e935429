"""What the benchmark scripts share: free ports, readiness polling, child processes (one or several
at once), CPU time, reading /metrics, and a tenants file whose limits never bind (the gateway's
cost with tenants)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from llmctl.gateway.tenants import key_hash

# A child's output goes to a file object, DEVNULL/PIPE, or None (inherited), as Popen takes it.
Output = int | IO[Any] | None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str,
    timeout: float = 30.0,
    ok_status: Sequence[int] = (200,),
    *,
    post_json: dict[str, Any] | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `url` until it answers one of `ok_status`; exit with a clear message if it never does.

    With `post_json` the probe is a POST of that body (for servers that only route completions).
    With `proc`, a child that has already exited fails at once instead of after `timeout`.
    """
    data = None if post_json is None else json.dumps(post_json).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with code {proc.returncode} before ready")
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:  # a non-2xx answer still says the server is up
            status = exc.code
        except OSError as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        if status in ok_status:
            return
        last = f"HTTP {status}"
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout:g} s (last: {last})")


def _stat(pid: int) -> tuple[str, list[str]]:
    """A process's name and the fields of /proc/PID/stat after it (state, ppid, ...)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name in parentheses may hold spaces; the fields after it do not.
        head, _, tail = stat.read().rpartition(")")
    return head.partition("(")[2], tail.split()


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, from /proc (Linux)."""
    return _cpu(_stat(pid)[1])


def process_tree_cpu_seconds(root: int, root_name: str = "root") -> dict[str, float]:
    """User + system CPU time so far of `root` (named `root_name`) and every process below it, summed
    by process name (vLLM names its engine process VLLM::EngineCore, its worker VLLM::Worker)."""
    stats: dict[int, tuple[str, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):  # it ended meanwhile
                stats[int(entry.name)] = _stat(int(entry.name))
    children: dict[int, list[int]] = {}
    for pid, (_, fields) in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent's pid
    tree, frontier = [], [root]
    while frontier:
        tree.append(pid := frontier.pop())
        frontier.extend(children.get(pid, []))
    cpu: dict[str, float] = {}
    for pid in (p for p in tree if p in stats):
        name = root_name if pid == root else stats[pid][0]
        cpu[name] = cpu.get(name, 0.0) + _cpu(stats[pid][1])
    return cpu


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child by PID, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def started(
    args: Sequence[str],
    ready_url: str | None = None,
    *,
    timeout: float = 30.0,
    post_json: dict[str, Any] | None = None,
    stdout: Output = subprocess.DEVNULL,
    stderr: Output = None,
    grace: float = 10.0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` as a child process, wait until `ready_url` answers, and always stop it on exit."""
    proc = subprocess.Popen(list(args), stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    try:
        if ready_url is not None:
            wait_ready(ready_url, timeout, post_json=post_json, proc=proc)
        yield proc
    finally:
        stop(proc, grace)


@contextmanager
def started_together(
    commands: Sequence[tuple[Sequence[str], str]],
    *,
    timeout: float = 60.0,
    stderr: Output = None,
    grace: float = 10.0,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run several `(args, ready_url)` children at once (their start-ups overlap), wait until each
    answers, and always stop every one on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for args, _ in commands:
            procs.append(subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=stderr))
        for proc, (_, url) in zip(procs, commands, strict=True):
            wait_ready(url, timeout, proc=proc)
        yield procs
    finally:
        for proc in procs:
            stop(proc, grace)


def sum_samples(page: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) on a Prometheus text page; 0 if none."""
    total = 0.0
    for family in text_string_to_metric_families(page):
        total += sum(s.value for s in family.samples if s.name == name)
    return total


def by_label(page: str, name: str, label: str) -> dict[str, float]:
    """Each sample of `name` on a Prometheus text page, by the value of its `label`."""
    return {
        s.labels.get(label, ""): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == name
    }


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


TENANT_KEY = "sk-overhead-tenant"  # a benchmark's own throwaway key


def tenants_file(folder: Path) -> Path:
    """Two classes and a tenant whose limits are all set and never bind."""
    path = folder / "tenants.toml"
    path.write_text(
        "[classes.interactive]\nrank = 0\n[classes.batch]\nrank = 1\nshare = 0.1\n"
        'aging_s = 60\n\n[[tenants]]\nname = "bench"\nclass = "interactive"\nweight = 2\n'
        f'keys = ["{key_hash(TENANT_KEY)}"]\nrequests_per_minute = 100000000\n'
        "tokens_per_minute = 1000000000\nmax_concurrent = 100000\n"
    )
    return path
