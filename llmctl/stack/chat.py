"""One chat exchange with a stack's gateway (`llmctl chat`): streamed or whole, errors in words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmctl.core import http
from llmctl.core.errors import TargetError
from llmctl.core.openai import CHAT, DONE


@dataclass(frozen=True)
class ChatRequest:
    """What `llmctl chat` sends: the messages, the model, and how to answer."""

    gateway_url: str
    model: str
    messages: list[dict[str, str]]
    max_tokens: int = 128
    stream: bool = True
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 600.0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    @property
    def url(self) -> str:
        return self.gateway_url.rstrip("/") + CHAT.path


def _headers(request: ChatRequest) -> dict[str, str]:
    return {"Authorization": f"Bearer {request.api_key}"} if request.api_key else {}


def _refused(resp: httpx.Response, url: str) -> TargetError:
    try:
        error = resp.json().get("error", {})
        detail = f"{error.get('code') or ''}: {error.get('message') or resp.text[:300]}"
    except (ValueError, AttributeError):
        detail = resp.text[:300]
    return TargetError(f"{url} answered {resp.status_code} {detail.strip(': ')}")


def complete(request: ChatRequest) -> dict[str, Any]:
    """Send a non-streaming request; the chat.completion body."""
    try:
        with http.client(timeout_s=request.timeout_s, headers=_headers(request)) as client:
            resp = client.post(request.url, json={**request.body(), "stream": False})
    except httpx.HTTPError as exc:
        raise _unreachable(request, exc) from exc
    if resp.status_code != 200:
        raise _refused(resp, request.url)
    try:
        body: dict[str, Any] = resp.json()
    except ValueError as exc:
        raise TargetError(f"{request.url} answered 200 with a body that is not JSON") from exc
    return body


def stream(request: ChatRequest) -> Iterator[dict[str, Any]]:
    """Send a streaming request; yields each SSE event's JSON object as it arrives."""
    try:
        with (
            http.client(timeout_s=request.timeout_s, headers=_headers(request)) as client,
            client.stream("POST", request.url, json=request.body()) as resp,
        ):
            if resp.status_code != 200:
                resp.read()
                raise _refused(resp, request.url)
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload.encode() == DONE:
                    return
                event = json.loads(payload)
                if isinstance(event, dict) and event.get("error"):
                    error = event["error"]
                    message = error.get("message") if isinstance(error, dict) else error
                    raise TargetError(f"the stream ended with an error: {message}")
                if isinstance(event, dict):
                    yield event
    except httpx.HTTPError as exc:
        raise _unreachable(request, exc) from exc
    except ValueError as exc:
        raise TargetError(f"{request.url} sent an event that is not JSON") from exc


def _unreachable(request: ChatRequest, exc: httpx.HTTPError) -> TargetError:
    return TargetError(
        f"gateway {request.url} unreachable ({exc or type(exc).__name__}); "
        "is the stack up? (`llmctl up`)"
    )
