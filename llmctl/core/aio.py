"""The one way llmctl runs an event loop: uvloop when it is installed, asyncio's otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor when uvloop is importable, else None (asyncio's default loop).

    A loop factory rather than an event-loop policy: policies are deprecated from Python 3.14."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion in a fresh event loop and close the loop afterwards."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
