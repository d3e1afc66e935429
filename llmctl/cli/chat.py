"""`llmctl chat`: one exchange with the running stack's gateway, the prompt given or piped in.

The answer alone goes to stdout (streamed as it comes, or whole), so `echo hi | llmctl chat >
answer.txt` keeps just the answer; which model answered, and the token counts, go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from llmctl.cli.console import console, err_console
from llmctl.cli.stack import ConfigOpt, PresetOpt, SetOpt, running_spec
from llmctl.core.errors import TargetError, UsageError
from llmctl.stack import chat as chat_api
from llmctl.stack.endpoints import first_api_key

STDIN = "-"


def _prompt(message: str | None) -> str:
    """The message given, else (or for `-`) what stdin holds when it is not a terminal."""
    if message is not None and message != STDIN:
        return message
    if message is None and sys.stdin.isatty():
        raise UsageError(
            "nothing to say: give a MESSAGE or pipe one in",
            hint='llmctl chat "Hello"   or   echo "Hello" | llmctl chat',
        )
    text = sys.stdin.read().strip()
    if not text:
        raise UsageError("nothing to say: stdin was empty", hint='llmctl chat "Hello"')
    return text


def _usage_line(usage: Any) -> str | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if prompt is None or completion is None:
        return None
    return f"{prompt} prompt + {completion} completion tokens"


def _print_stream(request: chat_api.ChatRequest) -> str | None:
    """Print the answer's text as it arrives; the usage line, if the gateway sent one."""
    usage = None
    for event in chat_api.stream(request):
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                console.file.write(piece)
                console.file.flush()
    console.file.write("\n")
    return _usage_line(usage)


def _content(answer: dict[str, Any]) -> str:
    try:
        return str(answer["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise TargetError("the gateway answered 200 without a message in `choices`") from None


def chat(
    message: Annotated[
        str | None,
        typer.Argument(
            metavar="MESSAGE",
            help="What to say; leave it out (or give -) to read it from stdin.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to ask.", show_default="the stack's engine.name"),
    ] = None,
    system: Annotated[
        str | None,
        typer.Option("--system", "-s", help="A system message, sent before yours."),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Longest answer, in tokens.")
    ] = 128,
    stream: Annotated[
        bool,
        typer.Option("--stream/--no-stream", help="Print the answer as it comes, or all at once."),
    ] = True,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the whole response (chat.completion) as JSON."),
    ] = False,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    sets: SetOpt = None,
) -> None:
    """Send one chat message through the running stack's gateway and print the answer."""
    prompt = _prompt(message)
    spec = running_spec(config, preset, sets)
    gateway = spec.endpoints()["gateway"]
    messages = [{"role": "system", "content": system}] if system else []
    request = chat_api.ChatRequest(
        gateway_url=gateway,
        model=model or spec.engine.name,
        messages=[*messages, {"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        stream=stream and not as_json,  # one JSON document is the unstreamed answer
        api_key=first_api_key(spec, os.environ),
        timeout_s=spec.gateway.request_timeout_s,
    )
    err_console.print(f"[dim]{request.model} via {gateway}:[/dim]", soft_wrap=True)
    if request.stream:
        usage = _print_stream(request)
    else:
        answer = chat_api.complete(request)
        if as_json:
            console.file.write(json.dumps(answer, indent=2) + "\n")
            return
        console.file.write(_content(answer) + "\n")
        usage = _usage_line(answer.get("usage"))
    if usage:
        err_console.print(f"[dim]{usage}[/dim]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `chat` to the top-level app."""
    app.command("chat")(chat)
