"""Real ``lossd serve`` processes on 127.0.0.1 (STYLE: tests that need a server start a real
uvicorn on a free port) and HTTP clients of them."""

from __future__ import annotations

import os
import re
import shutil
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


def start_server(
    env: dict[str, str] | None = None, timeout: float = 540.0, wait_for: str = "/readyz"
) -> Server:
    """Start ``python -m service serve`` on a free port and wait until /readyz (or
    ``wait_for``: /healthz for a server still warming its kernels) is 200.

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
            if httpx.get(f"{url}{wait_for}", timeout=2).status_code == 200:
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
    """A server for the block; it must stop cleanly (exit 0 on SIGTERM). A block that fails
    stops it too, so that no server outlives its test."""
    srv = start_server(env)
    try:
        yield srv
    except BaseException:
        srv.stop()
        raise
    assert srv.stop() == 0


@contextmanager
def http_client(srv: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        yield http


def answered(srv: Server, loss: str, status: int = 200) -> float:
    """Requests for ``loss`` the server answered with ``status`` (its /metrics; no API key)."""
    text = httpx.get(f"{srv.url}/metrics", timeout=30).text
    pattern = rf'lossd_requests_total{{[^}}]*loss="{loss}"[^}}]*status="{status}"[^}}]*}} (\S+)'
    return sum(map(float, re.findall(pattern, text)))


def grown(
    servers: list[Server],
    loss: str,
    before: list[float],
    total: float,
    status: int = 200,
    within: float = 10.0,
) -> list[float]:
    """How many more requests for ``loss`` each server answered with ``status`` than ``before``,
    once they add up to ``total`` or after ``within`` seconds: a server counts a request just
    after it sent the answer, so a count read at once may lag the answers a client has."""
    deadline = time.monotonic() + within
    while True:
        now = [answered(s, loss, status) - b for s, b in zip(servers, before, strict=True)]
        if sum(now) >= total or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def cold_losses() -> tuple[str, ...]:
    """The losses warmed after the first five (service/warmup.py's order), tversky and ctc last: a
    server whose cache lacks their kernels (``cache_without``) listens within seconds (an empty
    cache takes 20 s and more before it listens, compiling the first loss), then compiles theirs
    for minutes, answering 503 not_ready for each until its own are ready."""
    from service.warmup import FIRST, warm_up_order  # numba and every loss: only when needed

    return tuple(spec.name for spec in warm_up_order()[len(FIRST) :])


def cache_without(losses: tuple[str, ...], into: Path) -> None:
    """This checkout's kernel cache, less the kernels of ``losses``: their modules' (under
    losses_*) and their batch drivers' (``jit.<loss>_batch``, under service_*)."""
    from service.kernel_cache import keyed_dir

    warm = keyed_dir(os.environ)
    assert warm is not None and warm.is_dir()

    def left_out(name: str) -> bool:
        module, _, rest = name.partition(".")
        driver = rest.split("-", 1)[0].removesuffix("_batch")
        return module in losses or (module == "jit" and driver in losses)

    shutil.copytree(warm, into, ignore=lambda _, names: [n for n in names if left_out(n)])
