"""Open a page in real headless Chromium over the DevTools protocol, with the network cut off.

Every request that is not for a file:// URL is failed by the Fetch domain (and no host name
resolves: --host-resolver-rules), and every request the page tried is recorded, so a test can
assert that none left it. Console errors, uncaught exceptions and error log entries (CSP
violations, failed loads) are collected too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-port=0",
)
WIDTH = 1280
SCALE = 2  # device pixels per CSS pixel: a 1-unit rim of a figure still fills whole pixels


@dataclass
class PageLog:
    """What a page did while it loaded and was read."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    blocked: list[str] = field(default_factory=list)  # those the harness failed


class Page:
    """One browser tab reached through a flat DevTools session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session = ""
        self.log = PageLog()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loaded = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._replies: set[asyncio.Task[dict[str, Any]]] = set()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 30)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                future = self._waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                await self._event(data["method"], data.get("params", {}))

    async def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.log.errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.log.errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.log.errors.append(params["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        elif method == "Fetch.requestPaused":
            url = params["request"]["url"]
            ask = {"requestId": params["requestId"]}
            if url.startswith("file://"):
                reply = self.send("Fetch.continueRequest", ask)
            else:
                self.log.blocked.append(url)
                reply = self.send("Fetch.failRequest", {**ask, "errorReason": "BlockedByClient"})
            # Answered from a task: this reader must keep reading to receive the reply.
            task = asyncio.create_task(reply)
            self._replies.add(task)
            task.add_done_callback(self._replies.discard)
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def open(self, url: str) -> None:
        """Navigate and wait for the load event, then give scripts a moment to run."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": 900, "deviceScaleFactor": SCALE, "mobile": False},
        )
        self._loaded.clear()
        await self.send("Page.navigate", {"url": url})
        await asyncio.wait_for(self._loaded.wait(), 30)
        height = await self.evaluate("document.documentElement.scrollHeight")
        # One viewport as tall as the page: every element can be shot where it lies.
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": int(height), "deviceScaleFactor": SCALE, "mobile": False},
        )
        await asyncio.sleep(0.2)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def mouse(self, kind: str, x: float, y: float) -> None:
        """A mouse event at a point of the page: mouseMoved, mousePressed or mouseReleased."""
        event: dict[str, Any] = {"type": kind, "x": x, "y": y}
        if kind != "mouseMoved":
            event.update(button="left", clickCount=1)
        await self.send("Input.dispatchMouseEvent", event)

    async def screenshot(self, x: float, y: float, width: float, height: float) -> bytes:
        """PNG of a region of the page given in CSS pixels from its top left (SCALE x larger)."""
        clip = {"x": x, "y": y, "width": width, "height": height, "scale": 1}
        result = await self.send("Page.captureScreenshot", {"format": "png", "clip": clip})
        return base64.b64decode(result["data"])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[str]:
    """A fresh headless Chromium with its own profile folder; yields its DevTools WebSocket URL."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed")
    profile.mkdir(parents=True, exist_ok=True)
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)  # left by an earlier browser on this profile
    output = profile / "chromium.log"
    with output.open("wb") as log:
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the helpers it starts end with it
        )
        try:
            deadline = time.monotonic() + 30
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start: {output.read_text()}")
                time.sleep(0.05)
            port, path = port_file.read_text().splitlines()[:2]
            yield f"ws://127.0.0.1:{port}{path}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@contextlib.asynccontextmanager
async def devtools_page(url: str) -> AsyncIterator[Page]:
    """A new tab of the browser at `url` (from `chromium`), driven through a flat session."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        page = Page(ws)
        target = await page.send("Target.createTarget", {"url": "about:blank"})
        attached = await page.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page.session = attached["sessionId"]
        try:
            yield page
        finally:
            await page.close()
