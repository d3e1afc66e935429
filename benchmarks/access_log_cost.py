"""What one access-log line costs the gateway, in microseconds, against the same line through
Python's `logging` (as `gateway serve` configures it), side by side in one run.

    python benchmarks/access_log_cost.py [--lines 50000] [--repeat 3]

Each variant formats the line for one finished request and writes it to a file (the log copier's
pipe in a stack): `AccessLog.request` (text, then JSON), which buffers and writes every FLUSH_S,
and `logging.info` with the same message, which writes and flushes each line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time

from llmctl.gateway.accesslog import TEXT_FORMAT, AccessLog, access_fields, logfmt
from llmctl.gateway.metrics import Outcome

ROUTE = "/v1/chat/completions"


def _outcome() -> Outcome:
    outcome = Outcome()
    outcome.set(200, "ok")
    outcome.request_id = "a3eb2d92b29b42c0ac5d48a32f03ffaa"
    outcome.queue_wait_s, outcome.ttft_s, outcome.usage = 0.0004, 0.1351, (7, 128)
    return outcome


async def _access_log(log_format: str, lines: int, path: str) -> float:
    with open(path, "a") as stream:  # noqa: ASYNC230 - once, before the clock starts
        access = AccessLog("json" if log_format == "json" else "text", stream)
        outcome = _outcome()
        start = time.perf_counter()
        for i in range(lines):
            access.request(ROUTE, outcome, 0.136)
            if i % 200 == 0:
                await asyncio.sleep(0)  # let the flush the line scheduled run, as a server does
        access.flush()
        return (time.perf_counter() - start) / lines


def _logging(lines: int, path: str) -> float:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    log = logging.getLogger("bench.access")
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    outcome = _outcome()
    start = time.perf_counter()
    for _ in range(lines):
        log.info("%s", logfmt(access_fields(ROUTE, outcome, 0.136)))
    handler.close()
    return (time.perf_counter() - start) / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gateway.log")
        for _ in range(args.repeat):
            text = asyncio.run(_access_log("text", args.lines, path))
            as_json = asyncio.run(_access_log("json", args.lines, path))
            through_logging = _logging(args.lines, path)
            print(
                f"per line: access log text {text * 1e6:.1f} us, json {as_json * 1e6:.1f} us; "
                f"logging.info {through_logging * 1e6:.1f} us "
                f"({through_logging / text:.1f}x the text line)",
                flush=True,
            )


if __name__ == "__main__":
    main()
