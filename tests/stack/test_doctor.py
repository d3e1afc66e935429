"""`llmctl doctor` for GPU stacks, against `nvidia-smi` programs put on PATH that answer as the
real one does (CSV rows, `[N/A]`, the no-driver failure), and for real where there is none:
driver, devices, free memory, the model's fit, disk, ports, every problem in one run."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest

from llmctl.stack import gpu
from llmctl.stack.doctor import diagnose
from llmctl.stack.reports import Check
from llmctl.stack.settings import load_stack, parse_set
from tests.stack.test_cli import NO_DOCKER, llmctl
from tests.support import free_port

GIB_MIB = 1024
QWEN = "qwen2.5-14b-awq-3090"  # AWQ 14B, 8192 tokens, 0.92 of the card
LLAMA = "llama3.1-8b-h100"  # bf16 8B, 16384 tokens, 0.90 of the card


def _smi(folder: Path, script: str) -> None:
    """An `nvidia-smi` in `folder` that answers doctor's query with `script` (sh)."""
    folder.mkdir(exist_ok=True)
    path = folder / "nvidia-smi"
    query = f"--query-gpu={gpu.QUERY}"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != "{query}" ] || [ "$2" != "--format=csv,noheader,nounits" ]; then\n'
        '  echo "unexpected arguments: $*" >&2; exit 2\nfi\n' + script
    )
    path.chmod(0o755)


def _rows(*gpus: tuple[int, int]) -> str:
    """`cat` of one CSV row per (total MiB, free MiB), as nvidia-smi prints them."""
    rows = [
        f"{i}, NVIDIA GeForce RTX 3090, 550.54.14, {total}, {total - free}, {free}"
        for i, (total, free) in enumerate(gpus)
    ]
    return "cat <<'EOF'\n" + "\n".join(rows) + "\nEOF\n"


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH (for a fake nvidia-smi), with no Docker engine to be found."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER["DOCKER_HOST"])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return folder


def _checks(preset: str, tmp_path: Path, *sets: str) -> dict[str, Check]:
    spec = load_stack(preset=preset, environ={}, flags=[parse_set(s) for s in sets]).spec
    return {c.name: c for c in diagnose(spec, directory=tmp_path / "stack")}


def test_a_card_that_fits_the_model(fake_bin: Path, tmp_path: Path) -> None:
    _smi(fake_bin, _rows((24 * GIB_MIB, 23_500)))
    checks = _checks(QWEN, tmp_path)
    assert checks["nvidia driver"].level == "ok"
    assert "550.54.14" in checks["nvidia driver"].detail
    assert checks["gpus"].level == "ok"
    assert checks["gpu memory"].level == "ok"
    fits = checks["model fits"]
    assert fits.level == "ok", fits.detail
    # 14 B x 0.68 bytes of weights; 2 x 48 x 8 x 128 x 2 B a token x 8192 tokens of KV cache.
    assert "weights 8.9 GiB" in fits.detail
    assert "KV cache 1.5 GiB for one 8192-token sequence" in fits.detail
    assert "of 22.1 GiB" in fits.detail
    assert checks["model cache"].level == "ok"  # the download fits the disk


def test_memory_another_process_holds_fails(fake_bin: Path, tmp_path: Path) -> None:
    _smi(fake_bin, _rows((24 * GIB_MIB, 10 * GIB_MIB)))
    check = _checks(QWEN, tmp_path)["gpu memory"]
    assert check.level == "fail"
    assert "10.0 GiB free" in check.detail
    assert "0.92 x 24.0 GiB = 22.1 GiB" in check.detail


def test_a_context_too_long_for_the_card_fails_and_says_what_to_lower(
    fake_bin: Path, tmp_path: Path
) -> None:
    _smi(fake_bin, _rows((24 * GIB_MIB, 24 * GIB_MIB)))
    fits = _checks(LLAMA, tmp_path)["model fits"]
    assert fits.level == "ok", fits.detail  # 14.9 GiB + 2 GiB of KV + 1 GiB in 21.6 GiB
    too_long = _checks(LLAMA, tmp_path, "engine.max_model_len=131072")["model fits"]
    assert too_long.level == "fail"
    assert "KV cache 16.0 GiB" in too_long.detail
    assert "lower engine.max_model_len" in too_long.detail


def test_fewer_devices_than_tensor_parallel_needs(fake_bin: Path, tmp_path: Path) -> None:
    _smi(fake_bin, _rows((80 * GIB_MIB, 79 * GIB_MIB)))
    tp = "engine.extra_args=['--tensor-parallel-size', '2']"
    checks = _checks(LLAMA, tmp_path, tp)
    assert checks["gpus"].level == "fail"
    assert "the engine uses 2" in checks["gpus"].detail


def test_memory_the_driver_does_not_report_is_a_warning(fake_bin: Path, tmp_path: Path) -> None:
    _smi(fake_bin, "echo '0, NVIDIA A100 MIG 1g.10gb, 535.1, [N/A], [N/A], [N/A]'\n")
    checks = _checks(QWEN, tmp_path)
    assert checks["nvidia driver"].level == "ok"
    assert checks["gpu memory"].level == "warn"


def test_a_driver_that_is_not_loaded(fake_bin: Path, tmp_path: Path) -> None:
    _smi(
        fake_bin,
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        ' Make sure that the latest NVIDIA driver is installed and running."\nexit 9\n',
    )
    check = _checks(QWEN, tmp_path)["nvidia driver"]
    assert check.level == "fail"
    assert "couldn't communicate with the NVIDIA driver" in check.detail


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a driver")
def test_no_driver_for_real(tmp_path: Path) -> None:
    checks = _checks(QWEN, tmp_path)
    assert checks["nvidia driver"].level == "fail"
    assert "no `nvidia-smi` on PATH" in checks["nvidia driver"].detail
    assert checks["ports"].level == "ok"  # and the rest still ran


def test_a_cpu_vllm_stack_needs_no_gpu(fake_bin: Path, tmp_path: Path) -> None:
    checks = _checks("smollm2-cpu", tmp_path)
    assert "nvidia driver" not in checks


def test_every_port_conflict_in_one_run_and_json(tmp_path: Path) -> None:
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        one.listen()
        taken = [one.getsockname()[1], two.getsockname()[1]]
        done = llmctl(
            tmp_path,
            "doctor",
            "--json",
            "--set", f"ports.gateway={taken[0]}",
            "--set", f"ports.prometheus={taken[1]}",
            "--set", f"ports.engine={free_port()}",
            env=NO_DOCKER,
        )  # fmt: skip
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["schema"] == "llmctl.doctor/1"
    assert report["ok"] is False
    failed = {c["name"]: c["detail"] for c in report["checks"] if c["level"] == "fail"}
    assert set(failed) == {"port gateway", "port prometheus"}
    assert f"port {taken[0]}" in failed["port gateway"]
    assert "--prometheus-port" in failed["port prometheus"]
    assert report["seconds"] < 30
    assert "cannot run here" in done.stderr


def test_parse_reads_what_nvidia_smi_prints() -> None:
    devices = gpu.parse(
        "0, NVIDIA H100 80GB HBM3, 550.90.07, 81559, 0, 81004\n1, X, 1, [N/A], 2, 3\n"
    )
    assert devices[0].name == "NVIDIA H100 80GB HBM3"
    assert devices[0].total == 81559 << 20
    assert devices[1].total is None
    with pytest.raises(ValueError, match="expected 6 fields"):
        gpu.parse("0, only, three\n")
