"""What one request did: its timestamps, status, token counts and failure class."""

from __future__ import annotations

from dataclasses import dataclass, field

# Failure classes, the keys of a level's `failures`. They are never latency samples.
FAILURE_CLASSES = (
    "http_429",
    "http_503",
    "http_504",
    "http_5xx",
    "http_4xx",
    "client_timeout",
    "stream_error",
    "connect_error",
)


def failure_class(status: int) -> str:
    if status in (429, 503, 504):
        return f"http_{status}"
    return "http_5xx" if status >= 500 else "http_4xx"


@dataclass(slots=True)
class RequestRecord:
    """What one request did, on the `time.perf_counter()` clock."""

    planned: float
    sent: float = 0.0
    first_token: float | None = None
    end: float = 0.0
    status: int = 0
    failure: str | None = None
    error: str | None = None
    token_times: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # from `usage`; None when the server sent none
    queue_wait_ms: float | None = None
    prompt_estimate: int = 0
    engine: str | None = None  # the engine an llmctl gateway chose (its X-Llmctl-Engine)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def output_tokens(self) -> int:
        return (
            self.completion_tokens if self.completion_tokens is not None else len(self.token_times)
        )
