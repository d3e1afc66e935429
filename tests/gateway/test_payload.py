"""Request bodies: the member splice that asks the engine for usage without re-encoding."""

from __future__ import annotations

import json

import pytest

from llmctl.gateway.payload import add_member

MEMBER = b'"stream_options":{"include_usage":true}'


@pytest.mark.parametrize(
    "body",
    [b'{"prompt":"hi","stream":true}', b'{ "prompt": "}" }  \n', b"{}", b'{"a":{"b":[1,{}]}}\t'],
)
def test_add_member_keeps_the_object_and_adds_one_key(body: bytes) -> None:
    spliced = add_member(body, MEMBER)
    assert json.loads(spliced) == {**json.loads(body), "stream_options": {"include_usage": True}}
    assert spliced.startswith(body.rstrip()[:-1].rstrip())
