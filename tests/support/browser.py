"""Drive real headless Chromium over the Chrome DevTools Protocol (CDP), for the report tests.

Chromium starts with --remote-debugging-port=0 and a fresh profile; the port it picked is read from the
profile's DevToolsActivePort file. One websocket (websocket-client) to the browser target; pages are
attached with flatten=True, so every page command carries its sessionId on the same socket. Events are
collected as they arrive (console, exceptions, network requests, dialogs) for the tests to assert on.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars"]


class CDPError(Exception):
    pass


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class Browser:
    """One headless Chromium; use as a context manager so the process always ends."""

    def __init__(self, profile: Path, *, width: int = 1400, height: int = 1000, timeout: float = 20.0):
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium is not installed: apt-get install chromium")
        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                 f"--window-size={width},{height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.events: list[dict[str, Any]] = []
        self._id = 0
        try:
            port, path = self._devtools_address(profile / "DevToolsActivePort")
            # suppress_origin: Chromium refuses websocket clients that send an Origin it was not told to allow.
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout,
                                                  suppress_origin=True)
        except BaseException:
            self._stop()
            raise

    def _devtools_address(self, active: Path) -> tuple[str, str]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-800:]}")
            lines = active.read_text().split("\n") if active.exists() else []
            if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                return lines[0].strip(), lines[1].strip()
            time.sleep(0.05)
        raise CDPError(f"chromium did not open its DevTools port within {self.timeout:.0f} s")

    # -- protocol ----------------------------------------------------------------
    def _recv(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CDPError("timed out waiting for chromium")
        self.ws.settimeout(remaining)
        try:
            msg: dict[str, Any] = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise CDPError("timed out waiting for chromium") from None
        if "method" in msg:
            self.events.append(msg)
            if msg["method"] == "Page.javascriptDialogOpening":
                # An open alert() would block the page forever: dismiss it; the test sees the event.
                self._id += 1
                self.ws.send(json.dumps({"id": self._id, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}, "sessionId": msg.get("sessionId")}))
        return msg

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        mid = self._id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._recv(deadline)
            if reply.get("id") == mid:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result") or {}

    def wait_event(self, method: str, session: str, after: int) -> dict[str, Any]:
        """The first `method` event of `session` among events numbered >= after, waiting for it if needed."""
        deadline = time.monotonic() + self.timeout
        while True:
            for ev in self.events[after:]:
                if ev["method"] == method and ev.get("sessionId") == session:
                    return ev
            self._recv(deadline)

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        return Page(self, session)

    # -- lifetime ----------------------------------------------------------------
    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (CDPError, OSError, websocket.WebSocketException):
            pass  # already gone: _stop() makes sure
        self.ws.close()
        self._stop()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def goto(self, url: str) -> None:
        mark = len(self.browser.events)
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, mark)

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(f"{expression[:80]}: {(details.get('exception') or {}).get('description') or details}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the element, as a user would (of its first line
        box: the centre of a link that wraps over two lines is between them, on its parent)."""
        x, y = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center"}}); const r = e.getClientRects()[0];
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type(self, selector: str, text: str) -> None:
        """Focus the element and insert text through the input pipeline (fires `input` like typing)."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path, *, full_page: bool = False, max_height: int = 6000) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"],
                                                            "height": min(size["height"], max_height), "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))
        return path

    # -- what happened on this page ------------------------------------------------
    def _events(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.browser.events if e["method"] == method and e.get("sessionId") == self.session]

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and error-level log entries."""
        out = [f"exception: {(e['exceptionDetails'].get('exception') or {}).get('description') or e['exceptionDetails'].get('text')}"
               for e in self._events("Runtime.exceptionThrown")]
        out += [f"console.{e['type']}: {' '.join(str(a.get('value', a.get('description'))) for a in e['args'])}"
                for e in self._events("Runtime.consoleAPICalled") if e["type"] in ("error", "assert")]
        out += [f"log: {e['entry']['text']} ({e['entry'].get('url')})" for e in self._events("Log.entryAdded")
                if e["entry"]["level"] == "error"]
        return out

    def requests(self) -> list[str]:
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def dialogs(self) -> list[str]:
        return [e["message"] for e in self._events("Page.javascriptDialogOpening")]
