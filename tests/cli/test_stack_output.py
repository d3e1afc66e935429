"""`config`, `status` and `doctor` print in every format the other result-printing commands
have (`--format table|plain|md|json`), `--json` being `--format json`; nothing is started."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import llmctl
from tests.stack.test_cli import NO_DOCKER

CONFIG = ("config", "--max-active", "6")


def test_config_in_every_format(in_tmp: Path) -> None:
    assert llmctl("init").code == 0
    table = llmctl(*CONFIG)
    row = next(line for line in table.out.splitlines() if " gateway.max_active " in line)
    assert [cell.strip() for cell in row.split("│")[2:4]] == ["6", "flag --max-active"], row
    plain = llmctl(*CONFIG, "--format", "plain")
    assert plain.code == 0, plain.err
    assert "gateway.max_active\n  value: 6\n  source: flag --max-active\n" in plain.out
    assert "│" not in plain.out
    md = llmctl(*CONFIG, "--format", "md").out
    assert "| key | value | source |" in md
    assert "| gateway.max_active | 6 | flag --max-active |" in md
    as_json = llmctl(*CONFIG, "--format", "json")
    assert as_json.out == llmctl(*CONFIG, "--json").out
    settings = {s["key"]: s for s in json.loads(as_json.out)["settings"]}
    assert settings["gateway.max_active"] == {
        "key": "gateway.max_active",
        "value": 6,
        "source": "flag --max-active",
    }


def test_status_and_doctor_in_every_format(in_tmp: Path) -> None:
    assert llmctl("init").code == 0
    # Nothing runs here: status prints its report in the format asked for, and exits 1.
    status = llmctl("status", "--format", "plain")
    assert status.code == 1
    assert "engine\n  state: stopped\n  health: none\n" in status.out
    md = llmctl("status", "--format", "md").out
    assert re.search(r"^\| gateway \| stopped \| none \| http://127\.0\.0\.1:\d+ \|", md, re.M)
    as_json = llmctl("status", "--json")
    assert as_json.code == 1
    assert as_json.out == llmctl("status", "--format", "json").out
    assert json.loads(as_json.out)["ready"] is False

    doctor = llmctl("doctor", "--format", "md", env=NO_DOCKER)
    assert "| check | result | detail |" in doctor.out
    assert re.search(r"^\| ports \| (ok|FAIL) \| ", doctor.out, re.M), doctor.out
    plain = llmctl("doctor", "--format", "plain", env=NO_DOCKER).out
    assert re.search(r"^python\n  result: ok\n  detail: \d+\.\d+", plain, re.M), plain
    wrong = llmctl("doctor", "--format", "xml")
    assert wrong.code == 2
    assert "--format: must be one of table, plain, md, json (got 'xml')" in wrong.err
