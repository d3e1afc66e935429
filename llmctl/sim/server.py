"""The simulator's HTTP server: OpenAI-compatible routes, /health, /metrics and /dcgm/metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from llmctl.core.errors import ConfigError
from llmctl.core.openai import CHAT, COMPLETIONS, MODELS_PATH, Kind, error_body, parse_json
from llmctl.sim.api import ApiError, parse_generation
from llmctl.sim.config import SimConfig
from llmctl.sim.engine import Engine, EngineFailedError
from llmctl.sim.faults import Fault, FaultDecision, FaultInjector
from llmctl.sim.scheduler import FINISHED, SimRequest
from llmctl.sim.sse import StreamFormat, full_response

_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
CONFIG: web.AppKey[SimConfig] = web.AppKey("config", SimConfig)
READY: web.AppKey[asyncio.Event] = web.AppKey("ready", asyncio.Event)
FAULTS: web.AppKey[FaultInjector] = web.AppKey("faults", FaultInjector)


def _error(status: int, message: str, **kwargs: str) -> web.Response:
    return web.json_response(error_body(message, **kwargs), status=status)


def _loading() -> web.Response:
    return _error(503, "the model is still loading", type="service_unavailable", code="loading")


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes and methods answer with an OpenAI-style body, like the API routes."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason, code=str(exc.status))


def _failed(reason: str) -> web.Response:
    return _error(500, f"the engine failed: {reason}", type="server_error", code="engine_failed")


async def health(request: web.Request) -> web.Response:
    failure = request.app[ENGINE].failure
    if failure is not None:
        return _error(
            503, f"the engine failed: {failure}", type="server_error", code="engine_failed"
        )
    return web.Response(status=200) if request.app[READY].is_set() else _loading()


async def models(request: web.Request) -> web.Response:
    if not request.app[READY].is_set():
        return _loading()
    config = request.app[CONFIG]
    model = {
        "id": config.model,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": config.model,
        "parent": None,
        "max_model_len": request.app[ENGINE].max_model_len,
    }
    return web.json_response({"object": "list", "data": [model]})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[ENGINE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": _PROMETHEUS_TEXT})


def _conditions_body(engine: Engine) -> dict[str, object]:
    engine.conditions.advance(engine.virtual_s())
    return {
        **engine.conditions.current.model_dump(),
        "virtual_s": round(engine.virtual_s(), 3),
        "kv_blocks": engine.scheduler.num_blocks,
        "pending_events": [e.model_dump(exclude_none=True) for e in engine.conditions.pending],
    }


async def get_conditions(request: web.Request) -> web.Response:
    """The simulated GPU's conditions now (docs/simulator.md, Scenarios)."""
    return web.json_response(_conditions_body(request.app[ENGINE]))


async def put_conditions(request: web.Request) -> web.Response:
    """Change the conditions now: any of slowdown, kv_fraction, prompt_scale, output_scale."""
    engine = request.app[ENGINE]
    try:
        changes = parse_json(await request.read())
    except (ValueError, RecursionError) as exc:
        return _error(400, f"invalid JSON: {exc}", type="invalid_request_error")
    if not isinstance(changes, dict):
        return _error(400, "body must be a JSON object", type="invalid_request_error")
    try:
        engine.change(changes)
    except ConfigError as exc:
        return _error(400, str(exc), type="invalid_request_error")
    return web.json_response(_conditions_body(engine))


async def dcgm_metrics(request: web.Request) -> web.Response:
    body = request.app[ENGINE].gpu.render()
    return web.Response(body=body, headers={"Content-Type": _PROMETHEUS_TEXT})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, CHAT.kind)


async def completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, COMPLETIONS.kind)


async def _wait(engine: Engine, req: SimRequest) -> None:
    if engine.failure is not None:
        raise EngineFailedError(engine.failure)
    waiter = asyncio.get_running_loop().create_future()
    req.waiter = waiter
    await waiter


def _close(request: web.Request) -> None:
    """Cut the connection as a crashing server would (what was written still goes out)."""
    if request.transport is not None:
        request.transport.close()


async def generate(request: web.Request, kind: Kind) -> web.StreamResponse:
    app = request.app
    if not app[READY].is_set():
        return _loading()
    engine = app[ENGINE]
    try:
        try:
            body = await request.json(loads=parse_json)
        except RecursionError:
            raise ApiError("the request body is nested too deeply") from None
        except ValueError as exc:  # malformed, or NaN / Infinity / 1e999 (not JSON numbers)
            raise ApiError(f"the request body is not valid JSON: {exc}") from None
        except web.HTTPRequestEntityTooLarge:
            raise ApiError("the request body is too large", status=413) from None
        params = parse_generation(
            kind, body, served_model=app[CONFIG].model, max_model_len=engine.max_model_len
        )
    except ApiError as exc:
        return web.json_response(exc.body, status=exc.status)
    req = engine.new_request(params.prompt_ids, params.max_tokens, params.ignore_eos)
    if req.prompt_tokens != params.prompt_tokens:
        # A scenario's prompt_scale: usage reports the prompt the engine processed, as vLLM does.
        params = dataclasses.replace(params, prompt_tokens=req.prompt_tokens)
    decision = app[FAULTS].decide(req.target_tokens)
    if decision.fault is Fault.ERROR:
        return _error(500, "simulated engine failure", type="server_error", code="simulated_error")
    if decision.fault is Fault.STALL:
        await asyncio.Event().wait()  # until the client gives up and aiohttp cancels us
    req.stream = params.stream
    try:
        engine.submit(req)
    except EngineFailedError as exc:
        return _failed(str(exc))
    try:
        if params.stream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
            try:
                await _stream(request, resp, engine, req, StreamFormat(params), decision)
            except ConnectionResetError:
                pass  # the client left: abort below
            except EngineFailedError:
                _close(request)  # mid-stream: cut it off, as a crashed engine would
            return resp
        while req.status != FINISHED:
            try:
                await _wait(engine, req)
            except EngineFailedError as exc:
                return _failed(str(exc))
        if decision.fault is Fault.DROP:
            _close(request)
            return web.Response(status=500)
        text = engine.tokens.text(req.text_offset, 0, req.num_output)
        reason = req.finished_reason or "abort"
        return web.Response(
            body=full_response(params, text, reason, req.num_output),
            content_type="application/json",
        )
    finally:
        engine.abort(req)  # no-op once finished; frees the KV blocks of a client that left


async def _stream(
    request: web.Request,
    resp: web.StreamResponse,
    engine: Engine,
    req: SimRequest,
    fmt: StreamFormat,
    fault: FaultDecision,
) -> None:
    await resp.prepare(request)
    # vLLM sends chat's role frame with the first output, not with the headers: sent earlier it
    # would make every client's time to first token read ~0.
    opening = fmt.opening()
    piece = engine.tokens.piece
    offset = req.text_offset
    prefix, suffix = fmt.prefix, fmt.suffix
    drop_at = fault.drop_after if fault.fault is Fault.DROP else -1
    sent = 0
    while True:
        produced = req.num_output
        if produced == sent and req.status != FINISHED:
            await _wait(engine, req)
            continue
        if 0 <= drop_at <= produced:
            produced = drop_at
        out = "".join([prefix + piece(offset, i) + suffix for i in range(sent, produced)])
        if opening:
            out, opening = opening + out, ""
        sent = produced
        if sent == drop_at:
            await resp.write(out.encode())
            _close(request)
            return
        if req.status == FINISHED:
            out += fmt.closing(req.finished_reason or "abort", sent)
            await resp.write(out.encode())
            await resp.write_eof()
            return
        await resp.write(out.encode())


def build_app(config: SimConfig) -> web.Application:
    """The aiohttp application; the engine starts with the app (inside the running loop)."""
    app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[openai_errors])
    app[CONFIG] = config
    app[READY] = asyncio.Event()
    app[FAULTS] = FaultInjector(config.faults, config.seed)
    app.router.add_get("/health", health)
    app.router.add_get(MODELS_PATH, models)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/dcgm/metrics", dcgm_metrics)
    app.router.add_post(CHAT.path, chat_completions)
    app.router.add_post(COMPLETIONS.path, completions)
    app.router.add_get("/sim/conditions", get_conditions)
    app.router.add_put("/sim/conditions", put_conditions)
    app[ENGINE] = Engine(
        config.profile,
        model_name=config.model,
        time_scale=config.time_scale,
        seed=config.seed,
        scenario=config.scenario,
        prefix_caching=config.prefix_caching,
        gpu_index=config.gpu_index,
    )
    app.cleanup_ctx.append(_engine_lifecycle)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = app[ENGINE]
    engine.start()
    ready_after = asyncio.get_running_loop().call_later(
        config.faults.startup_delay_s, app[READY].set
    )
    yield
    ready_after.cancel()
    await engine.stop()


async def serve(config: SimConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until cancelled (SIGINT/SIGTERM end the process through the caller)."""
    try:
        # vLLM's uvicorn listens with a backlog of 2048; Python's default of 128 would drop the
        # SYNs of a burst of new connections (a gateway opening 256 at once) for a second.
        sock = socket.create_server((config.host, config.port), backlog=2048)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from exc
    # A short shutdown timeout: open streams are cut on SIGTERM rather than drained (tests and
    # `llmctl down` expect a quick exit).
    runner = web.AppRunner(
        build_app(config), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()
    if on_ready is not None:
        on_ready(f"http://{config.host}:{sock.getsockname()[1]}")
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
