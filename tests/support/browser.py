"""Debian's headless Chromium, driven over the DevTools protocol (tests/test_docs.py,
tests/test_explorer.py): no host but 127.0.0.1 resolvable, so nothing a page does can reach the
network; the page's console errors and uncaught exceptions are kept for the test to check."""

from __future__ import annotations

import base64
import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
SETUP_HINT = "run the test set-up first: `make test` installs Debian's chromium"
# Every run of Chromium: headless, no first-run or background traffic, and no host but
# 127.0.0.1 resolvable, so that nothing the page does can reach the network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


class Page:
    """One page of a Chromium run, driven over the DevTools protocol."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.errors: list[str] = []  # console errors and uncaught exceptions, once watched

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; events in between are read for errors."""
        command = next(self._ids)
        self._socket.send(json.dumps({"id": command, "method": method, "params": params}))
        while True:
            message: dict[str, Any] = json.loads(self._socket.recv(timeout=120))
            if message.get("id") == command:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description", details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['source']}: {params['entry']['text']}")

    def watch(self) -> None:
        """Keep the page's console errors, exceptions and failed loads (CSP included) in
        ``errors`` from now on."""
        self.call("Runtime.enable")
        self.call("Log.enable")

    def run(self, function: str, *args: Any) -> Any:
        """Await the JavaScript ``function`` called with ``args``; its JSON text, parsed."""
        call = f"({function})(...{json.dumps(args)})"
        found = self.call("Runtime.evaluate", expression=call, awaitPromise=True)
        assert "exceptionDetails" not in found, found["exceptionDetails"]
        return json.loads(found["result"]["value"])

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited), through JSON."""
        return self.run(f"async () => JSON.stringify((await ({expression})) ?? null)")

    def navigate(self, url: str, ready: str = "true") -> None:
        """Open ``url`` and wait until the expression ``ready`` is truthy in it."""
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        probe = f"(() => {{ try {{ return Boolean({ready}); }} catch {{ return false; }} }})()"
        while not self.call("Runtime.evaluate", expression=probe)["result"].get("value"):
            assert time.monotonic() < deadline, f"{url}: never {ready}; errors {self.errors}"
            time.sleep(0.1)

    def viewport(self, width: int, height: int) -> None:
        """The window's size in CSS pixels, without scrollbars (a screenshot beyond the window
        then lays the page out as it is shown)."""
        self.call("Emulation.setScrollbarsHidden", hidden=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def press(self, key: str, code: int) -> None:
        """A key pressed and released, as from the keyboard (Tab moves the focus)."""
        for kind in ("rawKeyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code
            )

    def set_files(self, selector: str, *paths: Path) -> None:
        """Choose files in a file input, as a user does (its change event fires)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        assert node, selector
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])

    def screenshot(self, selector: str, path: Path) -> None:
        """A PNG of the element ``selector`` (scrolled into view) at ``path``."""
        box = self.run(
            """(selector) => {
              const element = document.querySelector(selector);
              element.scrollIntoView();
              const r = element.getBoundingClientRect();
              return JSON.stringify({x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height});
            }""",
            selector,
        )
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={**box, "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def browser(profile: Path) -> Iterator[Page]:
    """Headless Chromium with the DevTools protocol on a free port; its blank page. Its stderr
    goes to a file (a pipe nobody reads could fill and stall it), read for the port."""
    log = profile.with_suffix(".log")
    flags = [f"--user-data-dir={profile}", "--remote-debugging-port=0"]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, *flags, "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while not (
            port := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", log.read_text())
        ):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        targets = httpx.get(f"http://127.0.0.1:{port.group(1)}/json/list", timeout=30).json()
        (page,) = [target for target in targets if target["type"] == "page"]
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as socket:
            yield Page(socket)
    finally:
        process.terminate()
        process.wait(timeout=30)
