"""Prompt tokens at admission over real sockets: counted with the model folder's tokenizer, a prompt
too long for the window the engine lists refused with vLLM's 400 before it reaches the engine, the
rule in use shown by /health and the metrics, and tenants' token limits charged the exact count."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from llmctl.core.errors import ConfigError
from llmctl.gateway.engines import EnginePool
from llmctl.gateway.health import model_windows
from llmctl.gateway.tenants import key_hash
from tests.gateway.client import chat, run_post
from tests.gateway.conftest import GatewayHandle, MakeGateway
from tests.gateway.modelfolder import make_model_folder
from tests.gateway.upstream import MODEL, FakeEngine
from tests.support import eventually

WINDOW = 32
# The default system block (6), the user turn (<|im_start|> user hello world <|im_end|>: 5) and
# the generation prompt (2).
HELLO_TOKENS = 13


def _list_window(engine: FakeEngine) -> None:
    models = {"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": WINDOW}]}
    engine.models_body = json.dumps(models).encode()


def _windowed(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path, **kw: object
) -> GatewayHandle:
    _list_window(engine)
    gw = make_gateway(tokenizer=str(make_model_folder(tmp_path / "model")), **kw)
    eventually(lambda: httpx.get(f"{gw.url}/health").status_code == 200, what="engine probed")
    return gw


def _hello(words: int = 0) -> dict[str, object]:
    return chat(messages=[{"role": "user", "content": "hello world" + " ok" * words}])


def test_prompts_are_counted_exactly_and_a_long_one_is_refused_as_vllm_refuses_it(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path
) -> None:
    gw = _windowed(make_gateway, engine, tmp_path)
    assert run_post(gw.url, _hello()).status == 200
    assert (
        gw.metric("llmctl_gateway_admission_prompt_tokens_total", counting="exact") == HELLO_TOKENS
    )

    too_long = run_post(gw.url, _hello(words=WINDOW))
    assert too_long.status == 400
    assert too_long.json() == {
        "error": {
            "message": f"This model's maximum context length is {WINDOW} tokens. However, your "
            f"prompt contains at least {WINDOW + 1} input tokens, which exceeds this limit even "
            "without any output tokens. Please reduce the length of the input prompt. "
            f"(parameter=input_tokens, value={WINDOW + 1})",
            "type": "BadRequestError",
            "param": "input_tokens",
            "code": 400,
        }
    }
    assert engine.started == 1  # the long one never reached it
    assert gw.metric("llmctl_gateway_requests_total", reason="bad_request") == 1
    assert gw.wait_idle() < 2


def test_exactly_the_window_and_too_many_output_tokens_are_refused_too(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path
) -> None:
    gw = _windowed(make_gateway, engine, tmp_path)
    full = run_post(gw.url, _hello(words=WINDOW - HELLO_TOKENS))
    assert full.status == 400
    assert full.json()["error"]["param"] == "max_tokens"
    over = run_post(gw.url, _hello() | {"max_tokens": WINDOW + 1})
    assert over.json()["error"]["message"].startswith(
        f"max_tokens={WINDOW + 1} cannot be greater than max_model_len={WINDOW}."
    )
    ids = run_post(gw.url, {"prompt": list(range(WINDOW + 5))}, "/v1/completions")
    assert ids.json()["error"]["param"] == "input_tokens"
    assert engine.started == 0


def test_a_model_the_engine_does_not_list_is_left_to_the_engine(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path
) -> None:
    gw = _windowed(make_gateway, engine, tmp_path)
    answer = run_post(gw.url, _hello(words=WINDOW) | {"model": "another"})
    assert answer.status == 200
    assert engine.started == 1


def test_health_and_metrics_say_how_prompts_are_counted(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path
) -> None:
    plain = make_gateway()
    assert httpx.get(f"{plain.url}/health").json()["prompt_tokens"].startswith("estimate")
    run_post(plain.url, _hello())
    assert plain.metric("llmctl_gateway_admission_prompt_tokens_total", counting="estimated") == 3
    exact = make_gateway(tokenizer=str(make_model_folder(tmp_path / "model")))
    assert "tokenizer of" in httpx.get(f"{exact.url}/health").json()["prompt_tokens"]
    # A hub id that is not in the cache: estimated, and said so.
    missing = make_gateway(tokenizer="nobody/no-such-model")
    assert httpx.get(f"{missing.url}/health").json()["prompt_tokens"].startswith("estimate")


def test_a_tokenizer_path_that_is_not_there_stops_startup(make_gateway: MakeGateway) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        make_gateway(tokenizer="/no/such/folder")


def test_a_tenants_token_limit_is_charged_the_exact_count(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f'[[tenants]]\nname = "a"\ntokens_per_minute = 1000\nkeys = ["{key_hash("sk-a")}"]\n'
    )
    gw = _windowed(make_gateway, engine, tmp_path, tenants_file=tenants)
    answer = run_post(
        gw.url, _hello() | {"max_tokens": 10}, headers={"Authorization": "Bearer sk-a"}
    )
    assert answer.status == 200
    # Charged at admission: the prompt's exact tokens plus the most output it may produce.
    assert answer.headers["x-ratelimit-remaining-tokens"] == str(1000 - HELLO_TOKENS - 10)


def test_the_window_is_the_largest_any_engine_lists() -> None:
    pool = EnginePool.of(["http://a:1", "http://b:1"])
    a, b = pool.engines
    a.windows = model_windows(b'{"data": [{"id": "m", "max_model_len": 2048}, {"id": "x"}]}')
    b.windows = {"m": 4096}
    assert pool.window("m") == 4096
    assert pool.window("x") is None  # listed without a window
    b.member = False  # an engine that left no longer counts
    assert pool.window("m") == 2048
