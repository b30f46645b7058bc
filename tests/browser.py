"""Load a page in real headless Chromium over the DevTools protocol; measure it, screenshot it.

A small client on `websockets` (already installed) rather than Playwright: Playwright's Python
package wants to download its own browser build, and the test must use Debian's /usr/bin/chromium
offline. Every wait has a timeout; the browser runs in a fresh profile and is killed afterwards.

    python -m tests.browser REPORT.html OUT.png   # screenshot a report (docs/img/report.png)
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = os.environ.get("PLANEXEC_CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--hide-scrollbars",
)
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0


@dataclass
class PageLoad:
    """What happened loading a page: console errors, uncaught exceptions, and measurements."""

    errors: list[str] = field(default_factory=list)
    measured: Any = None
    screenshot: bytes = b""


class _Cdp:
    """A DevTools connection; `session` addresses a page attached with flatten=True."""

    def __init__(self, ws: Any):
        self.ws, self.next_id = ws, 1
        self.events: list[dict[str, Any]] = []  # every event read so far, in order

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        message_id, self.next_id = self.next_id, self.next_id + 1
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            data = self._read(CALL_TIMEOUT, method)
            if data.get("id") == message_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self.events.append(data)

    def wait_for(self, method: str, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            self.events.append(self._read(deadline - time.monotonic(), method))

    def _read(self, timeout: float, waiting_for: str) -> dict[str, Any]:
        if timeout <= 0:
            raise TimeoutError(f"no {waiting_for} from chromium in time")
        try:
            return json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError as exc:
            raise TimeoutError(f"no {waiting_for} from chromium within {timeout:.0f} s") from exc


@contextmanager
def chromium() -> Iterator[str]:
    """A headless Chromium in a fresh profile; yields its browser websocket URL."""
    profile = tempfile.mkdtemp(prefix="planexec-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not listen within {START_TIMEOUT} s")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        yield f"ws://127.0.0.1:{port}{path}"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def load(url: str, measure_js: str, width: int = 1200, height: int = 900) -> PageLoad:
    """Open `url`, wait for it to load, run `measure_js` (an expression returning JSON-able
    data), collect console errors and exceptions, and take a full-page screenshot."""
    out = PageLoad()
    with chromium() as browser_url, connect(browser_url, max_size=None, open_timeout=10) as ws:
        cdp = _Cdp(ws)
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        page = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.call(f"{domain}.enable", page)
        view = {"width": width, "deviceScaleFactor": 1, "mobile": False}
        cdp.call("Emulation.setDeviceMetricsOverride", page, height=height, **view)
        cdp.call("Page.navigate", page, url=url)
        cdp.wait_for("Page.loadEventFired")
        result = cdp.call("Runtime.evaluate", page, expression=measure_js, returnByValue=True)
        out.measured = result.get("result", {}).get("value")
        content = cdp.call("Page.getLayoutMetrics", page)["cssContentSize"]
        full = int(min(content["height"], 6000))
        cdp.call("Emulation.setDeviceMetricsOverride", page, height=full, **view)
        shot = cdp.call("Page.captureScreenshot", page, format="png")
        out.screenshot = base64.b64decode(shot["data"])
        for event in cdp.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.errors.append(json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.errors.append(params["entry"].get("text", "")[:500])
    return out


def main() -> None:
    page, png = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    result = load(page.as_uri(), "document.title", width=1100)
    if result.errors:
        raise SystemExit(f"errors loading {page}: {result.errors}")
    png.write_bytes(result.screenshot)
    print(f"wrote {png} ({len(result.screenshot):,} bytes)")


if __name__ == "__main__":
    main()
