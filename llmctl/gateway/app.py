"""The gateway's aiohttp application: routes, input checks, admission, then the proxy."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from llmctl.core.config import AdmissionLimits, GatewayConfig
from llmctl.core.openai import (
    CHAT,
    COMPLETIONS,
    MODELS_PATH,
    NonStandardNumberError,
    Route,
    parse_json,
)
from llmctl.core.validation import explain
from llmctl.gateway.admission import AdmissionController, AdmissionRefusedError
from llmctl.gateway.auth import KeyRing, readable
from llmctl.gateway.body import BodyError, ClientGoneError, read_body
from llmctl.gateway.connections import ConnectionGuard
from llmctl.gateway.errors import error_response
from llmctl.gateway.health import EngineProbe
from llmctl.gateway.metrics import GatewayMetrics, Outcome
from llmctl.gateway.payload import BadRequestError, parse_completion, request_id
from llmctl.gateway.proxy import Proxy, make_session

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")


class Gateway:
    """Holds the one admission controller, upstream pool, probe and metrics of this process."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.admission = AdmissionController(config.limits)
        self.metrics = GatewayMetrics(self.admission)
        self.keys = KeyRing(config.api_keys)
        self.admin_keys = KeyRing([config.admin_key] if config.admin_key else [])
        self._session: aiohttp.ClientSession | None = None
        self.probe: EngineProbe | None = None
        self.proxy: Proxy | None = None

    async def start(self) -> None:
        self._session = make_session()
        retry = max(1, math.ceil(self.config.health_interval_s))
        self.proxy = Proxy(
            self._session,
            self.config.upstream_url,
            self.config.request_timeout_s,
            self.metrics,
            retry,
            self.admission.retry_after,
        )
        self.probe = EngineProbe(
            self._session,
            self.config.upstream_url,
            self.config.model_name,
            self.config.health_interval_s,
        )
        self.metrics.engine_ready.set_function(
            lambda: 1.0 if self.probe and self.probe.ready else 0.0
        )
        self.probe.start()

    async def stop(self) -> None:
        if self.probe is not None:
            await self.probe.stop()
        if self._session is not None:
            await self._session.close()

    # --- the OpenAI routes ------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, COMPLETIONS)

    async def _completion(self, request: web.Request, route: Route) -> web.StreamResponse:
        # Every exit (answers, cancellation, a bug's exception) is counted here, exactly once.
        outcome = Outcome()
        try:
            return await self._handle(request, route, outcome)
        finally:
            self.metrics.count_request(
                route.path, outcome.status, outcome.reason or "internal_error"
            )

    async def _handle(
        self, request: web.Request, route: Route, outcome: Outcome
    ) -> web.StreamResponse:
        arrived = time.monotonic()
        metrics = self.metrics
        rid = request_id(request.headers.get("X-Request-Id"))
        headers = {"X-Request-Id": rid}
        authorization = request.headers.get("Authorization")
        denied = self._unauthorized(authorization, headers)
        if denied is not None:
            outcome.set(401, "unauthorized")
            return denied
        try:
            raw = await self._read_body(request)
            parsed = parse_completion(raw, route, self.config.model_name)
        except BodyError as exc:
            outcome.set(exc.status, "bad_request")
            return exc.response(headers)
        except BadRequestError as exc:
            outcome.set(400, "bad_request")
            return error_response(400, str(exc), "bad_request", headers, param=exc.param)
        except (ClientGoneError, asyncio.CancelledError) as exc:
            # The client left mid-upload (aiohttp cancels the handler, or the read finds the
            # connection lost): its disconnect, not an internal error.
            metrics.disconnects.labels("upload").inc()
            outcome.set(499, "client_disconnect")
            if isinstance(exc, asyncio.CancelledError):
                raise
            # Returned, not raised: aiohttp would log an exception as a 500 with a traceback.
            return web.Response(status=499)

        upstream_headers = {"Content-Type": "application/json", "X-Request-Id": rid}
        if not self.keys.enabled:
            upstream_headers.update(_engine_auth(authorization))

        try:
            slot = await self.admission.acquire()
        except AdmissionRefusedError as refused:
            metrics.queue_wait.labels(refused.reason).observe(refused.waited_s)
            outcome.set(refused.status, refused.reason)
            headers["X-Queue-Wait-Ms"] = f"{refused.waited_s * 1000:.1f}"
            return error_response(
                refused.status,
                _REFUSAL_MESSAGES[refused.reason],
                refused.reason,
                headers,
                retry_after=refused.retry_after,
            )
        except asyncio.CancelledError:
            metrics.queue_wait.labels("client_disconnect").observe(time.monotonic() - arrived)
            metrics.disconnects.labels("queued").inc()
            outcome.set(499, "client_disconnect")
            raise
        try:
            metrics.queue_wait.labels("admitted").observe(slot.waited_s)
            headers["X-Queue-Wait-Ms"] = f"{slot.waited_s * 1000:.1f}"
            proxy = self.proxy
            if proxy is None:
                raise RuntimeError("gateway not started")
            return await proxy.forward(
                request, route, parsed.body, parsed.stream, upstream_headers, headers, slot, outcome
            )
        finally:
            slot.release()
            metrics.duration.labels(route.path).observe(time.monotonic() - arrived)

    async def _read_body(self, request: web.Request) -> bytes:
        config = self.config
        return await read_body(
            request, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s
        )

    async def models(self, request: web.Request) -> web.StreamResponse:
        headers = {"X-Request-Id": request_id(request.headers.get("X-Request-Id"))}
        authorization = request.headers.get("Authorization")
        denied = self._unauthorized(authorization, headers)
        if denied is not None:
            return denied
        upstream_headers = _engine_auth(authorization) if not self.keys.enabled else {}
        if self._session is None:
            raise RuntimeError("gateway not started")
        timeout = aiohttp.ClientTimeout(total=10.0)
        url = self.config.upstream_url + MODELS_PATH
        try:
            async with self._session.get(
                url, timeout=timeout, headers=upstream_headers
            ) as upstream:
                body = await upstream.read()
                return web.Response(
                    body=body,
                    status=upstream.status,
                    content_type=upstream.content_type,
                    headers=headers,
                )
        except (aiohttp.ClientError, TimeoutError):
            return error_response(
                503, "the engine is unavailable", "engine_unavailable", headers, retry_after=1
            )

    def _unauthorized(
        self, authorization: str | None, headers: dict[str, str]
    ) -> web.Response | None:
        """The 401 for a missing, unreadable or wrong API key; None when the request may pass."""
        if readable(authorization) and self.keys.allows(authorization):
            return None
        return error_response(401, "a valid API key is required", "invalid_api_key", headers)

    # --- operations -------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        probe = self.probe
        ready = probe is not None and probe.ready
        detail = probe.detail if probe is not None else "starting"
        return web.json_response(
            {"status": "ok" if ready else "unavailable", "engine": detail},
            status=200 if ready else 503,
        )

    async def livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(self, request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(self.metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def get_limits(self, request: web.Request) -> web.Response:
        denied = self._admin_denied(request)
        if denied is not None:
            return denied
        return web.json_response(self.admission.limits.model_dump())

    async def put_limits(self, request: web.Request) -> web.Response:
        denied = self._admin_denied(request)
        if denied is not None:
            return denied
        try:
            changes = parse_json(await self._read_body(request))
        except BodyError as exc:
            return exc.response()
        except RecursionError:
            return error_response(400, "body must be a JSON object", "bad_request")
        except NonStandardNumberError as exc:
            return error_response(400, f"invalid limits: {exc}", "bad_request", param=exc.path)
        except ValueError:
            return error_response(400, "body must be a JSON object", "bad_request")
        if not isinstance(changes, dict):
            return error_response(400, "body must be a JSON object", "bad_request")
        try:
            limits = self.admission.update(changes)
        except ValidationError as exc:
            message = explain(exc, what="limits", model=AdmissionLimits)
            return error_response(400, message, "bad_request")
        return web.json_response(limits.model_dump())

    def _admin_denied(self, request: web.Request) -> web.Response | None:
        if not self.admin_keys.enabled:
            return error_response(404, "not found (no admin key is configured)", "not_found")
        authorization = request.headers.get("Authorization")
        if not (readable(authorization) and self.admin_keys.allows(authorization)):
            return error_response(401, "a valid admin key is required", "invalid_api_key")
        return None


def _engine_auth(authorization: str | None) -> dict[str, str]:
    """Without gateway keys the client's key is meant for the engine (vLLM --api-key)."""
    return {"Authorization": authorization} if authorization else {}


_KNOWN_PATHS = frozenset(
    {CHAT.path, COMPLETIONS.path, MODELS_PATH, "/health", "/livez", "/metrics", "/admin/limits"}
)


async def _unrouted(request: web.Request) -> web.Response:
    """JSON answers for paths and methods the gateway does not serve (aiohttp's are plain text)."""
    if request.path in _KNOWN_PATHS:
        return error_response(405, f"{request.method} is not allowed here", "method_not_allowed")
    return error_response(404, f"no route {request.path}", "not_found")


_REFUSAL_MESSAGES = {
    "queue_full": "the gateway's queue is full; retry later",
    "rejected": "the engine is at capacity; retry later",
    "queue_timeout": "no engine slot became free in time; retry later",
}


def build_app(config: GatewayConfig, guard: ConnectionGuard | None = None) -> web.Application:
    """The web application; its cleanup context starts and stops the upstream pool and probe.
    `guard` (the server's) hears when each request's handler starts and ends."""
    gateway = Gateway(config)
    # aiohttp enforces the body limit itself and raises HTTPRequestEntityTooLarge, answered as 413.
    app = web.Application(client_max_size=config.max_body_bytes)
    app[GATEWAY_KEY] = gateway
    track = guard.tracked if guard is not None else _as_is

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post(CHAT.path, track(gateway.chat))
    app.router.add_post(COMPLETIONS.path, track(gateway.completions))
    app.router.add_get(MODELS_PATH, track(gateway.models))
    app.router.add_get("/health", track(gateway.health))
    app.router.add_get("/livez", track(gateway.livez))
    app.router.add_get("/metrics", track(gateway.prometheus))
    app.router.add_get("/admin/limits", track(gateway.get_limits))
    app.router.add_put("/admin/limits", track(gateway.put_limits))
    app.router.add_route("*", "/{tail:.*}", track(_unrouted))
    return app


def _as_is(handler: Handler) -> Handler:
    return handler


__all__ = ["GATEWAY_KEY", "Gateway", "build_app"]
