"""The gateway's log: a line per completion request (the access log) and a line per change of the
admission limits with its source, as text or as JSON lines, never wrapped.

Text lines read `TIME LEVEL LOGGER: MESSAGE`; an access line's message is `key=value` pairs
(logfmt), a JSON line has the same keys, so a line means the same in either format.

The access log is on the request path. Through `logging` a line costs a record, a lock, a format
and a flushed write (about 10 us on an idle core, 35 us on this shared machine): instead each line
is formatted here directly and buffered, and the buffer is written at most FLUSH_S after its first
line, before any other log line (so the log stays in order) and when the gateway stops. Everything else (limit changes, start-up, warnings) goes through
`logging`, with the formatter `configure` installs writing the same shape.

The request's TTFT is taken where the proxy observes it: the TTFT histogram's tap hands it to the
Outcome of the request in progress, found through a context variable (each request runs in its
own task), so the proxy's fast path needs no change for the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

from llmctl.core.config import AdmissionLimits, LogFormat

if TYPE_CHECKING:  # at run time only duck-typed: the limiter, which metrics imports, logs here
    from llmctl.gateway.metrics import Outcome

ACCESS_LOGGER = "llmctl.gateway.access"
LIMITS_LOGGER = "llmctl.gateway.limits"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FLUSH_S = 0.25

# The Outcome of the request this task is serving (None outside a completion request).
CURRENT: ContextVar[Outcome | None] = ContextVar("llmctl_outcome", default=None)
_limits_log = logging.getLogger(LIMITS_LOGGER)
# Every access log of this process, for the handler to flush ahead of other lines.
_OPEN: weakref.WeakSet[AccessLog] = weakref.WeakSet()


def iso_time(epoch: float) -> str:
    """UTC, millisecond resolution: `2025-01-31T12:00:00.123Z`."""
    whole = int(epoch)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((epoch - whole) * 1000):03d}Z"


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, plus its `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return _json(data)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes pending access lines before each record, so the log stays in time order."""

    def emit(self, record: logging.LogRecord) -> None:
        for access in list(_OPEN):
            access.flush()
        super().emit(record)


def configure(log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Logging for `llmctl gateway serve`: INFO and above, one line per record (text or JSON)."""
    handler = _Handler(stream or sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _ms(seconds: float | None) -> float | None:
    # 1000.0: an int wait (0) must print as the fast line does, 0.0
    return None if seconds is None else round(seconds * 1000.0, 1)


def access_fields(route: str, outcome: Outcome, duration_s: float) -> dict[str, Any]:
    """What one access line says, in order; None for what the request never got to."""
    usage = outcome.usage
    return {
        "request_id": outcome.request_id,
        "route": route,
        "status": outcome.status,
        "reason": outcome.reason or "internal_error",
        "queue_wait_ms": _ms(outcome.queue_wait_s),
        "ttft_ms": _ms(outcome.ttft_s),
        "duration_ms": _ms(duration_s),
        "prompt_tokens": usage[0] if usage is not None else None,
        "completion_tokens": usage[1] if usage is not None else None,
        "tenant": outcome.tenant,
        "class": outcome.class_name,
    }


def logfmt(fields: Mapping[str, Any]) -> str:
    """`key=value` pairs; unknown values as `-`, tenant and class only when there are tenants.
    Every value is a number or a token without spaces (request ids, routes, reasons and tenant
    names are all checked), so none needs quoting."""
    return " ".join(
        f"{key}={'-' if value is None else value}"
        for key, value in fields.items()
        if value is not None or key not in ("tenant", "class")
    )


class AccessLog:
    """Buffered access lines for one gateway; `request` is called once per completion request."""

    def __init__(self, log_format: LogFormat, stream: TextIO | None = None) -> None:
        self.json = log_format == "json"
        self.stream = stream or sys.stderr
        self._pending: list[str] = []
        self._second = -1
        self._prefix = ""
        _OPEN.add(self)

    def request(self, route: str, outcome: Outcome, duration_s: float) -> None:
        now = time.time()
        if self.json:
            head = {"time": iso_time(now), "level": "info", "logger": ACCESS_LOGGER}
            fields = access_fields(route, outcome, duration_s)
            line = _json({**head, "message": "request", **fields})
        else:
            # logfmt(access_fields(...)) written out: this runs for every request.
            usage = outcome.usage
            wait, ttft = outcome.queue_wait_s, outcome.ttft_s
            line = (
                f"{self._stamp(now)} INFO {ACCESS_LOGGER}: request_id={outcome.request_id or '-'} "
                f"route={route} status={outcome.status} "
                f"reason={outcome.reason or 'internal_error'} "
                f"queue_wait_ms={'-' if wait is None else f'{wait * 1000:.1f}'} "
                f"ttft_ms={'-' if ttft is None else f'{ttft * 1000:.1f}'} "
                f"duration_ms={duration_s * 1000:.1f} "
                f"prompt_tokens={'-' if usage is None else usage[0]} "
                f"completion_tokens={'-' if usage is None else usage[1]}"
            )
            if outcome.tenant is not None:
                line += f" tenant={outcome.tenant} class={outcome.class_name or '-'}"
        self._pending.append(line + "\n")
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)

    def _stamp(self, now: float) -> str:
        # As logging's asctime (local time, milliseconds after a comma), formatted once a second.
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._prefix},{int((now - second) * 1000):03d}"

    def flush(self) -> None:
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the log's reader is gone: serving matters more than logging
            pass

    def tap_ttft(self, seconds: float) -> None:
        """The TTFT histogram's tap: the value belongs to the request this task serves."""
        outcome = CURRENT.get()
        if outcome is not None:
            outcome.ttft_s = seconds


def limits_changed(
    source: str, before: AdmissionLimits, after: AdmissionLimits, reason: str = ""
) -> None:
    """One line for a change of the admission limits: every key that moved, and who moved it
    (`admin`, `tune`, `up`, `adaptive`)."""
    old, new = before.model_dump(), after.model_dump()
    changes = {key: [old[key], value] for key, value in new.items() if value != old[key]}
    if not changes:
        return
    moved = ", ".join(f"{key} {was} -> {now}" for key, (was, now) in changes.items())
    why = f" ({reason})" if reason else ""
    fields = {"event": "limits", "source": source, "changes": changes, "reason": reason or None}
    _limits_log.info("limits changed by %s: %s%s", source, moved, why, extra={"fields": fields})


def limits_at_start(limits: AdmissionLimits) -> None:
    """The limits the gateway starts with (source `start-up`)."""
    values = limits.model_dump()
    shown = ", ".join(f"{key} {value}" for key, value in values.items())
    fields = {"event": "limits", "source": "start-up", "limits": values}
    _limits_log.info("limits at start-up: %s", shown, extra={"fields": fields})
