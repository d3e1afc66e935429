"""`llmctl gateway` commands."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer

from llmctl.cli.flags import setting_options, with_options
from llmctl.cli.help import App, env_note
from llmctl.core.config import GATEWAY_ENV, GATEWAY_FLAGS, GatewayConfig, load_gateway_config
from llmctl.core.errors import ConfigError

app = App(help="The admission-controlling gateway in front of the engine.", no_args_is_help=True)


def _read_keys(path: Path | None, what: str) -> list[str] | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    lines = (line.strip() for line in text.splitlines())
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise ConfigError(f"the {what} file {path} holds no key")
    return keys


def serve(
    settings: dict[str, Any],
    api_keys_file: Path | None = typer.Option(
        None,
        "--api-keys-file",
        help="File with accepted API keys, one a line." + env_note("LLMCTL_API_KEYS"),
    ),
    admin_key_file: Path | None = typer.Option(
        None,
        "--admin-key-file",
        help="File with the admin key; none: no admin API." + env_note("LLMCTL_ADMIN_KEY"),
    ),
    workers: int = typer.Option(
        1, "--workers", help="Must be 1: limits live in one process (more would multiply them)."
    ),
) -> None:
    """Serve the OpenAI API in front of one or several engines with exact admission control.

    One process holds the limits: run exactly one gateway (no multi-worker setups)."""
    from llmctl.gateway.accesslog import configure as configure_logging
    from llmctl.gateway.server import check_single_worker, run

    check_single_worker(workers, os.environ)
    admin_keys = _read_keys(admin_key_file, "admin key")
    overrides: dict[str, Any] = {
        **settings,
        "api_keys": _read_keys(api_keys_file, "API keys"),
        "admin_key": admin_keys[0] if admin_keys else None,
    }
    if overrides.get("upstreams") is not None:
        overrides["upstreams"] = _split(overrides["upstreams"])
    config = load_gateway_config(os.environ, overrides, flags=True)
    # Log lines, not console output: they never wrap, and follow --log-format.
    configure_logging(config.log_format)
    queue = "no queue" if config.queue_max == 0 else f"queue {config.queue_max}"
    engines = config.upstream_dns or ", ".join(config.upstreams)
    logging.getLogger("llmctl.gateway").info(
        "gateway on http://%s:%s -> %s (max_active %s, %s, %s, %s)",
        config.host,
        config.port,
        engines,
        config.max_active,
        config.queue_mode,
        queue,
        config.routing,
    )
    run(config)


def _split(values: list[str]) -> list[str]:
    """`--upstream a --upstream b` and `--upstream a,b` both name two engines."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


_ENV = {field: var for var, field in GATEWAY_ENV.items()}
app.command("serve")(
    with_options(serve, setting_options(GatewayConfig, GATEWAY_FLAGS, _ENV), "settings")
)
