"""The gateway's admin API: `GET`/`PUT /admin/limits`, `GET`/`DELETE /admin/cache`, behind the
admin key.

A change of the limits is logged (accesslog.limits_changed) and a change of MAX_ACTIVE counted with
its source: `tune` or `up` (which say so in the X-Llmctl-Source header), else `admin`; the
adaptive limit's own changes are logged by the limiter.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import ValidationError

from llmctl.core.admin import SOURCE_HEADER
from llmctl.core.config import AdmissionLimits
from llmctl.core.metrics import LIMIT_SOURCES
from llmctl.core.openai import NonStandardNumberError, parse_json
from llmctl.core.validation import explain
from llmctl.gateway import accesslog
from llmctl.gateway.auth import readable
from llmctl.gateway.body import BodyError
from llmctl.gateway.errors import error_response

if TYPE_CHECKING:
    from llmctl.gateway.app import Gateway

log = logging.getLogger(__name__)

# Who may say who they are (SOURCE_HEADER): `llmctl tune` and `llmctl up`; anyone else is `admin`.
CALLERS = frozenset(LIMIT_SOURCES) - {"adaptive"}


async def get_limits(gateway: Gateway, request: web.Request) -> web.Response:
    denied = admin_denied(gateway, request)
    if denied is not None:
        return denied
    return web.json_response(limits_body(gateway))


def limits_body(gateway: Gateway) -> dict[str, object]:
    body: dict[str, object] = dict(gateway.admission.limits.model_dump())
    last = gateway.limiter.last if gateway.limiter is not None else None
    if last is not None:
        body["adaptive_last"] = {
            "limit": last.limit,
            "direction": last.direction,
            "reason": last.reason,
            "seconds_ago": round(time.monotonic() - last.at, 3),
        }
    return body


async def put_limits(gateway: Gateway, request: web.Request) -> web.Response:
    denied = admin_denied(gateway, request)
    if denied is not None:
        return denied
    try:
        changes = parse_json(await gateway.read_body(request))
    except BodyError as exc:
        return exc.response()
    except NonStandardNumberError as exc:
        return error_response(400, f"invalid limits: {exc}", "bad_request", param=exc.path)
    except (ValueError, RecursionError):
        return error_response(400, "body must be a JSON object", "bad_request")
    if not isinstance(changes, dict):
        return error_response(400, "body must be a JSON object", "bad_request")
    before = gateway.admission.limits
    try:
        limits = gateway.admission.update(changes)
    except ValidationError as exc:
        message = explain(exc, what="limits", model=AdmissionLimits)
        return error_response(400, message, "bad_request")
    source = request.headers.get(SOURCE_HEADER)
    if source not in CALLERS:
        source = "admin"
    if limits.max_active != before.max_active:
        direction = "up" if limits.max_active > before.max_active else "down"
        gateway.metrics.count_limit_change(source, direction, "set")
    accesslog.limits_changed(source, before, limits)
    return web.json_response(limits_body(gateway))


async def cache(gateway: Gateway, request: web.Request) -> web.Response:
    """GET: the response cache's state; DELETE: purge it."""
    denied = admin_denied(gateway, request)
    if denied is not None:
        return denied
    if gateway.cache is None:
        return error_response(404, "the response cache is off (--cache)", "not_found")
    if request.method == "DELETE":
        entries, size = gateway.cache.cache.purge()
        log.info("response cache purged: %d entries, %d bytes", entries, size)
        return web.json_response({"purged_entries": entries, "purged_bytes": size})
    return web.json_response(gateway.cache.stats())


def admin_denied(gateway: Gateway, request: web.Request) -> web.Response | None:
    if not gateway.admin_keys.enabled:
        return error_response(404, "not found (no admin key is configured)", "not_found")
    authorization = request.headers.get("Authorization")
    if not (readable(authorization) and gateway.admin_keys.allows(authorization)):
        return error_response(401, "a valid admin key is required", "invalid_api_key")
    return None
