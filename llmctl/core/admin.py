"""A client for the gateway's admin API (`GET`/`PUT /admin/limits`): the knob every tune trial
turns and `llmctl up` uses to change a running stack's limits without a restart."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from llmctl.core import http
from llmctl.core.config import AdmissionLimits
from llmctl.core.errors import TargetError

# Who changes the limits (the gateway logs and counts each change by it); anything else is `admin`.
SOURCE_HEADER = "X-Llmctl-Source"


class GatewayAdmin:
    """Reads and changes the live admission limits of one gateway, as `source` (`tune`, `up`)."""

    def __init__(
        self, gateway_url: str, admin_key: str, *, timeout_s: float = 10.0, source: str = "tune"
    ) -> None:
        self.url = gateway_url.rstrip("/").removesuffix("/v1") + "/admin/limits"
        self._client = http.client(
            timeout_s=timeout_s,
            headers={"Authorization": f"Bearer {admin_key}", SOURCE_HEADER: source},
        )

    def get(self) -> AdmissionLimits:
        return self._call("GET")

    def put(self, **changes: Any) -> AdmissionLimits:
        """A partial update; returns the limits now in force."""
        return self._call("PUT", json=changes)

    def restore(self, limits: AdmissionLimits) -> AdmissionLimits:
        return self.put(**limits.model_dump())

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GatewayAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, **kwargs: Any) -> AdmissionLimits:
        try:
            resp = self._client.request(method, self.url, **kwargs)
        except httpx.HTTPError as exc:
            raise TargetError(f"gateway admin API at {self.url} unreachable: {exc}") from exc
        if resp.status_code == 404:
            raise TargetError(
                f"{self.url} answered 404: the gateway has no admin key configured "
                "(set LLMCTL_ADMIN_KEY or --admin-key-file when starting it)"
            )
        if resp.status_code == 401:
            raise TargetError(f"{self.url} refused the admin key (401)")
        if resp.status_code != 200:
            raise TargetError(f"{method} {self.url} answered {resp.status_code}: {resp.text[:200]}")
        try:
            return AdmissionLimits.model_validate(resp.json())
        except (ValueError, ValidationError) as exc:
            raise TargetError(f"{self.url} answered something that is not limits: {exc}") from exc
