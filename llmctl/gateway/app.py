"""The gateway's aiohttp application: routes, input checks, admission, then the proxy."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from llmctl.core.config import AdmissionLimits, GatewayConfig
from llmctl.core.openai import CHAT, COMPLETIONS, MODELS_PATH, Route
from llmctl.core.validation import explain
from llmctl.gateway import quota
from llmctl.gateway.admission import AdmissionController, AdmissionRefusedError, Slot
from llmctl.gateway.affinity import prompt_text
from llmctl.gateway.auth import KeyRing, bearer_token, readable
from llmctl.gateway.engines import EnginePool
from llmctl.gateway.errors import error_response
from llmctl.gateway.fairness import FairQueue
from llmctl.gateway.health import PoolMonitor
from llmctl.gateway.metrics import GatewayMetrics, Outcome
from llmctl.gateway.payload import (
    BadRequestError,
    CompletionRequest,
    add_member,
    parse_completion,
    request_id,
)
from llmctl.gateway.pool import ConnectionPool
from llmctl.gateway.proxy import EngineFailedError, Proxy, make_session
from llmctl.gateway.router import SESSION_HEADER, EngineRouter, RouteHint
from llmctl.gateway.tenants import CLASS_HEADER, Tenancy, Tenant, load_tenants

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")
# The engine that served a request (its host:port), on every answer that reached one.
ENGINE_HEADER = "X-Llmctl-Engine"


class Gateway:
    """Holds the one admission controller, engine pool, monitor, router, upstream connection pool
    and metrics of this process."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        upstreams = () if config.upstream_dns else config.upstreams
        self.pool = EnginePool.of(upstreams, config.rejoin_ramp_s)
        self.tenancy: Tenancy | None = None
        queue: FairQueue | None = None
        if config.tenants_file is not None:
            legacy = tuple(k.get_secret_value() for k in config.api_keys)
            self.tenancy = Tenancy(load_tenants(config.tenants_file), legacy)
            queue = FairQueue(self.tenancy.policies)
        self.admission = AdmissionController(config.limits, self.pool, queue=queue)
        self.metrics = GatewayMetrics(self.admission)
        for tenant in self.tenancy.tenants if self.tenancy is not None else ():
            self.metrics.precreate_tenant(tenant.name)
        self.router = EngineRouter(
            self.pool,
            config.routing,
            config.affinity_slack,
            lambda: self.admission.limits.max_active,
            self.metrics,
        )
        self.admission.router = self.router
        self.keys = KeyRing(config.api_keys)
        self.admin_keys = KeyRing([config.admin_key] if config.admin_key else [])
        self._session: aiohttp.ClientSession | None = None
        self.connections = ConnectionPool()
        self.monitor: PoolMonitor | None = None
        self.proxy: Proxy | None = None
        self._retry_unavailable = max(1, math.ceil(config.health_interval_s))

    async def start(self) -> None:
        self._session = make_session()
        config = self.config
        self.proxy = Proxy(
            self.connections,
            config.request_timeout_s,
            self.metrics,
            self._retry_unavailable,
            self.admission.retry_after,
        )
        self.monitor = PoolMonitor(
            self._session,
            self.pool,
            model_name=config.model_name,
            probe_interval_s=config.health_interval_s,
            # Load signals matter only when there is a choice to make.
            poll_interval_s=config.poll_interval_s if self._choosing() else 0.0,
            dns=config.upstream_dns,
            dns_interval_s=config.dns_interval_s,
            on_change=self.admission.wake,
        )
        if config.upstream_dns is not None:
            await self.monitor.resolve()
        self.monitor.start()

    def _choosing(self) -> bool:
        return self.config.upstream_dns is not None or len(self.pool) > 1

    async def stop(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()
        if self._session is not None:
            await self._session.close()
        self.connections.close()

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
            self.metrics.count_request(route.path, outcome)

    async def _handle(
        self, request: web.Request, route: Route, outcome: Outcome
    ) -> web.StreamResponse:
        arrived = time.monotonic()
        metrics = self.metrics
        rid = request_id(request.headers.get("X-Request-Id"))
        headers = {"X-Request-Id": rid}
        authorization = request.headers.get("Authorization")
        tenant: Tenant | None = None
        rank = 0
        if self.tenancy is not None:
            token = bearer_token(authorization) if readable(authorization) else None
            tenant = self.tenancy.identify(token) if token else None
            if tenant is None:
                outcome.set(401, "unauthorized")
                return error_response(
                    401, "a valid API key is required", "invalid_api_key", headers
                )
            rank, outcome.class_name = self.tenancy.rank_of(
                tenant, request.headers.get(CLASS_HEADER)
            )
            outcome.tenant = tenant.name
            headers[CLASS_HEADER] = outcome.class_name
        else:
            denied = self._unauthorized(authorization, headers)
            if denied is not None:
                outcome.set(401, "unauthorized")
                return denied
        try:
            raw = await request.read()
            parsed = parse_completion(raw, route, self.config.model_name)
        except web.HTTPRequestEntityTooLarge:
            outcome.set(413, "bad_request")
            limit = self.config.max_body_bytes
            return error_response(
                413, f"request body is larger than {limit} bytes", "request_too_large", headers
            )
        except BadRequestError as exc:
            outcome.set(400, "bad_request")
            return error_response(400, str(exc), "bad_request", headers, param=exc.param)

        claim: quota.Claim | None = None
        if tenant is not None and (tenant.requests or tenant.tokens):
            now = time.monotonic()
            prompt_chars = len(prompt_text(parsed.data, route.body_key))
            estimate = quota.estimate_tokens(parsed.data, prompt_chars, tenant.default_max_tokens)
            result = quota.claim(tenant, estimate, now)
            headers.update(quota.headers(tenant, now))
            if isinstance(result, quota.Refusal):
                outcome.set(429, "rate_limited")
                metrics.rate_limited.labels(tenant.name, result.limit).inc()
                return error_response(
                    429,
                    f"tenant {tenant.name} is at its {result.limit}-per-minute limit; retry later",
                    "rate_limited",
                    headers,
                    retry_after=max(1, math.ceil(result.retry_after_s)),
                )
            claim = result
        try:
            return await self._serve(
                request, route, parsed, outcome, headers, arrived, rid, authorization, tenant, rank
            )
        finally:
            if claim is not None:
                # What the request really used; nothing when it never reached an engine.
                if outcome.usage is not None:
                    claim.settle(sum(outcome.usage), time.monotonic())
                elif outcome.reason != "ok":
                    claim.settle(0, time.monotonic())

    async def _serve(
        self,
        request: web.Request,
        route: Route,
        parsed: CompletionRequest,
        outcome: Outcome,
        headers: dict[str, str],
        arrived: float,
        rid: str,
        authorization: str | None,
        tenant: Tenant | None,
        rank: int,
    ) -> web.StreamResponse:
        """Admit a checked request and forward it (retrying once on another engine)."""
        metrics = self.metrics
        upstream_headers = {"Content-Type": "application/json", "X-Request-Id": rid}
        if not self.keys.enabled and self.tenancy is None:
            upstream_headers.update(_engine_auth(authorization))
        hint = self.router.hint(parsed.data, route.body_key, request.headers.get(SESSION_HEADER))
        body, strip_usage = self._upstream_body(parsed, tenant, rank)

        admitted = await self._admit(hint, headers, outcome, tenant=tenant, rank=rank)
        if isinstance(admitted, web.Response):
            return admitted
        slot = admitted
        try:
            metrics.queue_wait.observe(slot.waited_s)
            headers["X-Queue-Wait-Ms"] = f"{slot.waited_s * 1000:.1f}"
            proxy = self.proxy
            if proxy is None:
                raise RuntimeError("gateway not started")
            for attempt in (1, 2):
                headers[ENGINE_HEADER] = slot.engine.name
                try:
                    return await proxy.forward(
                        request,
                        route,
                        body,
                        parsed.stream,
                        upstream_headers,
                        headers,
                        slot,
                        outcome,
                        arrived,
                        can_retry=attempt == 1 and len(self.pool) > 1,
                        strip_usage=strip_usage,
                    )
                except EngineFailedError as failed:
                    # Nothing reached the client yet: once, on another engine, ahead of the queue.
                    failed_engine = slot.engine
                    if failed.refused and self.monitor is not None:
                        self.monitor.mark_down(failed_engine, f"engine unreachable: {failed}")
                    slot.release()
                    metrics.retries.labels(failed.kind).inc()
                    retried = await self._admit(
                        hint,
                        headers,
                        outcome,
                        tenant=tenant,
                        rank=rank,
                        exclude=frozenset({failed_engine.name}),
                    )
                    if isinstance(retried, web.Response):
                        return retried
                    slot = retried
            raise RuntimeError("unreachable: the second attempt cannot ask for a retry")
        finally:
            slot.release()
            metrics.e2e.observe(time.monotonic() - arrived)

    def _upstream_body(
        self, parsed: CompletionRequest, tenant: Tenant | None, rank: int
    ) -> tuple[bytes, bool]:
        """The body the engine gets, and whether the usage the gateway added must be stripped.

        Every stream asks the engine for usage: tokens are counted from that one frame instead of
        a scan of every chunk, and a client that did not ask never sees it. With
        priority_to_engine, a tenant's class rides along as vLLM's `priority`. Otherwise the
        client's bytes go through untouched."""
        data = parsed.data
        priority = tenant is not None and self.config.priority_to_engine
        options = data.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        strip = parsed.stream and not wants_usage
        if not strip and not priority:
            return parsed.body, False
        if strip and options is None and not priority:
            # The common case: append the option to the client's JSON object as it is.
            return add_member(parsed.body, _ASK_USAGE), True
        data = dict(data)
        if strip:
            data["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        if priority:
            data["priority"] = rank
        return json.dumps(data, separators=(",", ":")).encode(), strip

    async def _admit(
        self,
        hint: RouteHint | None,
        headers: dict[str, str],
        outcome: Outcome,
        *,
        tenant: Tenant | None = None,
        rank: int = 0,
        exclude: frozenset[str] = frozenset(),
    ) -> Slot | web.Response:
        """A slot, or the refusal to answer with (`exclude` non-empty: a retry, queued first)."""
        try:
            return await self.admission.acquire(
                hint, tenant=tenant, rank=rank, exclude=exclude, front=bool(exclude)
            )
        except AdmissionRefusedError as refused:
            outcome.set(refused.status, refused.reason)
            headers["X-Queue-Wait-Ms"] = f"{refused.waited_s * 1000:.1f}"
            retry_after = refused.retry_after
            if refused.reason == "engine_unavailable":
                retry_after = self._retry_unavailable
            return error_response(
                refused.status,
                _REFUSAL_MESSAGES[refused.reason],
                refused.reason,
                headers,
                retry_after=retry_after,
            )
        except asyncio.CancelledError:
            self.metrics.disconnects.labels("queued").inc()
            outcome.set(499, "client_disconnect")
            raise

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
        engines = [e for e in self.pool if e.ready is True] or [e for e in self.pool if e.member]
        if not engines:
            return error_response(
                503, "no engine is available", "engine_unavailable", headers, retry_after=1
            )
        url = engines[0].url + MODELS_PATH
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
        engines = list(self.pool)
        ready = self.pool.ready()
        body: dict[str, object] = {"status": "ok" if ready else "unavailable"}
        if len(engines) == 1 and self.config.upstream_dns is None:
            body["engine"] = engines[0].detail
        else:
            body["engines"] = {e.name: e.detail for e in engines}
            if self.monitor is not None and self.monitor.dns_detail:
                body["dns"] = self.monitor.dns_detail
        return web.json_response(body, status=200 if ready else 503)

    async def livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(self, request: web.Request) -> web.Response:
        resp = web.Response(body=self.metrics.exposition())
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
            changes = json.loads(await request.read())
        except (ValueError, RecursionError):
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


_ASK_USAGE = b'"stream_options":{"include_usage":true}'

_REFUSAL_MESSAGES = {
    "rate_limited": "the tenant is at its rate limit; retry later",
    "engine_unavailable": "the engine is unavailable",
    "queue_full": "the gateway's queue is full; retry later",
    "rejected": "the engine is at capacity; retry later",
    "queue_timeout": "no engine slot became free in time; retry later",
}


def build_app(config: GatewayConfig) -> web.Application:
    """The web application; its cleanup context starts and stops the upstream pool and probe."""
    gateway = Gateway(config)
    # aiohttp enforces the body limit itself and raises HTTPRequestEntityTooLarge, answered as 413.
    app = web.Application(client_max_size=config.max_body_bytes)
    app[GATEWAY_KEY] = gateway

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post(CHAT.path, gateway.chat)
    app.router.add_post(COMPLETIONS.path, gateway.completions)
    app.router.add_get(MODELS_PATH, gateway.models)
    app.router.add_get("/health", gateway.health)
    app.router.add_get("/livez", gateway.livez)
    app.router.add_get("/metrics", gateway.prometheus)
    app.router.add_get("/admin/limits", gateway.get_limits)
    app.router.add_put("/admin/limits", gateway.put_limits)
    app.router.add_route("*", "/{tail:.*}", _unrouted)
    return app


__all__ = ["GATEWAY_KEY", "Gateway", "build_app"]
