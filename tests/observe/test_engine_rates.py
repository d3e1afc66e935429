"""An idle engine's rates are 0 (not missing) from Prometheus and from the direct fallback alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llmctl.core import metrics as m
from llmctl.observe import queries
from llmctl.observe.direct import DirectSource

ENGINE_RATES = ("preemptions_per_s", "prompt_tokens_per_s", "generation_tokens_per_s")
# An engine that is up but has counted nothing yet exports its gauges only.
IDLE_ENGINE = f"{m.VLLM_RUNNING.series} 0\n{m.VLLM_WAITING.series} 0\n"


@contextmanager
def _serving(body: str) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/metrics"
            data = body.encode() if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_engine_rate_queries_fall_back_to_zero_while_the_engine_is_scraped() -> None:
    up = f'up{{job="{m.JOB_ENGINE}"}} == 1'
    for field in ENGINE_RATES:
        assert f"or on() (0 * sum({up}))" in queries.scalars("10s")[field], field


def test_direct_reads_an_idle_engine_as_zero() -> None:
    with _serving("") as gateway, _serving(IDLE_ENGINE) as engine:
        source = DirectSource(gateway, engine, warmup_s=0.05)
        try:
            snap = source.snapshot()
        finally:
            source.close()
    for field in ENGINE_RATES:
        assert getattr(snap, field) == 0.0, field
    assert snap.ok_per_s == 0.0
