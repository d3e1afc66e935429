"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import refusing_port


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A base URL on 127.0.0.1 where nothing listens, for as long as the test runs."""
    with refusing_port() as port:
        yield f"http://127.0.0.1:{port}"
