"""The settings of every HTTP client llmctl's commands make (httpx), defined once.

Short connect timeouts so an unreachable server costs seconds, not minutes; no redirects; the
environment's proxy variables are ignored, because llmctl talks to the servers of a stack the user
named by address (usually on this host), where a corporate HTTP_PROXY would only get in the way.
The gateway's own upstream pool is aiohttp's and lives in gateway/proxy.py (measured faster there).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from llmctl import __version__

USER_AGENT = f"llmctl/{__version__}"
CONNECT_TIMEOUT_S = 5.0


def _timeout(timeout_s: float) -> httpx.Timeout:
    return httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {"User-Agent": USER_AGENT, **(headers or {})}


def client(*, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """A blocking client (close it, or use it as a context manager)."""
    return httpx.Client(
        timeout=_timeout(timeout_s),
        headers=_headers(headers),
        trust_env=False,
        follow_redirects=False,
    )


def async_client(
    *, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    """An asyncio client (close it with `aclose`, or use it as an async context manager)."""
    return httpx.AsyncClient(
        timeout=_timeout(timeout_s),
        headers=_headers(headers),
        trust_env=False,
        follow_redirects=False,
    )
