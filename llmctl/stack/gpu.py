"""The NVIDIA GPUs of this machine as the driver reports them: `nvidia-smi`'s CSV query, read once.

`nvidia-smi --query-gpu=... --format=csv,noheader,nounits` prints one line per device,
`0, NVIDIA GeForce RTX 3090, 550.54.14, 24576, 1024, 23552` (memory in MiB); a field the device
cannot report reads `[N/A]` (MIG slices, some laptop parts). No `nvidia-smi`, one that fails (no
driver loaded: exit 9) or one that hangs is a finding, never an exception.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass

from llmctl.core.command import run_command

QUERY = "index,name,driver_version,memory.total,memory.used,memory.free"
TIMEOUT_S = 5.0
MIB = 1 << 20


@dataclass(frozen=True)
class Device:
    """One GPU: its index, name, driver, and memory in bytes (None: not reported)."""

    index: int
    name: str
    driver: str
    total: int | None
    used: int | None
    free: int | None


@dataclass(frozen=True)
class GpuSnapshot:
    """What `nvidia-smi` said: the devices, or why there are none to be seen."""

    devices: list[Device]
    problem: str = ""  # no nvidia-smi, no driver, a timeout, output that makes no sense
    binary: str | None = None

    @property
    def driver(self) -> str | None:
        return self.devices[0].driver if self.devices else None


def _mib(text: str) -> int | None:
    text = text.strip()
    try:
        return int(float(text)) * MIB
    except ValueError:  # [N/A], [Not Supported]
        return None


def parse(text: str) -> list[Device]:
    """The devices in `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits` output;
    ValueError when a line is not such a row."""
    devices = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(QUERY.split(",")):
            raise ValueError(f"expected {len(QUERY.split(','))} fields, got {row!r}")
        index, name, driver, total, used, free = (field.strip() for field in row)
        devices.append(Device(int(index), name, driver, _mib(total), _mib(used), _mib(free)))
    return devices


def snapshot(binary: str = "nvidia-smi", timeout_s: float = TIMEOUT_S) -> GpuSnapshot:
    """Ask the driver, through `binary` on PATH, for its devices."""
    found = shutil.which(binary)
    if found is None:
        return GpuSnapshot([], f"no `{binary}` on PATH: no NVIDIA driver is installed")
    result = run_command(
        [found, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], timeout_s=timeout_s
    )
    if not result.ok:
        said = result.text.splitlines()[0] if result.text else f"exit {result.returncode}"
        return GpuSnapshot([], f"{binary} failed: {said}", found)
    try:
        devices = parse(result.stdout)
    except ValueError as exc:
        return GpuSnapshot([], f"{binary} answered something unexpected: {exc}", found)
    return GpuSnapshot(devices, "" if devices else f"{binary} lists no GPU", found)
