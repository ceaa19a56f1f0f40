"""Attackers for the load run (``benchmarks/load.py --attack``): each a loop of raw-socket
connections doing one thing a hostile or broken client does, recording what the server did to it.

- ``slow_reader``: asks for a large answer (per-sample losses and gradient of ``answer_elements``
  elements, packed) with a tiny receive buffer, then for ``hold`` seconds reads nothing or a byte
  a second (alternately), then drains it. The server should have cut it (``LOSSD_SEND_TIMEOUT``):
  the answer ends before its Content-Length.
- ``abandoned``: sends a heavy request (that large packed body, or ``POST /loss`` with 32 losses
  and gradients) and closes the socket at once. The server should drop the work (499).
- ``trickle``: sends a request line and then one header line a second, never the blank line.
  The server should answer 408 and close (``LOSSD_HEADER_TIMEOUT``).
- ``flood``: a small batch whose ``params``, top-level fields or both carry ``flood_keys``
  unknown keys. The server should refuse it with a 4xx, quickly and with a short answer.

The attackers run in a process of their own (``launched``), so that their Python work does not
slow the load generator's event loop and distort the normal clients' latencies. Every attacker
waits ``patience`` seconds at most for the server to act; an attack the server never ended in
that time is counted as ``outlasted``.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import socket
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from benchmarks._load import _loop_factory, request_bytes
from benchmarks._server import HOST

KINDS = ("slow_reader", "abandoned", "trickle", "flood")
_POLL = 0.25  # seconds between two looks at a socket the attacker does not read
# the losses of an abandoned ``POST /loss``: every regression loss that takes any positive batch
_MANY = ("mse", "mae", "huber", "smooth_l1", "pseudo_huber", "log_cosh", "msle", "pinball")


@dataclass(frozen=True)
class Plan:
    """How many attackers of each kind, and how heavy their requests are."""

    slow_readers: int = 8
    abandoned: int = 2
    trickles: int = 32
    floods: int = 2
    answer_elements: int = 1_000_000  # per slow reader's (and abandoned) request
    many_elements: int = 200_000  # per loss of an abandoned ``POST /loss``
    flood_keys: int = 100_000
    pause: float = 0.5  # seconds an abandoned or flood attacker waits between two requests
    hold: float = 8.0  # seconds a slow reader holds its answer unread before it drains it
    patience: float = 30.0  # seconds an attacker waits for the server to end its attack

    def scaled(self, factor: float) -> Plan:
        """The same plan with ``factor`` times as many attackers of each kind (at least one)."""
        return Plan(
            **{
                **self.__dict__,
                "slow_readers": max(1, round(self.slow_readers * factor)),
                "abandoned": max(1, round(self.abandoned * factor)),
                "trickles": max(1, round(self.trickles * factor)),
                "floods": max(1, round(self.floods * factor)),
            }
        )


@dataclass
class Outcome:
    """What the server did to the attacks of one kind."""

    kind: str
    attackers: int
    attempts: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # what the attackers read, or "none"
    closed: Counter[str] = field(default_factory=Counter)  # by the server: "closed" or "reset"
    outlasted: int = 0  # the attacker gave up before the server ended the attack
    failed: Counter[str] = field(default_factory=Counter)  # connect or send errors
    # request sent -> the server's answer or close (slow readers: its answer's first byte)
    seconds: list[float] = field(default_factory=list)
    answer_bytes: int = 0  # the largest answer read (floods; slow readers: of a cut one)

    def text(self) -> str:
        parts = [f"{self.attempts} attacks by {self.attackers}"]
        if self.statuses:
            parts.append(
                "status " + ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
            )
        if self.closed:
            parts.append(
                "closed by server " + ", ".join(f"{k}: {v}" for k, v in sorted(self.closed.items()))
            )
        if self.seconds:
            median, top = statistics.median(self.seconds), max(self.seconds)
            parts.append(f"server acted after {median:.2f} s median, {top:.2f} s max")
        if self.answer_bytes:
            parts.append(f"largest answer {self.answer_bytes} B")
        parts.append(f"outlasted {self.outlasted}")
        if self.failed:
            parts.append("failed " + ", ".join(f"{k}: {v}" for k, v in sorted(self.failed.items())))
        return "; ".join(parts)


def _packed(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype="<f8").tobytes()
    return {"dtype": "float64", "shape": list(array.shape), "data": base64.b64encode(data).decode()}


def large_answer_request(elements: int) -> bytes:
    """``POST /loss/mse``: per-sample losses and gradient of ``elements`` elements, packed in and
    out (an answer of about 21 bytes an element)."""
    rng = np.random.default_rng(12)
    doc = {
        "predictions": _packed(rng.uniform(0.1, 4.0, elements)),
        "targets": _packed(rng.uniform(0.1, 4.0, elements)),
        "reduction": "none",
        "gradient": True,
        "array_format": "packed",
    }
    return request_bytes("POST", "/loss/mse", orjson.dumps(doc))


def many_losses_request(elements: int, losses: int = 32) -> bytes:
    """``POST /loss`` with ``losses`` regression losses and their gradients on one batch."""
    rng = np.random.default_rng(13)
    doc = {
        "predictions": _packed(rng.uniform(0.1, 4.0, elements)),
        "targets": _packed(rng.uniform(0.1, 4.0, elements)),
        "losses": [{"name": _MANY[k % len(_MANY)]} for k in range(losses)],
        "gradient": True,
        "array_format": "packed",
    }
    return request_bytes("POST", "/loss", orjson.dumps(doc))


def flood_requests(keys: int) -> list[bytes]:
    """A 64-element ``mse`` batch with ``keys`` unknown keys in ``params``, at the top level,
    and in both."""
    unknown = {f"k{i:07d}": i for i in range(keys)}
    batch = {"predictions": [0.5] * 64, "targets": [1.0] * 64}
    docs = [
        {**batch, "params": unknown},
        {**batch, **{f"u{i:07d}": 0 for i in range(keys)}},
        {**{f"u{i:07d}": 0 for i in range(keys)}, **batch, "params": unknown},
    ]
    return [request_bytes("POST", "/loss/mse", orjson.dumps(doc)) for doc in docs]


def _status(head: bytes) -> str:
    parts = head.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 and parts[1].isdigit() else "none"


class Attack:
    """The attackers of one plan against ``port``, on one event loop, until ``stop`` is set."""

    def __init__(self, port: int, plan: Plan) -> None:
        self.port = port
        self.plan = plan
        self.large = large_answer_request(plan.answer_elements)
        self.many = many_losses_request(plan.many_elements)
        self.floods = flood_requests(plan.flood_keys)
        counts = (plan.slow_readers, plan.abandoned, plan.trickles, plan.floods)
        self.outcomes = {kind: Outcome(kind, n) for kind, n in zip(KINDS, counts, strict=True)}
        self.stop = asyncio.Event()
        self.cpu = 0.0  # the attackers' CPU seconds a second (1.0: one core)

    async def _connect(self, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:  # set before connecting: it bounds the window offered
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (HOST, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or return early once the attack stops; True while it goes on."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return not self.stop.is_set()

    async def _loop(self, kind: str, k: int) -> None:
        """One attacker: its attack again and again until the run stops."""
        outcome = self.outcomes[kind]
        attack = getattr(self, f"_{kind}")
        n = k
        while not self.stop.is_set():
            outcome.attempts += 1
            try:
                await attack(outcome, n)
            except Exception as exc:  # counted, and the attacker goes on
                outcome.failed[f"{type(exc).__name__}: {exc}"[:80]] += 1
                await self._sleep(0.2)
            n += 1

    async def _slow_reader(self, outcome: Outcome, n: int) -> None:
        loop = asyncio.get_running_loop()
        sock = await self._connect(rcvbuf=4096)
        try:
            await loop.sock_sendall(sock, self.large)
            sent = time.perf_counter()
            if not await self._answer_begins(sock):
                if not self.stop.is_set():
                    outcome.failed["no answer"] += 1
                return
            began = time.perf_counter()
            outcome.seconds.append(began - sent)
            answer = b""
            end, how = b"", None
            # Hold: nothing read, or (odd attempts) a byte a second. A server that cuts the
            # connection leaves no trace here yet: its kernel still holds the bytes it had sent
            # (up to a send buffer), to deliver, then close, once this side reads.
            while time.perf_counter() - began < self.plan.hold:
                if not await self._sleep(1.0 if n % 2 else _POLL):
                    return  # the run is over: the attack neither won nor lost
                if n % 2:
                    try:
                        answer += sock.recv(1)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except ConnectionResetError:
                        end, how = answer, "reset"
                        break
            else:  # drain at full speed: an answer that ends before its Content-Length was cut
                end, how = await self._drain(sock, answer)
        finally:
            sock.close()
        head = end.partition(b"\r\n\r\n")[0]
        outcome.statuses[_status(head)] += 1
        if how is None:  # the whole answer came: the server waited for this reader all along
            outcome.outlasted += 1
        else:
            outcome.closed[how] += 1
            outcome.answer_bytes = max(outcome.answer_bytes, len(end))

    async def _answer_begins(self, sock: socket.socket) -> bool:
        """Wait, reading nothing, until the answer's first byte is here (the server may take
        seconds to compute it under load); False when the run stops or patience runs out."""
        waited = time.perf_counter()
        while time.perf_counter() - waited < self.plan.patience:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    return True
            except (BlockingIOError, InterruptedError):
                pass
            if not await self._sleep(_POLL):
                return False
        return False

    async def _drain(self, sock: socket.socket, answer: bytes) -> tuple[bytes, str | None]:
        """Read until the answer is whole (None) or the server ended it ("closed", "reset")."""
        loop = asyncio.get_running_loop()
        chunks = [answer]
        got = len(answer)
        want: int | None = None
        try:
            async with asyncio.timeout(self.plan.patience):
                while want is None or got < want:
                    data = await loop.sock_recv(sock, 1 << 20)
                    if not data:
                        return b"".join(chunks), "closed"
                    chunks.append(data)
                    got += len(data)
                    if want is None and b"\r\n\r\n" in chunks[0] + data[:4096]:
                        head = b"".join(chunks)
                        end = head.index(b"\r\n\r\n") + 4
                        chunks, want = [head], end + _length(head[:end])
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        except TimeoutError:
            return b"".join(chunks), None  # still open, still sending: never cut
        return b"".join(chunks), None

    async def _abandoned(self, outcome: Outcome, n: int) -> None:
        sock = await self._connect()
        try:
            await asyncio.get_running_loop().sock_sendall(sock, self.many if n % 2 else self.large)
        finally:
            sock.close()
        outcome.statuses["unread"] += 1  # the server's 499s are in its metrics
        await self._sleep(self.plan.pause)

    async def _trickle(self, outcome: Outcome, n: int) -> None:
        loop = asyncio.get_running_loop()
        sock = await self._connect()
        try:
            await loop.sock_sendall(sock, f"POST /loss/mse HTTP/1.1\r\nHost: {HOST}\r\n".encode())
            sent = time.perf_counter()
            answer = b""
            line = 0
            while time.perf_counter() - sent < self.plan.patience and not self.stop.is_set():
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 1.0)
                except TimeoutError:
                    try:
                        await loop.sock_sendall(sock, f"X-Trickle-{line}: {n}\r\n".encode())
                    except OSError:
                        outcome.closed["reset"] += 1
                        break
                    line += 1
                    continue
                except ConnectionResetError:
                    outcome.closed["reset"] += 1
                    break
                if data == b"":
                    outcome.closed["closed"] += 1
                    break
                answer += data
            else:
                if not self.stop.is_set():
                    outcome.outlasted += 1
                return
            outcome.seconds.append(time.perf_counter() - sent)
            outcome.statuses[_status(answer)] += 1
        finally:
            sock.close()

    async def _flood(self, outcome: Outcome, n: int) -> None:
        sock = await self._connect()
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        try:
            writer.write(self.floods[n % len(self.floods)])
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(self.plan.patience):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = _length(head)
                    body = await reader.readexactly(length)
            except TimeoutError:
                outcome.outlasted += 1
                return
            outcome.seconds.append(time.perf_counter() - sent)
            outcome.statuses[_status(head)] += 1
            outcome.answer_bytes = max(outcome.answer_bytes, len(head) + len(body))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            outcome.failed[type(exc).__name__] += 1
        finally:
            writer.close()
        await self._sleep(self.plan.pause)

    async def run(self, go: Any, stop: Any) -> dict[str, Outcome]:
        """Start on ``go``, stop on ``stop`` (multiprocessing events): the outcomes."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, go.wait)
        began, cpu = time.perf_counter(), time.process_time()
        tasks = [
            asyncio.create_task(self._loop(o.kind, k))
            for o in self.outcomes.values()
            for k in range(o.attackers)
        ]
        await loop.run_in_executor(None, stop.wait)
        self.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.cpu = (time.process_time() - cpu) / (time.perf_counter() - began)
        return self.outcomes


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _main(port: int, plan: Plan, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """The attackers' process: build the requests, say ready, attack from ``go`` to ``stop``."""
    attack = Attack(port, plan)
    ready.set()
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        outcomes = runner.run(attack.run(go, stop))
    results.send(({kind: o.__dict__ for kind, o in outcomes.items()}, attack.cpu))


@dataclass
class Launched:
    """A running attack process; ``outcomes`` once it stopped."""

    process: Any
    go: Any
    stop_event: Any
    results: Any
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    cpu: float = 0.0  # the attackers' CPU seconds a second

    def start(self) -> None:
        self.go.set()

    def stop(self, timeout: float = 60.0) -> dict[str, Outcome]:
        """Stop the attackers and collect what the server did to them."""
        self.go.set()  # in case it never started
        self.stop_event.set()
        with suppress(EOFError):  # the process died: no outcomes, the caller sees none
            if self.results.poll(timeout):
                raw, self.cpu = self.results.recv()
                self.outcomes = {kind: Outcome(**fields) for kind, fields in raw.items()}
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        return self.outcomes


@contextmanager
def launched(port: int, plan: Plan) -> Iterator[Launched]:
    """A process with the attackers of ``plan`` against ``port``, their requests built; they
    start on ``Launched.start()`` and stop when the block ends (or on ``Launched.stop()``)."""
    ctx = mp.get_context("spawn")  # no fork of the load generator's threads and loop
    ready, go, stop = ctx.Event(), ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_main, args=(port, plan, ready, go, stop, send), name="lossd-attack", daemon=True
    )
    process.start()
    send.close()
    attack = Launched(process, go, stop, receive)
    try:
        while not ready.wait(0.5):
            if not process.is_alive():
                raise RuntimeError(f"the attack process exited with {process.exitcode}")
        yield attack
    finally:
        if not attack.outcomes:
            attack.stop()
        receive.close()
