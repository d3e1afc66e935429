"""Bearer-key checks for the public API and the admin API, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from pydantic import SecretStr


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def readable(authorization: str | None) -> bool:
    """False for a header holding bytes that are not UTF-8 (aiohttp keeps them as surrogates);
    no key can match it and it cannot be forwarded to the engine either."""
    if authorization is None:
        return True
    try:
        authorization.encode()
    except UnicodeEncodeError:
        return False
    return True


class KeyRing:
    """A set of accepted keys; empty means every request is allowed."""

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._keys = tuple(k.get_secret_value().encode() for k in keys if k.get_secret_value())

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: str | None) -> bool:
        if not self._keys:
            return True
        token = bearer_token(authorization)
        if token is None:
            return False
        # aiohttp keeps undecodable header bytes as surrogates; turn them back into the raw bytes
        # (which match no key) instead of failing on them.
        candidate = token.encode("utf-8", "surrogateescape")
        # Compare against every key without stopping early, so timing reveals neither which key
        # matched nor how many characters did.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched
