"""The stack that bench, top and tune talk to when not told otherwise: its endpoints and keys."""

from __future__ import annotations

from pathlib import Path

from llmctl.tune.stackfile import StackDefaults, stack_defaults

# Where the services listen when there is no stack at all (no stack file or preset loads).
DEFAULTS = {
    "prometheus": "http://127.0.0.1:9090",
    "gateway": "http://127.0.0.1:8080",
    "engine": "http://127.0.0.1:8000",
}


def current_stack(config: Path | None = None) -> StackDefaults:
    """The running stack (as `up` saved it), else the config's: endpoints, API key, admin key.

    `llmctl.tune.stackfile.stack_defaults` decides all of these, for every command that asks."""
    return stack_defaults(config)


def stack_addresses(stack: StackDefaults | None = None) -> dict[str, str]:
    """Service -> URL for the services the stack has (a docker stack publishes no engine; one
    without Prometheus has none); the defaults only when there is no stack at all."""
    stack = current_stack() if stack is None else stack
    if stack.gateway_url is None:
        return dict(DEFAULTS)
    return dict(stack.endpoints)
