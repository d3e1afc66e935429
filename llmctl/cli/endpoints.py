"""Where the current stack's services listen, for commands that talk to a running stack."""

from __future__ import annotations

from llmctl.core.errors import LlmctlError

DEFAULTS = {
    "prometheus": "http://127.0.0.1:9090",
    "gateway": "http://127.0.0.1:8080",
    "engine": "http://127.0.0.1:8000",
}


def stack_addresses() -> dict[str, str]:
    """The running stack's endpoints (as `up` saved them), else the config's, else the defaults."""
    try:
        from llmctl.stack.settings import load_stack, running_spec

        endpoints = running_spec(load_stack().spec).endpoints()
    except (ImportError, LlmctlError, OSError):
        return dict(DEFAULTS)
    return {key: endpoints.get(key, url) for key, url in DEFAULTS.items()}
