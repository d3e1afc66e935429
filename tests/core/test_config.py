"""The gateway settings read the earlier gateway's environment variables and reject bad values."""

from __future__ import annotations

import pytest

from llmctl.core.config import load_gateway_config
from llmctl.core.errors import ConfigError


def test_legacy_environment_variables_are_read() -> None:
    cfg = load_gateway_config(
        {
            "VLLM_BASE_URL": "http://vllm:8000/v1",
            "MODEL_NAME": "qwen",
            "MAX_ACTIVE": "3",
            "QUEUE_MODE": "reject",
            "QUEUE_MAX": "0",
            "QUEUE_TIMEOUT_S": "2.5",
            "REQUEST_TIMEOUT_S": "90",
        }
    )
    assert cfg.upstream_url == "http://vllm:8000"
    assert (cfg.model_name, cfg.max_active, cfg.queue_mode) == ("qwen", 3, "reject")
    assert (cfg.queue_max, cfg.queue_timeout_s, cfg.request_timeout_s) == (0, 2.5, 90.0)


def test_flags_override_environment() -> None:
    cfg = load_gateway_config({"MAX_ACTIVE": "3"}, {"max_active": 7, "queue_max": None})
    assert cfg.max_active == 7
    assert cfg.queue_max == 64


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("MAX_ACTIVE", "0", "max_active"),
        ("QUEUE_MAX", "-1", "queue_max"),
        ("QUEUE_TIMEOUT_S", "0", "queue_timeout_s"),
        ("REQUEST_TIMEOUT_S", "-5", "request_timeout_s"),
        ("QUEUE_MODE", "drop", "queue_mode"),
        ("MAX_ACTIVE", "many", "max_active"),
        ("QUEUE_TIMEOUT_S", "inf", "queue_timeout_s"),
        ("QUEUE_TIMEOUT_S", "nan", "queue_timeout_s"),
        ("REQUEST_TIMEOUT_S", "inf", "request_timeout_s"),
        ("REQUEST_TIMEOUT_S", "NaN", "request_timeout_s"),
    ],
)
def test_bad_values_name_the_setting(var: str, value: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_gateway_config({var: value})
