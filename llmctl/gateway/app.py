"""The gateway's aiohttp application: routes, input checks, admission, then the proxy."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from llmctl.core.config import GatewayConfig
from llmctl.core.openai import (
    CHAT,
    COMPLETIONS,
    ENGINE_HEADER,
    MODELS_PATH,
    Route,
)
from llmctl.gateway import accesslog, admin, context, quota
from llmctl.gateway.adaptive import Decision
from llmctl.gateway.admission import AdmissionController, AdmissionRefusedError, Slot
from llmctl.gateway.auth import KeyRing, bearer_token, readable
from llmctl.gateway.body import BodyError, ClientGoneError, read_body
from llmctl.gateway.cache import ResponseCache, cache_key, cacheable
from llmctl.gateway.caching import CacheFront
from llmctl.gateway.connections import ConnectionGuard
from llmctl.gateway.engines import EnginePool
from llmctl.gateway.errors import error_response
from llmctl.gateway.fairness import FairQueue
from llmctl.gateway.health import PoolMonitor
from llmctl.gateway.limiter import AdaptiveLimiter
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
from llmctl.gateway.router import SESSION_HEADER, EngineRouter, Retry, RouteHint
from llmctl.gateway.tenants import CLASS_HEADER, Tenancy, Tenant, load_tenants
from llmctl.gateway.tokens import TokenCounter

log = logging.getLogger(__name__)

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")


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
        self.access_log: accesslog.AccessLog | None = None
        if config.access_log:
            self.access_log = accesslog.AccessLog(config.log_format)
            self.metrics.ttft.tap = self.access_log.tap_ttft
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
        self.limiter: AdaptiveLimiter | None = None
        self.proxy: Proxy | None = None
        self._retry_unavailable = max(1, math.ceil(config.health_interval_s))
        self.counter = TokenCounter.load(config.tokenizer)
        self.cache: CacheFront | None = None
        if config.cache:
            store = ResponseCache(
                config.cache_max_bytes, config.cache_ttl_s, on_evict=self.metrics.evicted
            )
            self.metrics.cache = store
            self.cache = CacheFront(store, self.metrics)

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
            poll_interval_s=config.poll_interval_s,
            dns=config.upstream_dns,
            dns_interval_s=config.dns_interval_s,
            on_change=self.admission.wake,
            # Load signals matter when there is a choice to make or a limit to steer.
            polling=lambda: self._choosing() or self.admission.limits.limit_mode == "adaptive",
        )
        if config.upstream_dns is not None:
            await self.monitor.resolve()
        self.monitor.start()
        self.limiter = AdaptiveLimiter(
            self.admission, self.pool, self.metrics.measurements, self._adapted
        )
        self.limiter.start()
        accesslog.limits_at_start(self.admission.limits)
        log.info("prompt tokens: %s", self.counter.rule)

    def _adapted(self, decision: Decision, reason: str, changed: bool) -> None:
        if changed:
            self.metrics.count_limit_change("adaptive", decision.direction, reason)
        self.metrics.show_decision(decision.direction, reason)

    def _choosing(self) -> bool:
        return self.config.upstream_dns is not None or len(self.pool) > 1

    async def stop(self) -> None:
        if self.limiter is not None:
            await self.limiter.stop()
        if self.monitor is not None:
            await self.monitor.stop()
        if self._session is not None:
            await self._session.close()
        self.connections.close()
        self.counter.close()
        if self.access_log is not None:
            self.access_log.flush()

    # --- the OpenAI routes ------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, COMPLETIONS)

    async def _completion(self, request: web.Request, route: Route) -> web.StreamResponse:
        # Every exit (answers, cancellation, a bug's exception) is counted here, exactly once.
        outcome = Outcome()
        started = time.monotonic()
        token = accesslog.CURRENT.set(outcome)
        try:
            return await self._handle(request, route, outcome)
        finally:
            accesslog.CURRENT.reset(token)
            self.metrics.count_request(route.path, outcome)
            if self.access_log is not None:
                self.access_log.request(route.path, outcome, time.monotonic() - started)

    async def _handle(
        self, request: web.Request, route: Route, outcome: Outcome
    ) -> web.StreamResponse:
        arrived = time.monotonic()
        metrics = self.metrics
        rid = outcome.request_id = request_id(request.headers.get("X-Request-Id"))
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
            raw = await self.read_body(request)
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

        counted = await self.counter.count_async(route, parsed.data)
        metrics.admission_prompt_tokens.labels(counted.counting).inc(counted.tokens)
        window = self.pool.window(str(parsed.data.get("model")))
        refused = context.check(
            route, parsed.data, counted, window, self.counter.max_chars_per_token
        )
        if refused is not None:
            outcome.set(400, "bad_request")
            return web.Response(
                body=refused.body(), status=400, content_type="application/json", headers=headers
            )

        claim: quota.Claim | None = None
        if tenant is not None and (tenant.requests or tenant.tokens):
            estimate = quota.estimate_tokens(parsed.data, counted.tokens, tenant.default_max_tokens)
            result = await quota.claim_held(tenant, estimate)
            headers.update(quota.headers(tenant, time.monotonic()))
            if isinstance(result, quota.Refusal):
                outcome.set(429, "rate_limited")
                metrics.rate_limited.labels(tenant.name, result.limit).inc()
                # Retry-After is whole seconds; OpenAI's SDKs read this exact one first.
                headers["retry-after-ms"] = str(math.ceil(result.retry_after_s * 1000))
                return error_response(
                    429,
                    f"tenant {tenant.name} is at its {result.limit}-per-minute limit; retry later",
                    "rate_limited",
                    headers,
                    retry_after=quota.retry_after(result),
                )
            claim = result
        serve = functools.partial(
            self._serve, request, route, parsed, outcome, headers, arrived, rid, authorization
        )
        try:
            if self.cache is not None and cacheable(parsed.data):
                key = cache_key(tenant.name if tenant else None, route.path, parsed.data)
                return await self.cache.serve(
                    request,
                    route,
                    parsed.data,
                    key,
                    outcome,
                    headers,
                    arrived,
                    lambda collect: serve(tenant, rank, collect),
                )
            return await serve(tenant, rank)
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
        collect: bytearray | None = None,
    ) -> web.StreamResponse:
        """Admit a checked request and forward it (retrying once on another engine); `collect`
        receives the engine's answer (the cache's leader)."""
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
            outcome.queue_wait_s = slot.waited_s
            headers["X-Queue-Wait-Ms"] = f"{slot.waited_s * 1000:.1f}"
            proxy = self.proxy
            if proxy is None:
                raise RuntimeError("gateway not started")
            for attempt in (1, 2):
                headers[ENGINE_HEADER] = outcome.engine = slot.engine.name
                if collect is not None:
                    collect.clear()  # a failed first attempt's bytes are not the answer
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
                        collect=collect,
                    )
                except EngineFailedError as failed:
                    # Nothing reached the client yet: once, on another engine, ahead of the queue.
                    failed_engine = slot.engine
                    if failed.refused and self.monitor is not None:
                        self.monitor.mark_down(failed_engine, f"engine unreachable: {failed}")
                    slot.release()
                    metrics.retries.labels(failed.kind).inc()
                    retried = await self._admit(
                        Retry(hint),
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
        hint: RouteHint | Retry | None,
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
            outcome.queue_wait_s = refused.waited_s
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

    async def read_body(self, request: web.Request) -> bytes:
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
        engine_key = not self.keys.enabled and self.tenancy is None
        upstream_headers = _engine_auth(authorization) if engine_key else {}
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
        if self.tenancy is not None:  # a tenant's key, or a plain one (the `default` tenant's)
            token = bearer_token(authorization) if readable(authorization) else None
            if token and self.tenancy.identify(token) is not None:
                return None
        elif readable(authorization) and self.keys.allows(authorization):
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
        body["prompt_tokens"] = self.counter.rule
        if self.cache is not None:
            body["cache"] = self.cache.stats()
        return web.json_response(body, status=200 if ready else 503)

    async def livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(self, request: web.Request) -> web.Response:
        resp = web.Response(body=self.metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp


def _engine_auth(authorization: str | None) -> dict[str, str]:
    """Without gateway keys the client's key is meant for the engine (vLLM --api-key)."""
    return {"Authorization": authorization} if authorization else {}


_KNOWN_PATHS = frozenset(
    {
        CHAT.path,
        COMPLETIONS.path,
        MODELS_PATH,
        "/health",
        "/livez",
        "/metrics",
        "/admin/limits",
        "/admin/cache",
    }
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
    app.router.add_get("/admin/limits", track(functools.partial(admin.get_limits, gateway)))
    app.router.add_put("/admin/limits", track(functools.partial(admin.put_limits, gateway)))
    app.router.add_get("/admin/cache", track(functools.partial(admin.cache, gateway)))
    app.router.add_delete("/admin/cache", track(functools.partial(admin.cache, gateway)))
    app.router.add_route("*", "/{tail:.*}", track(_unrouted))
    return app


def _as_is(handler: Handler) -> Handler:
    return handler


__all__ = ["GATEWAY_KEY", "Gateway", "build_app"]
