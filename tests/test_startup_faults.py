"""Start-up faults: a kernel cache that is unusable, full or corrupt, and a supervisor killed
under its workers (issue 12).

Each server here is a real ``lossd serve`` (tests/support/servers.py) on a copy of this checkout's
warm cache, so that it starts in seconds and compiles only the kernels a test takes away. A
directory that cannot be created holds nothing to load: a server on one is a cold start (every
kernel compiled, several CPU-minutes), so that case runs the start-up's cache handling and one
kernel in a plain process instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.kernel_cache import ENV, LOCATORS, MARK
from tests.support import servers
from tests.support.servers import Server, served, start_server

# Predictions and targets of one mse request, and what numpy says of them (mean squared error,
# per sample and mean; gradient of the mean: 2 (p - t) / n).
PRED = np.array([0.5, 2.0, -1.25, 3.0])
TARG = np.array([1.0, -0.5, -1.0, 3.5])


def assert_right_answer(srv: Server) -> None:
    """The server is ready and answers one mse request as numpy computes it."""
    assert httpx.get(f"{srv.url}/readyz", timeout=10).status_code == 200
    body = {"predictions": PRED.tolist(), "targets": TARG.tolist(), "gradient": True}
    response = httpx.post(f"{srv.url}/loss/mse", json=body, timeout=60)
    assert response.status_code == 200, response.text
    out = response.json()
    np.testing.assert_allclose(out["per_sample"], (PRED - TARG) ** 2, rtol=1e-15)
    np.testing.assert_allclose(out["value"], np.mean((PRED - TARG) ** 2), rtol=1e-12)
    np.testing.assert_allclose(out["gradient"], 2 * (PRED - TARG) / PRED.size, rtol=1e-12)


def kernels(srv: Server) -> dict[str, Any]:
    """What /readyz says of the kernels: loaded from the cache, compiled."""
    ready: dict[str, Any] = httpx.get(f"{srv.url}/readyz", timeout=10).json()
    return ready


def warnings_of(srv: Server) -> list[str]:
    """The messages the server logged at warning level or above (tests run it at
    LOSSD_LOG_LEVEL=warning, in JSON lines)."""
    return [orjson.loads(line)["msg"] for line in srv.output().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def warm_cache() -> Path:
    """This checkout's kernel cache, complete: a server started on it compiled anything missing
    (all of it in a fresh clone: minutes) and saved it."""
    with served() as srv:
        assert kernels(srv)["kernels_from_cache"] + kernels(srv)["kernels_compiled"] > 0
    return Path(os.environ[ENV])


def copy_cache(warm_cache: Path, dest: Path) -> Path:
    return Path(shutil.copytree(warm_cache, dest))


def entries(cache: Path, function: str) -> list[Path]:
    """The index and data files of one kernel function (``<name>``, such as ``mse_batch``) in
    ``cache``: numba names them ``<source file>.<name>-<line>``, and a made kernel's source file
    is the one its template is written in (``jit.mse_batch-…``, ``_elementwise.mse_rows-…``)."""
    found = sorted(cache.glob(f"*/*.{function}-*.nb[ic]"))
    assert found, f"no cache entries for {function} in {cache}"
    return found


# --- the kernel cache ---------------------------------------------------------------------------


def test_corrupt_cache_files_are_compiled_afresh_and_overwritten(
    warm_cache: Path, tmp_path: Path
) -> None:
    """Garbage in an index and in a data file, an empty index, a truncated data file and an index
    whose data file is gone: the server starts and answers right, with one warning naming the
    directory; the kernels it compiled replaced the bad entries, so the next start on the same
    directory loads every kernel from it."""
    cache = copy_cache(warm_cache, tmp_path / "cache")
    for path in entries(cache, "mse_batch"):
        path.write_bytes(
            b"not a numba index\n" * 16 if path.suffix == ".nbi" else b"\x80\x05garbage"
        )
    [index] = [p for p in entries(cache, "mse_rows") if p.suffix == ".nbi"]
    index.write_bytes(b"")
    for path in entries(cache, "huber_batch"):
        if path.suffix == ".nbc":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for path in entries(cache, "log_cosh_batch"):
        if path.suffix == ".nbc":
            path.unlink()
    env = {ENV: str(cache)}

    with served(env) as srv:
        assert_right_answer(srv)
        first = kernels(srv)
        logged = warnings_of(srv)
    assert first["kernels_compiled"] > 0 and first["kernels_from_cache"] > 0, first
    assert len(logged) == 1, logged
    assert "cannot load" in logged[0] and str(cache) in logged[0], logged

    with served(env) as srv:
        assert_right_answer(srv)
        second = kernels(srv)
        assert warnings_of(srv) == []
    assert second["kernels_compiled"] == 0 and second["kernels_from_cache"] > 0, second


def with_sitecustomize(tmp_path: Path, code: str) -> dict[str, str]:
    """Environment entries that run ``code`` first thing in every Python process started with
    them (the server), through a sitecustomize module."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


FILE_SIZE_LIMIT = """
import resource, signal
# No file may grow past {limit} bytes: a write beyond fails with EFBIG, as one on a full disk
# fails with ENOSPC (SIGXFSZ would kill the process instead, so it is ignored).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
"""


def test_a_cache_that_takes_no_more_bytes_costs_compilations_not_the_start(
    warm_cache: Path, tmp_path: Path
) -> None:
    """When saving a compiled kernel fails (here a file size limit, EFBIG, the way a full disk
    fails with ENOSPC), the server still starts and answers right, with one warning naming the
    directory and the cause; the kernels it compiled are counted as such."""
    cache = copy_cache(warm_cache, tmp_path / "cache")
    data = [p for p in entries(cache, "mse_batch") if p.suffix == ".nbc"]
    limit = min(p.stat().st_size for p in data) // 2  # no mse_batch data file fits
    for path in data:
        path.unlink()  # mse_batch is compiled at start, and saving it fails
    env = {ENV: str(cache), **with_sitecustomize(tmp_path, FILE_SIZE_LIMIT.format(limit=limit))}

    with served(env) as srv:
        assert_right_answer(srv)
        counts = kernels(srv)
        logged = warnings_of(srv)
    assert counts["kernels_compiled"] >= len(data) and counts["kernels_from_cache"] > 0, counts
    assert len(logged) == 1, logged
    assert "cannot save" in logged[0] and str(cache) in logged[0], logged
    assert "File too large" in logged[0], logged
    assert all(not p.exists() for p in data)


# Root writes where the permission bits say no through CAP_DAC_OVERRIDE: the server drops it
# from its own capability sets (capset(2), the calling thread: the only one this early).
NO_DAC_OVERRIDE = """
import ctypes, os
if os.geteuid() == 0:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~(1 << 1)  # CAP_DAC_OVERRIDE
    data[0].permitted &= ~(1 << 1)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
"""


def test_a_read_only_cache_is_loaded_and_what_it_lacks_compiled_in_memory(
    warm_cache: Path, tmp_path: Path
) -> None:
    """A cache directory the server cannot write to (a read-only volume, another user's baked
    cache): one warning naming it and the cause, every kernel it holds loaded from it, and the
    ones it lacks compiled and not saved; the server answers right. (numba alone skips such a
    directory and compiles everything, into ``__pycache__`` beside the sources if it can.)"""
    cache = copy_cache(warm_cache, tmp_path / "cache")
    missing = entries(cache, "mse_batch")
    for path in missing:
        path.unlink()
    before = sorted(cache.rglob("*"))
    for path in [cache, *before]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {ENV: str(cache), **with_sitecustomize(tmp_path, NO_DAC_OVERRIDE)}
    try:
        with served(env) as srv:
            assert_right_answer(srv)
            counts = kernels(srv)
            logged = warnings_of(srv)
    finally:
        for path in [cache, *before]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert counts["kernels_compiled"] > 0 and counts["kernels_from_cache"] > 0, counts
    assert len(logged) == 1, logged
    assert "read-only" in logged[0] and str(cache) in logged[0], logged
    assert "Permission denied" in logged[0], logged
    assert sorted(cache.rglob("*")) == before


UNUSABLE = """
import json, logging
import numpy as np
import service
from service import core
from service.losses import resolve
from service.warmup import guard_caches, kernel_counts

logging.basicConfig(format="%(levelname)s %(message)s")
access = guard_caches()
spec = resolve("mse")
pred, targ = np.array([[0.5, 2.0], [-1.25, 3.0]]), np.array([[1.0, -0.5], [-1.0, 3.5]])
batch = core.Batch(pred, targ, None)
options = core.Options(dtype="float64", gradient=True, hessian=True)
result = core.evaluate(spec, spec.params.model_validate({}), batch, options)
counts = kernel_counts()
print(json.dumps({
    "access": [access.load, access.save],
    "value": result.value,
    "expected": float(np.mean((pred - targ) ** 2)),
    "cached": counts.cached,
    "compiled": counts.compiled,
}))
"""


def test_a_cache_directory_that_cannot_exist_compiles_in_memory(tmp_path: Path) -> None:
    """NUMBA_CACHE_DIR under a regular file (no one, root included, can create it): lossd
    imports (numba alone fails there when it can write nowhere else), says so once at start-up
    with the directory and the cause, compiles its kernels in memory and computes right; numba
    caches nothing elsewhere either (``__pycache__`` beside the sources, say)."""
    (tmp_path / "file").write_text("")
    cache = tmp_path / "file" / "numba"
    before = set(servers.ROOT.glob("service/**/*.nb[ic]"))
    env = {k: v for k, v in os.environ.items() if k not in (MARK, LOCATORS)}
    result = subprocess.run(
        [sys.executable, "-c", UNUSABLE],
        cwd=servers.ROOT,
        env={**env, ENV: str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = orjson.loads(result.stdout.splitlines()[-1])
    assert out["access"] == [False, False]
    assert out["value"] == pytest.approx(out["expected"], rel=1e-12)
    assert out["cached"] == 0 and out["compiled"] > 0, out
    logged = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(logged) == 1, result.stderr[-3000:]
    assert "unusable" in logged[0] and str(cache) in logged[0], logged
    assert "Not a directory" in logged[0], logged
    assert set(servers.ROOT.glob("service/**/*.nb[ic]")) == before


# --- the supervisor -----------------------------------------------------------------------------


def workers_of(supervisor: int) -> set[int]:
    """The live uvicorn workers of ``supervisor``: its children started by multiprocessing's
    spawn."""
    pids = set()
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is None or stat[0] == "Z" or stat[1] != str(supervisor):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # it ended while we looked
            continue
        if b"spawn_main" in cmdline:
            pids.add(int(entry.name))
    return pids


def _stat(pid: int) -> list[str] | None:
    """State and parent pid of ``pid``, or None when it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[:2]


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has let go of its sockets


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_free(port: int) -> bool:
    """Whether a server could bind ``port`` now, as uvicorn binds (SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_gone(workers: set[int], port: int, within: float) -> None:
    """Wait until every one of ``workers`` has exited and ``port`` is free, ``within`` seconds."""
    start = time.monotonic()
    while any(alive(pid) for pid in workers) or not port_free(port):
        elapsed = time.monotonic() - start
        assert elapsed < within, f"workers {workers} outlived their supervisor by {elapsed:.0f} s"
        time.sleep(0.05)


@pytest.fixture
def two_workers(warm_cache: Path) -> Iterator[Server]:
    """A server with LOSSD_WORKERS=2 on the warm cache, both workers up."""
    srv = start_server({"LOSSD_WORKERS": "2"})
    try:
        deadline = time.monotonic() + 60
        while len(workers_of(srv.process.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not appear"
            time.sleep(0.1)
        yield srv
    finally:
        if srv.process.poll() is None:
            srv.stop()
        elif srv.log is not None:
            srv.log.close()


def test_workers_exit_when_their_supervisor_is_killed(
    two_workers: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of ``lossd serve --workers 2``'s parent: its workers notice and exit within
    seconds, the port is free, and a new server starts on it."""
    port = int(two_workers.url.rsplit(":", 1)[1])
    workers = workers_of(two_workers.process.pid)
    assert len(workers) == 2
    assert listening(port)

    two_workers.process.send_signal(signal.SIGKILL)
    two_workers.process.wait(timeout=10)
    wait_until_gone(workers, port, within=20)  # measured: 0.1-0.2 s
    assert f"supervisor (pid {two_workers.process.pid}) is gone" in two_workers.output()

    monkeypatch.setattr(servers, "free_port", lambda: port)  # start_server's port: this one
    with served() as again:
        assert again.url == two_workers.url
        assert_right_answer(again)


def test_workers_still_starting_exit_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the parent while its two workers import and warm up: they serve no one yet
    and exit as soon as their start-up notices (the lifespan's first step), freeing the port."""
    port = servers.free_port()
    with (tmp_path / "log").open("ab") as log:  # O_APPEND: the workers' lines do not overwrite
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"],
            cwd=servers.ROOT,
            env={**os.environ, "LOSSD_LOG_LEVEL": "warning"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while len(workers := workers_of(supervisor.pid)) < 2:
                assert time.monotonic() < deadline, "two workers did not appear"
                time.sleep(0.05)
        finally:
            supervisor.kill()
            supervisor.wait(timeout=10)
        wait_until_gone(workers, port, within=60)  # their imports: seconds, tens on a busy host
    logged = (tmp_path / "log").read_text()
    assert logged.count(f"supervisor (pid {supervisor.pid}) is gone") == 2, logged
    assert "still running" not in logged, logged
