"""An installed wheel (no checkout) carries its templates, dashboards and stack presets."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO


@pytest.mark.slow
def test_wheel_finds_its_data_without_a_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("llmctl-*.whl")
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = (
        "import llmctl, pathlib;"
        "from llmctl.core.resources import data_dir;"
        "print(llmctl.__file__);"
        "print(sorted(p.name for p in data_dir('dashboards').glob('*.json')));"
        "print((data_dir('templates') / 'compose.yaml.j2').is_file());"
        "print(sorted(p.stem for p in data_dir('stacks').glob('*.toml')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    ).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert "overview.json" in out[1]
    assert out[2] == "True"
    assert "local-sim" in out[3]
