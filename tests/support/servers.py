"""Real ``lossd serve`` processes on 127.0.0.1 (STYLE: tests that need a server start a real
uvicorn on a free port) and HTTP clients of them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/support/servers.py -> ../..


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``lossd serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None = None  # the server's stderr

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        if self.log is not None:
            self.log.close()
        return code

    def output(self) -> str:
        """Everything the server wrote to stderr so far (its log lines)."""
        assert self.log is not None
        fd = self.log.fileno()  # pread: the server shares the file offset, which must not move
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def start_server(env: dict[str, str] | None = None, timeout: float = 540.0) -> Server:
    """Start ``python -m service serve`` on a free port and wait until /readyz is 200.

    The first server of a fresh clone compiles every kernel signature (hundreds: each loss's
    per dtype, and the helpers its kernels call) into the keyed cache: a few minutes on two
    cores, hence the generous wait; later ones load in seconds.
    """
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, once the server is up or failed
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "LOSSD_LOG_LEVEL": "warning", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")
            log.close()
            raise RuntimeError(f"server exited with {process.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return Server(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()  # reaped: no ResourceWarning (an error under filterwarnings) later
    log.close()
    raise RuntimeError(f"server did not become ready within {timeout:g} s")


@contextmanager
def served(env: dict[str, str] | None = None) -> Iterator[Server]:
    """A server for the block; it must stop cleanly (exit 0 on SIGTERM)."""
    srv = start_server(env)
    yield srv
    assert srv.stop() == 0


@contextmanager
def http_client(srv: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        yield http
