"""A real simulator with a known capacity behind a real gateway with an admin key, as processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmctl.cli import main
from llmctl.core.config import AdmissionLimits
from llmctl.core.slo import SLO
from llmctl.tune.limits import GatewayAdmin
from llmctl.tune.report import TuneSettings
from llmctl.tune.trial import TrialPlan
from tests.support import free_port, llmctl_server, sim_server

ADMIN_KEY = "tune-test-admin-key"
# The gateway's limits before any tune run; every test checks they come back.
ORIGINAL = AdmissionLimits(max_active=3, queue_mode="reject", queue_max=5, queue_timeout_s=7.0)

# The simulated engine: see test_live.py's acceptance test for what these settings imply.
SIM_FLAGS = (
    "--profile", "rtx3090-qwen2.5-14b-awq",
    "--max-num-seqs", "8",
    "--block-size", "16",
    "--num-gpu-blocks", "96",
    "--time-scale", "8",
)  # fmt: skip
INPUT_LEN = 32  # synthetic words; the sim counts 40-55 prompt tokens (mean 44) with its template
OUTPUT_LEN = 128


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`llmctl tune max-active ARGS` in this process: exit code and everything printed."""
    try:
        main(["tune", "max-active", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


@dataclass
class Stack:
    gateway: str
    engine: str
    admin: GatewayAdmin

    def limits(self) -> AdmissionLimits:
        resp = httpx.get(
            f"{self.gateway}/admin/limits", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        resp.raise_for_status()
        return AdmissionLimits.model_validate(resp.json())

    def settings(self, **changes: object) -> TuneSettings:
        values: dict[str, object] = {
            "gateway": self.gateway,
            "engine_metrics": [f"{self.engine}/metrics"],
            "slo": SLO(e2e_s=2.0),
            "max_preemptions_per_s": 0.0,
            "min_max_active": 1,
            "max_max_active": 256,
            "trial_duration_s": 2.0,
            "warmup_s": 0.5,
            "input_len": INPUT_LEN,
            "output_len": OUTPUT_LEN,
        }
        values.update(changes)
        return TuneSettings.model_validate(values)

    def plan(self, settings: TuneSettings) -> TrialPlan:
        return TrialPlan(settings)


@contextmanager
def run_stack(tmp: Path, *sim_flags: str) -> Iterator[Stack]:
    key_file = tmp / "admin.key"
    key_file.write_text(ADMIN_KEY + "\n")
    gw_port = free_port()  # the gateway CLI does not say which port it got for port 0
    gateway = f"http://127.0.0.1:{gw_port}"
    with sim_server(tmp / "sim.log", *sim_flags) as sim:
        gw_args = [
            "gateway", "serve", "--host", "127.0.0.1", "--port", str(gw_port),
            "--upstream", sim.url, "--admin-key-file", str(key_file), "--health-interval", "0.2",
            "--max-active", str(ORIGINAL.max_active), "--queue-mode", ORIGINAL.queue_mode,
            "--queue-max", str(ORIGINAL.queue_max),
            "--queue-timeout", str(ORIGINAL.queue_timeout_s),
        ]  # fmt: skip
        with llmctl_server(gw_args, ready_url=f"{gateway}/health", log=tmp / "gateway.log"):
            admin = GatewayAdmin(gateway, ADMIN_KEY)
            try:
                yield Stack(gateway, sim.url, admin)
            finally:
                admin.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One simulator (capacity 8) and gateway shared by a module's tests."""
    with run_stack(tmp_path_factory.mktemp("tune"), *SIM_FLAGS) as running:
        yield running


@pytest.fixture
def fresh_stack(stack: Stack) -> Stack:
    """The shared stack, checked to hold the original limits before the test."""
    assert stack.limits() == ORIGINAL
    return stack
