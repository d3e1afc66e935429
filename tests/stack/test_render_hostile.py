"""Hostile stack files (property-based): every string field and key of a stack gets newlines, quotes,
`$`, `${`, YAML specials, NUL, emoji or very long text; rendering either refuses with a clear error
naming the key, or writes files that parse to exactly the intended services, keys and values.

Every example is parsed with PyYAML and python-dotenv; a sample of them also goes through
`docker compose config` (Compose v2, installed by .ci/run) and `promtool check config`, which
are slow per call.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmctl.core.errors import ConfigError
from llmctl.stack.credentials import StackSecrets, read_env_file
from llmctl.stack.render import render
from llmctl.stack.settings import load_stack
from llmctl.stack.spec import StackSpec
from tests.stack.test_render import COMPOSE, _compose_config

# Pieces that break naive quoting in YAML, TOML, .env, compose interpolation or a shell.
SPECIALS = [
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    '"',
    "'",
    "\\",
    "\\n",
    "$",
    "$$",
    "${",
    "${HOME}",
    "${X:?boom}",
    "$HOME",
    "`id`",
    ": ",
    "- ",
    "#",
    " #",
    "{",
    "}",
    "[",
    "]",
    "&a",
    "*a",
    "!!python/object",
    "|",
    ">",
    "%",
    "@",
    "?",
    ",",
    "---",
    "...",
    "~",
    "null",
    "yes",
    "=",
    "\u00e9",
    "\U0001f600",
    "\u202e",
    "privileged: true",
    "\n  privileged: true",
    "\nCOMPOSE_PROFILES=x",
]
LONG = st.sampled_from(["a" * 5000, "\U0001f600" * 2000, "/x" * 3000])
PIECES = st.one_of(st.sampled_from(SPECIALS), st.text(max_size=8))
HOSTILE = st.one_of(
    st.lists(PIECES, min_size=1, max_size=6).map("".join),
    st.text(max_size=40),
    LONG,
)
# Strange but printable: these should be accepted and come out exactly as written.
PRINTABLE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
    min_size=1,
    max_size=30,
)
ODD = st.lists(
    st.one_of(PRINTABLE, st.sampled_from([s for s in SPECIALS if s.isprintable()])),
    min_size=1,
    max_size=5,
).map("".join)
TEXT = st.one_of(ODD, HOSTILE)
ENV_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
ENV_KEY = st.one_of(ENV_NAME, HOSTILE)


def _or(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value of a field with a strict grammar, or hostile text."""
    return st.one_of(valid, TEXT)


@dataclass
class Case:
    """One stack file: dotted key -> value (the TOML), plus $HF_HOME."""

    values: dict[str, Any] = field(default_factory=dict)
    hf_home: str | None = None

    def hostile_keys(self) -> list[str]:
        return list(self.values) + (["$HF_HOME"] if self.hf_home is not None else [])


def _slots() -> dict[str, st.SearchStrategy[Any]]:
    image = _or(st.sampled_from(["reg.example:5000/a/b:1.0", "x/y@sha256:" + "a" * 64, "a:b"]))
    duration = _or(st.sampled_from(["5s", "1m", "10ms", "2h"]))
    env_name = _or(ENV_NAME)
    return {
        "name": _or(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,30}", fullmatch=True)),
        "description": TEXT,
        "runtime": st.sampled_from(["docker", "local"]),
        "engine.kind": st.sampled_from(["vllm", "sim"]),
        "engine.image": image,
        "engine.model": TEXT,
        "engine.served_name": TEXT,
        "engine.extra_args": st.lists(TEXT, max_size=3),
        "engine.env": st.dictionaries(ENV_KEY, TEXT, max_size=3),
        "engine.shm_size": _or(st.sampled_from(["8g", "512m", "1"])),
        "engine.python": TEXT,
        "engine.hf_cache_dir": TEXT,
        "engine.hf_token_env": env_name,
        "gateway.image": image,
        "gateway.api_keys_env": env_name,
        "gateway.api_keys_file": TEXT,
        "gateway.admin_key_env": env_name,
        "gateway.admin_key_file": TEXT,
        "gateway.queue_mode": _or(st.sampled_from(["queue", "reject"])),
        "observability.scrape_interval": duration,
        "observability.retention": duration,
        "observability.prometheus_image": image,
        "observability.grafana_image": image,
        "observability.dcgm_exporter_image": image,
        "observability.open_webui_image": image,
        "ports.bind_address": _or(st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "::"])),
        "alerts.for_duration": _or(st.sampled_from(["5m", "30s", "1h"])),
    }


SLOTS = _slots()
SECTIONS = ["engine", "gateway", "observability", "ports", "alerts", "engine.sim"]


def hostile_settings(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings for a sweep of hostile stack files: reproducible, no database."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    chosen = draw(st.lists(st.sampled_from(sorted(SLOTS)), min_size=1, max_size=3, unique=True))
    case = Case({key: draw(SLOTS[key]) for key in chosen})
    if draw(st.integers(0, 9)) == 9:  # a hostile key where none is expected
        case.values[f"{draw(st.sampled_from(SECTIONS))}.{draw(HOSTILE)}"] = "x"
    if draw(st.integers(0, 4)) == 4:
        case.hf_home = draw(st.one_of(TEXT, st.text(alphabet="\udcff\udc80/a", min_size=1)))
    return case


def _toml_str(text: str) -> str:
    """A TOML basic string holding exactly `text` (every non-ASCII-printable character escaped)."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(values: dict[str, Any]) -> str:
    tables: dict[str, list[str]] = {"": []}
    for dotted, value in values.items():
        inside = [sec for sec in SECTIONS if dotted.startswith(sec + ".")]
        section = max(inside, key=len) if inside else ""
        key = dotted[len(section) + 1 :] if section else dotted
        tables.setdefault(section, []).append(f"{_toml_str(key)} = {_toml_value(value)}")
    lines = tables.pop("")
    for section, body in tables.items():
        lines += [f"[{section}]", *body]
    return "\n".join(lines) + "\n"


def _unescape(value: str) -> str:
    """Compose's `$$` is one literal `$`."""
    return value.replace("$$", "$")


@dataclass
class Checked:
    accepted: int = 0
    refused: int = 0
    external: int = 0


def _check_refusal(case: Case, exc: ConfigError) -> None:
    message = str(exc)
    for line in message.splitlines():
        assert line.isprintable(), repr(line)  # a key or value is shown escaped, never raw
    named = [
        k if k in SLOTS or k == "$HF_HOME" else k.split(".")[0] + "." for k in case.hostile_keys()
    ]
    assert any(key in message for key in named), message


def _expected_env(spec: Any) -> dict[str, str]:
    engine = spec.engine
    if engine.kind == "sim":
        return dict(engine.env)
    env = {"HF_HOME": "/root/.cache/huggingface"}
    if engine.hf_token_env:
        env["HF_TOKEN"] = f"${{{engine.hf_token_env}:-}}"
    return {**env, **engine.env}


def _after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _check_files(spec: Any, files: dict[str, str], cwd: Path, hf_home: str | None) -> None:
    compose = yaml.safe_load(files["compose.yaml"])
    has_files = bool(spec.gateway.api_keys_file or spec.gateway.admin_key_file)
    assert set(compose) == {"name", "services", "volumes"} | ({"secrets"} if has_files else set())
    services = compose["services"]
    assert set(services) == {
        "engine",
        "gateway",
        "prometheus",
        "grafana",
        "dcgm-exporter",
        "open-webui",
    }
    engine, gateway = services["engine"], services["gateway"]
    base = {"image", "entrypoint", "command", "healthcheck", "expose", "restart"}
    if spec.engine.kind == "vllm":
        assert set(engine) == base | {"environment", "volumes", "shm_size", "deploy"}
        assert engine["image"] == spec.engine.image
        assert engine["volumes"] == [
            {
                "type": "bind",
                "source": "${HF_CACHE_DIR:?run llmctl render}",
                "target": "/root/.cache/huggingface",
                "bind": {"create_host_path": True},
            }
        ]
        command = [_unescape(a) for a in engine["command"]]
        assert _after(command, "--model") == spec.engine.model
        assert _after(command, "--served-model-name") == spec.engine.name
        assert command[len(command) - len(spec.engine.extra_args) :] == spec.engine.extra_args
        assert _unescape(engine["shm_size"]) == spec.engine.shm_size
    else:
        want = base | ({"environment"} if spec.engine.env else set())
        assert set(engine) - {"build"} == want
        assert engine["image"] == spec.gateway.image
        assert _after([_unescape(a) for a in engine["command"]], "--model") == spec.engine.name
    env = {
        k: _unescape(v) if k != "HF_TOKEN" else v for k, v in engine.get("environment", {}).items()
    }
    assert env == _expected_env(spec)
    assert _after([_unescape(a) for a in gateway["command"]], "--model") == spec.engine.name
    assert gateway["image"] == spec.gateway.image
    if spec.gateway.api_keys_env:
        assert gateway["environment"]["LLMCTL_API_KEYS"] == f"${{{spec.gateway.api_keys_env}:-}}"
    obs = spec.observability
    images = {
        "prometheus": obs.prometheus_image,
        "grafana": obs.grafana_image,
        "dcgm-exporter": obs.dcgm_exporter_image,
        "open-webui": obs.open_webui_image,
    }
    for name, image in images.items():
        assert services[name]["image"] == image
    retention = services["prometheus"]["command"][2]
    assert _unescape(retention) == f"--storage.tsdb.retention.time={obs.retention}"
    if has_files:
        for key, raw in (
            ("llmctl_api_keys", spec.gateway.api_keys_file),
            ("llmctl_admin_key", spec.gateway.admin_key_file),
        ):
            if raw:
                path = Path(raw).expanduser()
                want_path = str(path if path.is_absolute() else (cwd / path).resolve())
                assert _unescape(compose["secrets"][key]["file"]) == want_path

    dotenv = dotenv_values(stream=io.StringIO(files[".env"]))
    raw = spec.engine.hf_cache_dir or hf_home or "~/.cache/huggingface"
    expected = {
        "COMPOSE_PROJECT_NAME": spec.project_name,
        "COMPOSE_PROFILES": "",
        "HF_CACHE_DIR": str(Path(raw).expanduser().resolve()),
    }
    assert {k: dotenv[k] for k in expected} == expected
    assert set(dotenv) - set(expected) <= {"GRAFANA_ADMIN_PASSWORD", "LLMCTL_ADMIN_KEY"}

    prometheus = yaml.safe_load(files["prometheus/prometheus.yml"])
    assert prometheus["global"]["scrape_interval"] == obs.scrape_interval
    assert prometheus["global"]["external_labels"] == {"stack": spec.name}
    # Rule by rule, `for` is the stack's for_duration where the sentinel render had it.
    for got, sentinel in zip(_fors(files), SENTINEL_FORS, strict=True):
        assert got == (spec.alerts.for_duration if sentinel == SENTINEL_FOR else sentinel)
    datasource = yaml.safe_load(files["grafana/provisioning/datasources/prometheus.yaml"])
    assert datasource["datasources"][0]["jsonData"]["timeInterval"] == obs.scrape_interval


def _fors(files: dict[str, str]) -> list[str | None]:
    alerts = yaml.safe_load(files["prometheus/rules/alerts.yml"])
    return [rule.get("for") for group in alerts["groups"] for rule in group["rules"]]


SENTINEL_FOR = "7h"
SENTINEL_FORS = _fors(
    render(
        StackSpec.model_validate({"alerts": {"for_duration": SENTINEL_FOR}}),
        StackSecrets({}),
        environ={},
    )
)


def _check_with_tools(spec: Any, files: dict[str, str], out: Path) -> None:
    """What compose and promtool themselves read from the files."""
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if COMPOSE is not None:
        # Only PATH from this environment: a ${VAR} reference then reads .env or nothing.
        config = _compose_config(out, "dcgm", "webui", env={"PATH": os.environ["PATH"]})
        engine = config["services"]["engine"]
        env = {k: _unescape(v) for k, v in (engine.get("environment") or {}).items()}
        want = _expected_env(spec)
        if "HF_TOKEN" in want:  # compose interpolates the reference: from .env, or empty
            dotenv = dotenv_values(out / ".env")
            want["HF_TOKEN"] = dotenv.get(spec.engine.hf_token_env or "") or ""
        assert env == want
        command = [_unescape(a) for a in engine["command"]]
        vllm = spec.engine.kind == "vllm"
        assert _after(command, "--model") == (spec.engine.model if vllm else spec.engine.name)
        if vllm:
            source = engine["volumes"][0]["source"]
            assert _unescape(source) == read_env_file(out / ".env")["HF_CACHE_DIR"]
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "config", str(out / "prometheus" / "prometheus.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_hostile_stack_files_render_safely_or_are_refused(tmp_path: Path) -> None:
    checked = Checked()
    secrets = StackSecrets({"GRAFANA_ADMIN_PASSWORD": "pw", "LLMCTL_ADMIN_KEY": "adm"})

    @hostile_settings(300)
    @given(case=cases())
    def run(case: Case) -> None:
        stack_file = tmp_path / "llmctl.toml"
        stack_file.write_text(_toml(case.values), encoding="utf-8")
        environ = {} if case.hf_home is None else {"HF_HOME": case.hf_home}
        try:
            spec = load_stack(config=stack_file, environ=environ, cwd=tmp_path).spec
            files = render(spec, secrets, environ=environ, cwd=tmp_path)
        except ConfigError as exc:
            checked.refused += 1
            _check_refusal(case, exc)
            return
        checked.accepted += 1
        _check_files(spec, files, tmp_path, case.hf_home)
        if checked.accepted % 10 == 1:
            checked.external += 1
            _check_with_tools(spec, files, tmp_path / f"out{checked.accepted}")

    run()
    # Both ways out were taken many times, and the tools saw a real sample.
    assert checked.accepted >= 50, checked
    assert checked.refused >= 50, checked
    assert checked.external >= 5, checked
