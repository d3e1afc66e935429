"""Loading a stack: layers, provenance, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.core.errors import ConfigError
from llmctl.stack.settings import Override, list_presets, load_stack, parse_set


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmctl.toml"
    path.write_text(text)
    return path


def test_presets_all_load() -> None:
    assert set(list_presets()) >= {
        "local-sim",
        "qwen2.5-14b-awq-3090",
        "llama3.1-8b-h100",
        "smollm2-cpu",
    }
    for name in list_presets():
        spec = load_stack(preset=name, environ={}).spec
        assert spec.name == name


def test_default_is_local_sim_on_the_local_runtime(tmp_path: Path) -> None:
    loaded = load_stack(environ={}, cwd=tmp_path)
    assert loaded.origin == "preset local-sim"
    assert (loaded.spec.runtime, loaded.spec.engine.kind) == ("local", "sim")
    assert loaded.spec.ports.bind_address == "127.0.0.1"


def test_layers_file_over_defaults_env_over_file_flags_over_all(tmp_path: Path) -> None:
    path = _write(tmp_path, "[gateway]\nmax_active = 3\nqueue_max = 10\n")
    env = {"MAX_ACTIVE": "7", "QUEUE_MODE": "reject", "QUEUE_MAX": "20"}
    flags = [Override("gateway.queue_max", 30, "flag --queue-max")]
    loaded = load_stack(config=path, environ=env, flags=flags)
    gw = loaded.spec.gateway
    assert (gw.max_active, gw.queue_mode, gw.queue_max) == (7, "reject", 30)
    assert loaded.source_of("gateway.max_active") == "env MAX_ACTIVE"
    assert loaded.source_of("gateway.queue_mode") == "env QUEUE_MODE"
    assert loaded.source_of("gateway.queue_max") == "flag --queue-max"
    assert loaded.source_of("gateway.queue_timeout_s") == "default"
    # An environment value that replaces a file value is reported, not silently applied.
    assert any("MAX_ACTIVE" in note for note in loaded.notes)
    sources = {key: source for key, _, source in loaded.effective_values()}
    assert sources["ports.gateway"] == "default"
    assert sources["gateway.max_active"] == "env MAX_ACTIVE"


def test_generic_environment_variables_reach_nested_keys(tmp_path: Path) -> None:
    env = {"LLMCTL__PORTS__GATEWAY": "18080", "LLMCTL__ENGINE__SIM__TIME_SCALE": "5"}
    loaded = load_stack(environ=env, cwd=tmp_path)
    assert loaded.spec.ports.gateway == 18080
    assert loaded.spec.engine.sim.time_scale == 5.0
    assert loaded.source_of("ports.gateway") == "env LLMCTL__PORTS__GATEWAY"


def test_set_parses_toml_values() -> None:
    assert parse_set("gateway.max_active=8").value == 8
    assert parse_set("engine.extra_args=['--x', 'y']").value == ["--x", "y"]
    assert parse_set("gateway.image=llmctl:test").value == "llmctl:test"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set("gateway.max_active")


@pytest.mark.parametrize(
    ("text", "env", "flags", "expected"),
    [
        (
            "[gateway]\nmax_activ = 3\n",
            {},
            [],
            r"llmctl\.toml:2:1: gateway\.max_activ: unknown key; did you mean 'max_active'\?",
        ),
        ("bogus = 1\n", {}, [], r"bogus: unknown key"),
        (
            "[gateway]\nmax_active = 0\n",
            {},
            [],
            r"toml:2:1: gateway\.max_active: must be at least 1 \(got 0\)",
        ),
        ("", {"QUEUE_MODE": "drop"}, [], r"gateway\.queue_mode: .*\(from env QUEUE_MODE\)"),
        ("", {"LLMCTL__PORTS__GATWAY": "1"}, [], r"ports\.gatway: unknown key"),
        ("", {}, [parse_set("ports.bind_address=localhost")], r"ports\.bind_address: .*IP"),
        ("[engine]\nimage = 'vllm/vllm-openai:latest'\n", {}, [], r"engine\.image: .*:latest"),
        ("[engine]\nimage = 'vllm/vllm-openai'\n", {}, [], r"engine\.image: .*no tag"),
        ("[gateway]\napi_keys_env = 'sk-123 secret'\n", {}, [], r"gateway\.api_keys_env: .*NAME"),
        ("[ports]\ngateway = 9090\n", {}, [], r"ports\.prometheus and ports\.gateway|both 9090"),
        ("[observability]\nretention = 'forever'\n", {}, [], r"observability\.retention"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], flags: list[Override], expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected):
        load_stack(config=path, environ=env, flags=flags)


def test_broken_toml_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "[gateway\nmax_active = 3\n")
    with pytest.raises(ConfigError, match=r"llmctl\.toml:1:9: not valid TOML: "):
        load_stack(config=path, environ={})


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match="local-sim"):
        load_stack(preset="nope", environ={})


def test_every_key_is_documented() -> None:
    from llmctl.stack.spec import StackSpec
    from tests.support import REPO

    docs = (REPO / "docs" / "stacks.md").read_text()
    spec = StackSpec().model_dump()
    for section, values in spec.items():
        keys = values.keys() if isinstance(values, dict) else [section]
        for key in keys:
            assert f"`{key}`" in docs, f"{section}.{key} is missing from docs/stacks.md"


def test_gateway_section_validates_like_the_gateway_itself() -> None:
    from llmctl.core.config import GatewayConfig
    from llmctl.stack.spec import GatewaySpec

    shared = set(GatewaySpec.model_fields) & set(GatewayConfig.model_fields)
    assert {"max_active", "queue_mode", "queue_max", "queue_timeout_s"} <= shared
    assert {"request_timeout_s", "max_body_bytes"} <= shared
    for name in shared:
        spec_field, gw_field = GatewaySpec.model_fields[name], GatewayConfig.model_fields[name]
        assert spec_field.metadata == gw_field.metadata, name
        assert spec_field.default == gw_field.default, name


def test_scrape_interval_must_fit_the_recording_window(tmp_path: Path) -> None:
    from llmctl.core.metrics import RECORDING_WINDOW

    assert RECORDING_WINDOW == "1m"  # the bound below is a quarter of it
    for ok in ("500ms", "5s", "15s"):
        spec = load_stack(
            environ={}, cwd=tmp_path, flags=[parse_set(f"observability.scrape_interval='{ok}'")]
        ).spec
        assert spec.observability.scrape_interval == ok
    for coarse in ("16s", "30s", "1m", "1h"):
        path = _write(tmp_path, f'[observability]\nscrape_interval = "{coarse}"\n')
        with pytest.raises(ConfigError) as err:
            load_stack(config=path, environ={}, cwd=tmp_path)
        assert "observability.scrape_interval" in str(err.value)
        assert "15s" in str(err.value)


def test_every_gateway_setting_reaches_the_gateway_command_line() -> None:
    """The stack renders the gateway's command from one table: every GatewaySettings field has a
    `llmctl gateway serve` flag, and the flags the stack renders are ones the gateway accepts."""
    from typer.testing import CliRunner

    from llmctl.cli import app
    from llmctl.core.config import GATEWAY_FLAGS, GatewaySettings
    from llmctl.stack.commands import gateway_args
    from llmctl.stack.spec import GatewaySpec

    assert set(GatewaySettings.model_fields) <= set(GATEWAY_FLAGS)
    spec = GatewaySpec(max_active_total=7)
    args = gateway_args(spec, host="127.0.0.1", port=1, upstream="http://e:8000", model="m")
    assert args[args.index("--max-active-total") + 1] == "7"
    help_text = CliRunner().invoke(app, ["gateway", "serve", "--help"], env={"COLUMNS": "200"})
    flags = [a for a in args if a.startswith("--")]
    missing = [f for f in flags if f not in help_text.output]
    assert not missing, missing
