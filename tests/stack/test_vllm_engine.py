"""How a local `vllm` engine is started, and what `llmctl models` does, without vLLM installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmctl.core.errors import ConfigError
from llmctl.stack.commands import VLLM_MODULE, local_vllm_command
from llmctl.stack.local import LocalRuntime
from llmctl.stack.models import model_dir, prepare_model, resolve_model
from llmctl.stack.spec import EngineSpec, StackSpec
from llmctl.stack.vllm import find_vllm_python, vllm_env


def _python(folder: Path) -> Path:
    """A stand-in interpreter file: only its existence matters to command construction."""
    path = folder / "bin" / "python"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty llmctl cache, and no vLLM interpreter named anywhere."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LLMCTL_CACHE_DIR", str(root))
    monkeypatch.delenv("LLMCTL_VLLM_PYTHON", raising=False)
    return root


def test_python_is_found_in_the_documented_order(cache: Path, tmp_path: Path) -> None:
    assert find_vllm_python(None, {"LLMCTL_CACHE_DIR": str(cache)}) is None
    default = _python(cache / "vllm-venv")
    env_python = _python(tmp_path / "env")
    stack_python = _python(tmp_path / "stack")
    base = {"LLMCTL_CACHE_DIR": str(cache)}
    assert find_vllm_python(None, base) == default
    with_env = {**base, "LLMCTL_VLLM_PYTHON": str(env_python)}
    assert find_vllm_python(None, with_env) == env_python
    assert find_vllm_python(str(stack_python), with_env) == stack_python


def test_a_named_python_that_is_missing_is_an_error(cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"engine\.python"):
        find_vllm_python("/nowhere/python", {})
    with pytest.raises(ConfigError, match="LLMCTL_VLLM_PYTHON"):
        find_vllm_python(None, {"LLMCTL_VLLM_PYTHON": "/nowhere/python"})


def test_local_vllm_uses_the_module_form_and_cpu_defaults(cache: Path, tmp_path: Path) -> None:
    python = _python(cache / "vllm-venv")
    model = tmp_path / "model"
    model.mkdir()
    spec = EngineSpec(
        kind="vllm",
        model=str(model),
        served_name="m",
        max_num_seqs=8,
        env={"VLLM_CPU_KVCACHE_SPACE": "2"},
    )
    cmd = local_vllm_command(spec, host="127.0.0.1", port=8123, environ=dict(os.environ))
    assert cmd.argv[:3] == [str(python), "-m", VLLM_MODULE]
    assert cmd.argv[cmd.argv.index("--model") + 1] == str(model)
    assert cmd.argv[cmd.argv.index("--port") + 1] == "8123"
    assert cmd.argv[cmd.argv.index("--max-num-seqs") + 1] == "8"
    assert cmd.env["VLLM_CPU_KVCACHE_SPACE"] == "2"  # the stack's value beats the default
    assert cmd.env["HF_HUB_OFFLINE"] == "1"  # a local folder: never ask the hub
    assert cmd.env["VLLM_CACHE_ROOT"].startswith(str(cache))


def test_hub_models_keep_hub_access() -> None:
    env = vllm_env(local_model=False, environ={})
    assert "HF_HUB_OFFLINE" not in env
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert vllm_env(local_model=True, environ={"HF_HUB_OFFLINE": "0"})["HF_HUB_OFFLINE"] == "0"


def test_other_model_references_pass_through(cache: Path) -> None:
    assert resolve_model("Qwen/Qwen2.5-14B-Instruct-AWQ") == "Qwen/Qwen2.5-14B-Instruct-AWQ"
    assert resolve_model("/some/folder") == "/some/folder"


def test_a_built_recipe_folder_is_reused_without_vllm(cache: Path) -> None:
    folder = model_dir("tiny")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "llmctl-model.json").write_text('{"recipe": "tiny"}')
    assert prepare_model("tiny") == folder
    assert resolve_model("llmctl:tiny") == str(folder)
    assert resolve_model(str(folder)) == str(folder)


def test_building_without_vllm_says_how_to_get_it(cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"vllm-setup"):
        prepare_model("smollm2")
    with pytest.raises(ConfigError, match="unknown model recipe"):
        prepare_model("gpt-5")


def _llmctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_models_cli_errors_are_red_messages(cache: Path) -> None:
    bad = _llmctl("models", "prepare", "gpt-5")
    assert bad.returncode == 2
    assert "RECIPE: must be one of tiny, smollm2 (got 'gpt-5')" in bad.stderr
    missing = _llmctl("models", "prepare", "tiny")
    assert missing.returncode == 1
    assert "vllm-setup" in missing.stderr
    listing = _llmctl("models", "list")
    assert listing.returncode == 0
    assert "tiny" in listing.stdout
    assert "not built" in listing.stdout


def test_the_local_gateway_gets_the_model_folder_as_its_tokenizer(
    cache: Path, tmp_path: Path
) -> None:
    _python(cache / "vllm-venv")
    model = tmp_path / "model"
    model.mkdir()

    def gateway_argv() -> list[str]:
        spec = StackSpec(engine=EngineSpec(kind="vllm", model=str(model), served_name="m"))
        services = LocalRuntime(spec, tmp_path / "stack", dict(os.environ)).services()
        argv = next(s.argv for s in services if s.name == "gateway")
        assert argv is not None
        return argv

    assert "--tokenizer" not in gateway_argv()  # no tokenizer.json: the gateway estimates
    (model / "tokenizer.json").write_text("{}")
    argv = gateway_argv()
    assert argv[argv.index("--tokenizer") + 1] == str(model)
