"""A closed-loop HTTP/1.1 load generator: raw asyncio streams, keep-alive, pre-encoded requests.

``concurrency`` connections each send one request, read the whole response and send the next.
The request bytes are built once; a response is read as its head (up to the blank line) and
exactly Content-Length bytes of body. It runs on uvloop when installed. The generator's own CPU
time is measured over each window, so a report can show it is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks._server import HOST, cpu_seconds

try:
    import uvloop

    _loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    _loop_factory = None


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> bytes:
    """One complete keep-alive request (a JSON body unless ``headers`` say otherwise)."""
    fields = {"Host": HOST}
    if body or method == "POST":
        fields |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    fields |= headers or {}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode() + b"\r\n" + body


@dataclass(frozen=True)
class Window:
    """What one measured window of load gave."""

    requests: int
    seconds: float
    latencies: list[float]  # seconds, one per completed request
    client_cpu: float  # the generator's CPU seconds / wall seconds (1.0 = one core)
    server_cpu: float  # the server's CPU seconds / wall seconds, all its threads
    # with several server processes (replicas, a balancer): each one's, in the order given;
    # server_cpu is their sum
    process_cpu: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[round(q * 10) - 1]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without Content-Length")


def _chunked(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding":
            return value.strip().lower() == b"chunked"
    return False


async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The response's body: Content-Length bytes, or the chunks of a chunked one (large
    answers, streamed)."""
    if not _chunked(head):
        return await reader.readexactly(_content_length(head))
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # the empty trailer
    return b"".join(chunks)


def _closing(head: bytes) -> bool:
    """Whether the response says the server closes the connection after it (nginx does after
    keepalive_requests, 1000 by default, on a client's connection)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection":
            return value.strip().lower() == b"close"
    return False


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bool:
    """One request and its whole response; whether the server closes the connection now."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[:200]!r}")
    await _body(reader, head)
    return _closing(head)


class _Connection:
    """One keep-alive connection of the closed loop, opened again when the server closes it
    (in the request's time, as a client would)."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port, self.request = port, request
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        self.streams = await asyncio.open_connection(HOST, self.port, limit=1 << 20)

    async def exchange(self) -> None:
        assert self.streams is not None
        reader, writer = self.streams
        if await _exchange(reader, writer, self.request):
            writer.close()
            await self.open()

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def _closed_loop(
    pids: Sequence[int],
    exchanges: list[Callable[[], Awaitable[object]]],
    warmup: float,
    windows: list[float],
) -> list[Window]:
    """Each of ``exchanges`` (one per connection or call in flight) sends its next request as
    soon as its last answer is in, for ``warmup`` s, then for each of the ``windows``."""
    # window k collects requests that complete in [edges[k], edges[k + 1])
    start = time.perf_counter() + warmup
    edges = [start]
    for seconds in windows:
        edges.append(edges[-1] + seconds)
    latencies: list[list[float]] = [[] for _ in windows]
    marks: list[tuple[float, tuple[float, ...]]] = []

    async def worker(exchange: Callable[[], Awaitable[object]]) -> None:
        k = 0
        while True:
            sent = time.perf_counter()
            if sent >= edges[-1]:
                return
            await exchange()
            done = time.perf_counter()
            while k < len(windows) and done >= edges[k + 1]:
                k += 1
            if done >= edges[0] and k < len(windows):
                latencies[k].append(done - sent)

    async def clock() -> None:
        # CPU times of both sides at every window edge
        for edge in edges:
            await asyncio.sleep(max(0.0, edge - time.perf_counter()))
            marks.append((time.process_time(), tuple(cpu_seconds(pid) for pid in pids)))

    await asyncio.gather(clock(), *(worker(exchange) for exchange in exchanges))
    out = []
    for k, seconds in enumerate(windows):
        (client0, servers0), (client1, servers1) = marks[k], marks[k + 1]
        client = (client1 - client0) / seconds
        each = tuple((b - a) / seconds for a, b in zip(servers0, servers1, strict=True))
        out.append(Window(len(latencies[k]), seconds, latencies[k], client, sum(each), each))
    return out


async def _load(
    port: int,
    pids: Sequence[int],
    request: bytes,
    concurrency: int,
    warmup: float,
    windows: list[float],
) -> list[Window]:
    connections = [_Connection(port, request) for _ in range(concurrency)]
    try:
        for connection in connections:
            await connection.open()
        exchanges = [connection.exchange for connection in connections]
        return await _closed_loop(pids, exchanges, warmup, windows)
    finally:
        for connection in connections:
            connection.close()


def _pids(pid: int | Sequence[int]) -> list[int]:
    return [pid] if isinstance(pid, int) else list(pid)


def load(
    port: int,
    pid: int | Sequence[int],
    request: bytes,
    concurrency: int,
    warmup: float,
    duration: float,
    repeats: int,
) -> list[Window]:
    """Warm up for ``warmup`` s, then ``repeats`` back-to-back windows of ``duration`` s; the
    server's CPU is ``pid``'s, or the sum of several processes' (``Window.process_cpu``)."""
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        windows = [duration] * repeats
        return runner.run(_load(port, _pids(pid), request, concurrency, warmup, windows))


async def _grpc_load(
    port: int,
    pid: int,
    method: str,
    request: bytes,
    concurrency: int,
    warmup: float,
    windows: list[float],
) -> list[Window]:
    import grpc  # lossd's own dependency (its gRPC server)

    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        call = channel.unary_unary(method)  # bytes in, bytes out: no (de)serializer

        async def exchange() -> object:
            return await call(request)

        return await _closed_loop([pid], [exchange] * concurrency, warmup, windows)


def grpc_load(
    port: int,
    pid: int,
    method: str,
    request: bytes,
    concurrency: int,
    warmup: float,
    duration: float,
    repeats: int,
) -> list[Window]:
    """``load`` over gRPC: ``concurrency`` calls of ``method`` in flight on one channel (HTTP/2
    streams), each a serialized message built once and an answer read whole (not parsed).
    grpc.aio runs on asyncio's own loop."""
    with asyncio.Runner() as runner:
        windows = [duration] * repeats
        return runner.run(_grpc_load(port, pid, method, request, concurrency, warmup, windows))


# --- a mixed closed loop whose every answer is checked (benchmarks/load.py) ----------------------

# (request index, status, body) -> what is wrong with the answer, or None when it is right
Check = Callable[[int, int, bytes], str | None]


@dataclass
class MixedRun:
    """What a mixed run gave: every answer counted, latencies of the measured window only."""

    answers: int = 0  # responses read, warm-up included
    latencies: list[float] = field(default_factory=list)  # seconds, measured window
    indices: list[int] = field(default_factory=list)  # the request of each latency
    errors: Counter[str] = field(default_factory=Counter)  # non-200s and connection failures
    wrong: Counter[str] = field(default_factory=Counter)  # 200s that ``check`` refused
    samples: list[tuple[float, object]] = field(default_factory=list)  # (seconds, monitor())

    def percentile(self, q: float, only: Callable[[int], bool] | None = None) -> float:
        """The ``q``-th percentile latency, of the requests whose index ``only`` accepts."""
        latencies = self.latencies
        if only is not None:
            latencies = [t for t, i in zip(latencies, self.indices, strict=True) if only(i)]
        return statistics.quantiles(latencies, n=1000, method="inclusive")[round(q * 10) - 1]


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request; its status and whole body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, await _body(reader, head)


async def _mixed(
    port: int,
    requests: Sequence[bytes],
    schedule: Sequence[int],
    concurrency: int,
    warmup: float,
    duration: float,
    check: Check,
    monitor: Callable[[], object] | None,
    timeout: float,
) -> MixedRun:
    run = MixedRun()
    begin = time.perf_counter()
    start = begin + warmup
    end = start + duration

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(HOST, port, limit=1 << 20)

    async def worker(k: int) -> None:
        # each connection walks the whole schedule, from its own starting point
        i = k * len(schedule) // concurrency
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (sent := time.perf_counter()) < end:
            index = schedule[i % len(schedule)]
            i += 1
            try:
                streams = streams or await connect()
                status, body = await asyncio.wait_for(_answer(*streams, requests[index]), timeout)
            except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
                # a refused, broken or stalled connection: counted, then a fresh one
                run.errors[f"connection: {type(exc).__name__}"] += 1
                if streams is not None:
                    streams[1].close()
                streams = None
                await asyncio.sleep(0.05)
                continue
            done = time.perf_counter()
            run.answers += 1
            if status != 200:
                run.errors[f"status {status}"] += 1
            elif (problem := check(index, status, body)) is not None:
                run.wrong[problem] += 1
            if sent >= start:
                run.latencies.append(done - sent)
                run.indices.append(index)
        if streams is not None:
            streams[1].close()

    async def watch() -> None:
        if monitor is None:
            return
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        while (now := time.perf_counter()) < end:
            run.samples.append((now - start, monitor()))
            await asyncio.sleep(min(1.0, max(0.0, end - now)))

    await asyncio.gather(watch(), *(worker(k) for k in range(concurrency)))
    if monitor is not None:
        run.samples.append((time.perf_counter() - start, monitor()))
    return run


def mixed(
    port: int,
    requests: Sequence[bytes],
    schedule: Sequence[int],
    concurrency: int,
    warmup: float,
    duration: float,
    check: Check,
    monitor: Callable[[], object] | None = None,
    timeout: float = 120.0,
) -> MixedRun:
    """``concurrency`` keep-alive connections send ``requests[i]`` for i along ``schedule``.

    Every response is read whole; a non-200 or a broken connection is an error, and every 200
    goes through ``check``. Latencies count after ``warmup`` s, for ``duration`` s; ``monitor``
    is sampled at the start of that window, about every second, and once all answers are in.
    """
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(
            _mixed(port, requests, schedule, concurrency, warmup, duration, check, monitor, timeout)
        )
