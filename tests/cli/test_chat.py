"""`llmctl chat` through a real gateway and simulator: the prompt as an argument or on stdin,
streamed or whole, a system message and a model, JSON for scripts; the answer alone on stdout."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run, llmctl
from tests.tune.conftest import Stack


def _chat(stack: Stack, *args: str, stdin: str | None = None) -> Run:
    port = stack.gateway.rsplit(":", 1)[1]
    return llmctl("chat", *args, "--set", f"ports.gateway={port}", stdin=stdin)


def test_streamed_answer_alone_on_stdout(served: Stack, in_tmp: Path) -> None:
    run = _chat(served, "Hello", "--max-tokens", "12")
    assert run.code == 0, run.err
    assert run.out.strip()
    assert run.out.endswith("\n")
    assert "llmctl-sim via " in run.err
    assert "completion tokens" in run.err  # the usage the stream ended with


def test_the_prompt_can_come_from_stdin(served: Stack, in_tmp: Path) -> None:
    piped = _chat(served, "--json", stdin="a question from a pipe\n")
    dash = _chat(served, "-", "--json", stdin="a question from a pipe")
    given = _chat(served, "a question from a pipe", "--json")
    assert piped.code == dash.code == given.code == 0, piped.err + dash.err
    counts = {json.loads(r.out)["usage"]["prompt_tokens"] for r in (piped, dash, given)}
    assert len(counts) == 1  # the same prompt, however it came


def test_no_stream_json_system_and_model(served: Stack, in_tmp: Path) -> None:
    whole = _chat(served, "Hello", "--no-stream")
    assert whole.code == 0, whole.err
    assert whole.out.strip()
    plain = json.loads(_chat(served, "Hello", "--json").out)
    assert plain["object"] == "chat.completion"
    assert plain["choices"][0]["message"]["content"]
    system = json.loads(_chat(served, "Hello", "--json", "--system", "Answer in French.").out)
    assert system["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    named = json.loads(_chat(served, "Hello", "--json", "--model", "llmctl-sim").out)
    assert named["model"] == "llmctl-sim"


def test_an_unknown_model_is_the_gateways_error(served: Stack, in_tmp: Path) -> None:
    run = _chat(served, "Hello", "--model", "no-such-model")
    assert run.code == 1
    assert run.out == ""
    assert run.err.splitlines()[-1].startswith("error: ")
    assert "404" in run.err
    assert "no-such-model" in run.err
