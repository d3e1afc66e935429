"""`llmctl gateway` commands."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from llmctl.cli.console import console
from llmctl.core.config import load_gateway_config
from llmctl.core.errors import ConfigError

app = typer.Typer(
    help="The admission-controlling gateway in front of the engine.", no_args_is_help=True
)


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


@app.command()
def serve(
    upstream: str | None = typer.Option(
        None,
        "--upstream",
        help="Engine base URL \\[env VLLM_BASE_URL; default http://127.0.0.1:8000].",
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model filled into requests naming none \\[env MODEL_NAME]."
    ),
    max_active: int | None = typer.Option(
        None, "--max-active", help="Requests allowed at the engine at once \\[env MAX_ACTIVE; 4]."
    ),
    queue_mode: str | None = typer.Option(
        None, "--queue-mode", help="`queue` (wait for a slot) or `reject` (429) \\[env QUEUE_MODE]."
    ),
    queue_max: int | None = typer.Option(
        None, "--queue-max", help="Requests allowed to wait; 0 = no queue \\[env QUEUE_MAX; 64]."
    ),
    queue_timeout: float | None = typer.Option(
        None,
        "--queue-timeout",
        help="Longest wait for a slot, seconds \\[env QUEUE_TIMEOUT_S; 30].",
    ),
    request_timeout: float | None = typer.Option(
        None,
        "--request-timeout",
        help="Deadline from admission to last byte, seconds \\[env REQUEST_TIMEOUT_S; 600].",
    ),
    max_body_bytes: int | None = typer.Option(
        None, "--max-body-bytes", help="Larger bodies get 413 \\[env LLMCTL_MAX_BODY_BYTES; 1 MiB]."
    ),
    host: str | None = typer.Option(
        None, "--host", help="Listen address \\[env LLMCTL_GATEWAY_HOST; 127.0.0.1]."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Listen port \\[env LLMCTL_GATEWAY_PORT; 8080]."
    ),
    health_interval: float | None = typer.Option(
        None, "--health-interval", help="Seconds between engine readiness probes \\[2]."
    ),
    idle_timeout: float | None = typer.Option(
        None,
        "--idle-timeout",
        help="Seconds an idle connection stays open \\[env LLMCTL_IDLE_TIMEOUT_S; 30].",
    ),
    header_timeout: float | None = typer.Option(
        None,
        "--header-timeout",
        help="Seconds for a request head to arrive, else 408 \\[env LLMCTL_HEADER_TIMEOUT_S; 10].",
    ),
    body_timeout: float | None = typer.Option(
        None,
        "--body-timeout",
        help="Seconds for a request body to arrive, else 408 \\[env LLMCTL_BODY_TIMEOUT_S; 60].",
    ),
    max_connections: int | None = typer.Option(
        None,
        "--max-connections",
        help="Open client connections at most; more get 503 \\[env LLMCTL_MAX_CONNECTIONS; 1024].",
    ),
    fd_reserve: int | None = typer.Option(
        None,
        "--fd-reserve",
        help="File descriptors kept free of client connections \\[env LLMCTL_FD_RESERVE; 128].",
    ),
    api_keys_file: Path | None = typer.Option(
        None,
        "--api-keys-file",
        help="File with accepted API keys, one a line \\[env LLMCTL_API_KEYS].",
    ),
    admin_key_file: Path | None = typer.Option(
        None,
        "--admin-key-file",
        help="File with the admin key \\[env LLMCTL_ADMIN_KEY]; none: no admin API.",
    ),
    workers: int = typer.Option(
        1, "--workers", help="Must be 1: limits live in one process (more would multiply them)."
    ),
) -> None:
    """Serve the OpenAI API in front of the engine with exact admission control.

    One process holds the limits: run exactly one gateway per engine (no multi-worker setups)."""
    from llmctl.gateway.server import check_single_worker, run

    check_single_worker(workers, os.environ)
    admin_keys = _read_keys(admin_key_file, "admin key")
    overrides = {
        "upstream_url": upstream,
        "model_name": model,
        "max_active": max_active,
        "queue_mode": queue_mode,
        "queue_max": queue_max,
        "queue_timeout_s": queue_timeout,
        "request_timeout_s": request_timeout,
        "max_body_bytes": max_body_bytes,
        "host": host,
        "port": port,
        "health_interval_s": health_interval,
        "idle_timeout_s": idle_timeout,
        "header_timeout_s": header_timeout,
        "body_timeout_s": body_timeout,
        "max_connections": max_connections,
        "fd_reserve": fd_reserve,
        "api_keys": _read_keys(api_keys_file, "API keys"),
        "admin_key": admin_keys[0] if admin_keys else None,
    }
    config = load_gateway_config(os.environ, overrides)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    queue = "no queue" if config.queue_max == 0 else f"queue {config.queue_max}"
    console.print(
        f"gateway on http://{config.host}:{config.port} -> {config.upstream_url} "
        f"(max_active {config.max_active}, {config.queue_mode}, {queue})",
        highlight=False,
    )
    run(config)
