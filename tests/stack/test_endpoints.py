"""Which stack bench, top, tune and chat talk to: the one resolver from folder, flags and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.core.errors import ConfigError
from llmctl.core.slo import SLO
from llmctl.stack.endpoints import DEFAULT_URLS, resolve

STACK = """\
# my stack
name = "mine"

[gateway]
# tuned on 2026-01-01
max_active = 4  # keep the comment
queue_max = 10

[ports]
gateway = 18080
engine = 18000

[alerts]
slo_p95_ttft_s = 1.5
slo_p95_e2e_s = 12.0
preemptions_per_s = 0.25
"""


def test_defaults_come_from_the_local_stack_file(tmp_path: Path) -> None:
    (tmp_path / "llmctl.toml").write_text(STACK)
    # `llmctl up` generates the admin key into the stack's .env.
    env_dir = tmp_path / ".llmctl" / "mine"
    env_dir.mkdir(parents=True)
    (env_dir / ".env").write_text("LLMCTL_ADMIN_KEY=generated-key\n")
    defaults = resolve(None, environ={"LLMCTL_API_KEYS": "k1,k2"}, cwd=tmp_path)
    assert defaults.gateway_url == "http://127.0.0.1:18080"
    assert defaults.engine_metrics_url == "http://127.0.0.1:18000/metrics"
    assert defaults.admin_key == "generated-key"
    assert defaults.api_key == "k1"
    assert defaults.slo == SLO(ttft_s=1.5, e2e_s=12.0)
    assert defaults.preemptions_per_s == 0.25
    assert defaults.config_path == tmp_path / "llmctl.toml"


def test_an_admin_key_named_by_the_stack_is_read_from_that_variable(tmp_path: Path) -> None:
    (tmp_path / "llmctl.toml").write_text(
        STACK.replace("[gateway]\n", '[gateway]\nadmin_key_env = "MY_ADMIN"\n')
    )
    defaults = resolve(None, environ={"MY_ADMIN": "from-env"}, cwd=tmp_path)
    assert defaults.admin_key == "from-env"


def test_without_a_stack_file_the_preset_gives_defaults_but_nothing_to_apply(
    tmp_path: Path,
) -> None:
    defaults = resolve(None, environ={}, cwd=tmp_path)
    assert defaults.gateway_url is not None
    assert defaults.config_path is None


def test_a_named_stack_file_that_is_broken_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text("[gateway]\nmax_active = 0\n")
    with pytest.raises(ConfigError, match="max_active"):
        resolve(path, environ={}, cwd=tmp_path)


def test_stack_addresses_list_only_the_services_the_stack_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llmctl.toml").write_text(
        'name = "d"\nruntime = "docker"\n\n[observability]\nprometheus = false\n'
    )
    urls = resolve().urls
    assert urls["gateway"] == "http://127.0.0.1:8080"
    assert "engine" not in urls  # a docker stack never publishes its engine
    assert "prometheus" not in urls


def test_stack_addresses_are_the_defaults_only_without_any_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llmctl.toml").write_text("not toml [")
    found = resolve()
    assert found.urls == DEFAULT_URLS
    assert found.gateway_url is None  # a guess, not a stack: no keys go there
