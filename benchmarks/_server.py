"""A real ``lossd serve`` (or a peer server) on 127.0.0.1 for the HTTP sections, and what /proc
says about it.

Like ``tests/conftest.py``'s ``start_server``, but it also times the start (process launch to
the port accepting connections, and to the first /readyz 200, polled every few milliseconds with
a raw socket so the poll costs next to nothing) and reads the process's CPU time and memory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import ROOT

HOST = "127.0.0.1"
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server process (``lossd serve`` or a peer) and how long it took to start."""

    port: int
    process: subprocess.Popen[bytes]
    listening_s: float  # launch to the port accepting connections
    ready_s: float  # launch to the first /readyz 200

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def status_code(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET path`` on a new connection, or None when nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
            )
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def start(env: dict[str, str] | None = None, timeout: float = 300.0) -> Server:
    """Start ``python -m service serve`` on a free port; return once /readyz answers 200."""
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--host", HOST, "--port", str(port)]
    return launch(command, port, "/readyz", {"LOSSD_LOG_LEVEL": "warning", **(env or {})}, timeout)


def launch(
    command: list[str],
    port: int,
    ready_path: str,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
    cwd: Path = ROOT,
) -> Server:
    """Start a server process that listens on ``port``; return once ``GET ready_path`` answers
    200 (lossd's own, or a peer's in benchmarks/peers.py).

    The path is polled every 5 ms, backing off to 0.5% of the time elapsed (so a minute-long
    cold start is not slowed by the polls it answers, and every figure is within 0.5%).
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, once the server is up or failed
    launched = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    listening = None
    deadline = launched + timeout
    try:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"server exited with {process.returncode}: {err[-2000:]}")
            code = status_code(port, ready_path)
            now = time.perf_counter()
            if code is not None and listening is None:
                listening = now - launched
            if code == 200:
                return Server(port, process, listening or now - launched, now - launched)
            time.sleep(min(0.1, max(0.005, (now - launched) / 200)))
        raise RuntimeError(f"{command[0]} did not become ready")
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    finally:
        log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_kib(pid: int, key: str) -> int:
    """A ``Vm*`` line of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(key.encode() + b":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux: "5" > /proc/<pid>/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
