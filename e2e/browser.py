"""A real browser for the e2e tests: Debian's Chromium driven by its ChromeDriver over the W3C WebDriver protocol.

The protocol is plain JSON over HTTP, so this client is the standard library (no selenium, no
dependency to pin): start ``/usr/bin/chromedriver`` on a free port, create a headless session with the
flags Chromium needs on a closed machine, then navigate, find, click, accept a ``confirm()``, run a
script, take a screenshot. ``browser_missing()`` says why no browser can run here (the tests skip
with that reason, loudly).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1350",
]


def browser_missing() -> str:
    """Why no browser can be driven here ("" when one can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} is missing: install Debian's {package} (make system-packages)"
    return ""


class WebDriverError(RuntimeError):
    pass


class Browser:
    """One WebDriver session."""

    def __init__(self, url: str, session: str) -> None:
        self.base = f"{url}/session/{session}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return call(method, self.base + path, body)

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [str(e[ELEMENT]) for e in found]

    def text(self, css: str) -> str:
        """The visible text of the first element matching ``css`` ("" when there is none). One script,
        so a fragment the page replaces meanwhile is never a stale reference."""
        found = self.script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)
        return str(found or "").strip()

    def click(self, css: str) -> None:
        elements = self.find(css)
        if not elements:
            raise WebDriverError(f"no element {css!r} on the page")
        self._call("POST", f"/element/{elements[0]}/click", {})

    def accept_confirm(self) -> str:
        """Accept the open ``confirm()`` dialog; returns its text."""
        text = str(self._call("GET", "/alert/text"))
        self._call("POST", "/alert/accept", {})
        return text

    def script(self, source: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path


def call(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        payload = json.loads(exc.read() or b"{}")
        value = payload.get("value") or {}
        raise WebDriverError(f"{method} {url}: {value.get('error')}: {value.get('message', '')[:300]}") from None
    return payload.get("value")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chromium(log: Path) -> Iterator[Browser]:
    """A headless Chromium session (fresh profile), closed afterwards."""
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="deliver-chromium-")
    with log.open("wb") as out:
        driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if call("GET", url + "/status").get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline:
                raise WebDriverError(f"chromedriver did not start (log: {log})")
            time.sleep(0.1)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "unhandledPromptBehavior": "ignore",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]},
                }
            }
        }
        session = call("POST", url + "/session", caps)["sessionId"]
        browser = Browser(url, session)
        try:
            yield browser
        finally:
            try:
                call("DELETE", browser.base)
            except (OSError, WebDriverError):
                pass
    finally:
        driver.terminate()
        try:
            driver.wait(10)
        except subprocess.TimeoutExpired:
            driver.kill()
        shutil.rmtree(profile, ignore_errors=True)
