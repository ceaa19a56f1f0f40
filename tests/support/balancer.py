"""Debian's nginx (installed by ``make test``) running deploy/nginx's template in front of lossd
processes: a foreground process on a free 127.0.0.1 port, its pid file, temporary files and
access log in a temporary directory, its errors on its stderr (kept in a file too)."""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.support.servers import ROOT, free_port

NGINX = Path("/usr/sbin/nginx")


def renderer() -> ModuleType:
    """deploy/nginx/render.py, the script compose's documentation and these tests share."""
    spec = importlib.util.spec_from_file_location(
        "lossd_nginx_render", ROOT / "deploy/nginx/render.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Balancer:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    def access_log(self) -> list[str]:
        return (self.directory / "access.log").read_text().splitlines()

    def errors(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")


@contextmanager
def balancer(servers: Sequence[str]) -> Iterator[Balancer]:
    """nginx in front of ``servers`` (lossd URLs), stopped (and waited for) at the end."""
    if not NGINX.exists():
        raise RuntimeError(f"no {NGINX}: `make test` installs Debian's nginx (apt-get, as root)")
    with tempfile.TemporaryDirectory(prefix="lossd-nginx-") as tmp:
        directory = Path(tmp)
        port = free_port()
        upstreams = [s.removeprefix("http://") for s in servers]
        conf = directory / "nginx.conf"
        conf.write_text(renderer().standalone(upstreams, f"127.0.0.1:{port}", directory))
        with (
            (directory / "access.log").open("wb") as out,
            (directory / "error.log").open("wb") as err,
        ):
            process = subprocess.Popen(
                [NGINX, "-p", str(directory), "-c", str(conf)], stdout=out, stderr=err
            )
        try:
            _wait_listening(process, port, directory)
            yield Balancer(f"http://127.0.0.1:{port}", process, directory)
        finally:
            process.send_signal(signal.SIGTERM)  # fast shutdown: the master ends its workers
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_listening(process: subprocess.Popen[bytes], port: int, directory: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = (directory / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {process.returncode}: {errors[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not listen within 30 s")
