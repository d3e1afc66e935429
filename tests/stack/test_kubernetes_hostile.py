"""Hostile stack files through the kubernetes target (the cases of test_render_hostile): rendering
refuses with a clear error naming the key, or writes manifests in which every value arrives
exactly as written: in the YAML, in the env file kustomize reads, and in the arguments after
Kubernetes' $(VAR) expansion. A sample goes through `kubectl kustomize` and strict validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given

from llmctl.core.errors import ConfigError
from llmctl.stack import commands, kubernetes
from llmctl.stack.credentials import StackSecrets
from llmctl.stack.settings import load_stack
from tests.stack.test_kubernetes import KUBECTL, _build, _container, _expand, _one, validate
from tests.stack.test_render_hostile import (
    Case,
    Checked,
    _check_refusal,
    _toml,
    cases,
    hostile_settings,
)


def _check(spec: Any, files: dict[str, str]) -> None:
    docs = {name: list(yaml.safe_load_all(text)) for name, text in files.items() if ".yaml" in name}
    # The manifests (not the kustomization, nor the Grafana datasource file a ConfigMap carries).
    skip = {"kustomization.yaml", "llmctl-datasource.yaml"}
    objs = [doc for name, found in docs.items() if name not in skip for doc in found]
    engine = _container(objs, "engine")
    want = (
        commands.vllm_args(spec.engine, host="0.0.0.0", port=kubernetes.ENGINE_PORT)
        if spec.engine.kind == "vllm"
        else commands.sim_args(spec.engine, host="0.0.0.0", port=kubernetes.ENGINE_PORT)
    )
    assert _expand(engine["args"], {}) == want
    env = {item["name"]: item["value"] for item in engine.get("env", [])}
    assert {k: v for k, v in env.items() if k != "HF_HOME"} == dict(spec.engine.env)
    image = spec.engine.image if spec.engine.kind == "vllm" else spec.gateway.image
    assert engine["image"] == image
    assert _container(objs, "gateway")["image"] == spec.gateway.image
    lines = [line for line in files["gateway-settings.env"].splitlines() if line[:1] != "#"]
    settings_ = dict(line.split("=", 1) for line in lines)
    assert settings_["MODEL_NAME"] == spec.engine.name
    assert _one(objs, "Namespace")["metadata"]["name"] == kubernetes.namespace(spec)


@pytest.mark.slow
def test_hostile_stack_files_render_for_kubernetes_safely_or_are_refused(tmp_path: Path) -> None:
    checked = Checked()
    secrets = StackSecrets({"LLMCTL_ADMIN_KEY": "adm"})

    @hostile_settings(200)
    @given(case=cases())
    def run(case: Case) -> None:
        stack_file = tmp_path / "llmctl.toml"
        stack_file.write_text(_toml(case.values), encoding="utf-8")
        try:
            spec = load_stack(config=stack_file, environ={}, cwd=tmp_path).spec
            files = kubernetes.render_kubernetes(spec, secrets)
        except ConfigError as exc:
            checked.refused += 1
            _check_refusal(case, exc)
            return
        checked.accepted += 1
        _check(spec, files)
        if KUBECTL is not None and checked.accepted % 10 == 1:
            checked.external += 1
            base = tmp_path / f"out{checked.accepted}"
            kubernetes.write_kubernetes(files, base)
            objs = _build(base)
            for obj in objs:
                validate(obj)
            # kustomize took the env file's value as written.
            config = _one(objs, "ConfigMap", kubernetes.GATEWAY)["data"]
            assert config["MODEL_NAME"] == spec.engine.name

    run()
    assert checked.accepted >= 25, checked
    assert checked.refused >= 50, checked
    if KUBECTL is not None:
        assert checked.external >= 3, checked
