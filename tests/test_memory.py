"""The process-wide memory account (service/memory.py) and cancellable evaluation (core.CANCEL).

In-process: the account's rules (413 for what can never fit, a brief wait then 503 for what does
not fit now, nothing waits on the event loop) and the blocked, cancellable run of every loss,
which must give the same bytes as one run. Against real servers with a small process budget:
uploads still being read are held, a request larger than the process is refused before its
body, and work for clients that hung up is dropped (tests/test_limits.py has the per-request
budget).
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service import core
from service.errors import ClientGone, MemoryBudget, Overloaded
from service.losses import resolve
from service.memory import MemoryAccount, RunElsewhere, default_budget
from tests.support.harness import VARIANT_IDS, VARIANTS, Variant, evaluate, sample
from tests.support.problems import assert_problem
from tests.support.servers import Server, http_client, served

MiB = 1 << 20
JSON = "application/json"


# --- the account ---------------------------------------------------------------------------------


def test_a_reservation_larger_than_the_process_is_refused_at_once() -> None:
    lease = MemoryAccount(10 * MiB, wait=5.0).lease()
    started = time.monotonic()
    with pytest.raises(MemoryBudget) as refused:
        lease.hold(11 * MiB, "its arrays")
    assert time.monotonic() - started < 1.0  # no wait for what can never fit
    assert refused.value.status == 413
    assert "LOSSD_MAX_PROCESS_BYTES" in refused.value.detail


def test_a_reservation_waits_for_memory_given_back_then_gets_503() -> None:
    account = MemoryAccount(10 * MiB, wait=0.3)
    first, second = account.lease(), account.lease()
    first.hold(8 * MiB, "a body")
    started = time.monotonic()
    with pytest.raises(Overloaded) as busy:
        second.hold(4 * MiB, "a body")
    assert time.monotonic() - started >= 0.25
    assert busy.value.status == 503 and busy.value.headers == {"Retry-After": "1"}
    assert account.reserved == 8 * MiB  # the refused one holds nothing

    threading.Timer(0.1, first.close).start()
    second.hold(4 * MiB, "a body")  # given back while it waits
    assert (account.reserved, second.held) == (4 * MiB, 4 * MiB)
    second.keep(1 * MiB)
    assert account.reserved == 1 * MiB
    second.close()
    second.close()  # idempotent
    assert account.reserved == 0 and account.peak == 8 * MiB


def test_the_event_loop_never_waits_for_memory() -> None:
    account = MemoryAccount(10 * MiB, wait=5.0)
    other = account.lease()
    other.hold(9 * MiB, "another request")
    inline = account.lease()
    inline.inline = True
    started = time.monotonic()
    with pytest.raises(RunElsewhere):
        inline.hold(2 * MiB, "its arrays")
    assert time.monotonic() - started < 1.0
    other.close()


def test_a_lease_dropped_unclosed_gives_its_memory_back() -> None:
    account = MemoryAccount(10 * MiB)
    account.lease().hold(9 * MiB, "a response never sent")
    assert account.reserved == 0


def test_an_async_reservation_yields_to_the_loop_while_it_waits() -> None:
    account = MemoryAccount(10 * MiB, wait=2.0)
    holder = account.lease()
    holder.hold(9 * MiB, "another request")

    async def scenario() -> float:
        waiter = account.lease()
        started = time.monotonic()
        task = asyncio.create_task(waiter.hold_async(5 * MiB, "a body"))
        await asyncio.sleep(0.1)  # the loop runs while the reservation waits
        assert not task.done()
        holder.close()
        await task
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.5


def test_the_default_budget_follows_the_memory_limit() -> None:
    two_gib = 2 << 30
    one = default_budget(1, limit=two_gib)
    assert 0.5 * two_gib < one + 384 * MiB < two_gib  # a share of what the process may use
    assert default_budget(2, limit=two_gib) < one / 2 + 1  # workers split it


def test_a_process_that_compiled_its_kernels_gets_a_budget_from_its_own_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without LOSSD_MAX_PROCESS_BYTES the budget first assumes the cached process's 384 MiB; a
    process that compiled its kernels holds ~1.4 GiB, so once ready the budget is made again
    from its resident size (lowered, never raised), and the gauge shows it."""
    from service import app as app_module
    from service.api.state import ServiceState
    from service.settings import Settings

    three_gib = 3 << 30
    monkeypatch.setattr("service.memory.memory_limit", lambda: three_gib)
    state = ServiceState(Settings(), None, MemoryAccount(default_budget(1)))  # type: ignore[arg-type]
    assert state.memory.budget == int(0.6 * (three_gib - 384 * MiB))
    shown: list[int] = []
    monkeypatch.setattr(app_module, "resident_bytes", lambda: 1536 * MiB)
    app_module._follow_the_process(state, shown.append)
    assert state.memory.budget == shown[0] == int(0.6 * (three_gib - 1536 * MiB))
    monkeypatch.setattr(app_module, "resident_bytes", lambda: 100 * MiB)
    app_module._follow_the_process(state, shown.append)  # a smaller process never raises it
    assert state.memory.budget == shown[-1] == int(0.6 * (three_gib - 1536 * MiB))
    fixed = ServiceState(Settings(max_process_bytes=MiB), None, MemoryAccount(MiB))  # type: ignore[arg-type]
    app_module._follow_the_process(fixed, shown.append)  # a budget set is the operator's
    assert fixed.memory.budget == MiB and len(shown) == 1


# --- cancellable, blocked evaluation ---------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_a_blocked_run_gives_the_bytes_of_one_run(
    variant: Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cancel flag (work on a compute thread) the kernel runs over blocks of rows; the
    per-sample losses and derivatives are the same bytes as one run's, for every variant (the
    multiclass losses' mask of ignored rows, the extra inputs and their gradients are cut with
    the rows)."""
    spec, params = variant
    drawn = sample(spec, (37, 3) if spec.params.max_rank > 1 else (37,), 7, params)
    options = {"gradient": True, "hessian": spec.hessian, "input_gradients": True}
    whole = evaluate(spec, *drawn, None, params, drawn.inputs, **options)
    monkeypatch.setattr(core, "BLOCK_ELEMENTS", 7)  # blocks of 2 rows of 3
    token = core.CANCEL.set(threading.Event())
    try:
        blocked = evaluate(spec, *drawn, None, params, drawn.inputs, **options)
    finally:
        core.CANCEL.reset(token)
    for name in ("per_sample", "gradient", "hessian"):
        a, b = getattr(whole, name), getattr(blocked, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.tobytes() == b.tobytes(), name
    assert whole.input_gradients is not None and blocked.input_gradients is not None
    assert whole.input_gradients.keys() == blocked.input_gradients.keys() == drawn.inputs.keys()
    for name, gradient in whole.input_gradients.items():
        assert gradient.tobytes() == blocked.input_gradients[name].tobytes(), name
    assert whole.value == blocked.value


def test_a_cancelled_run_stops_between_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = resolve("mse")
    monkeypatch.setattr(core, "BLOCK_ELEMENTS", 10)
    cancel = threading.Event()
    cancel.set()
    token = core.CANCEL.set(cancel)
    pred = np.zeros(37)
    try:
        with pytest.raises(ClientGone) as gone:
            evaluate(spec, pred, pred)
    finally:
        core.CANCEL.reset(token)
    assert gone.value.status == 499


# --- against servers ------------------------------------------------------------------------------

PROCESS = 24 * MiB  # LOSSD_MAX_PROCESS_BYTES of the memory server
UPLOAD = 4 * MiB


@pytest.fixture(scope="module")
def memory_server() -> Iterator[Server]:
    env = {"LOSSD_MAX_PROCESS_BYTES": str(PROCESS), "LOSSD_MEMORY_WAIT": "0.5"}
    with served(env) as srv:
        yield srv


def _connect(srv: Server) -> socket.socket:
    host, port = srv.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    while length and len(rest) < int(length.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest


def test_uploads_still_being_read_are_held_in_the_account(memory_server: Server) -> None:
    """Twelve 4 MiB uploads with their last byte held back: the process's 24 MiB hold at most
    six; the others get 503 overloaded at once (Retry-After), and once the held ones go away
    a request is served as before."""
    head = (
        f"POST /loss/mse HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\n"
        f"Content-Length: {UPLOAD}\r\n\r\n"
    ).encode()
    socks, refused = [], []
    try:
        for _ in range(12):
            sock = _connect(memory_server)
            sock.sendall(head + b" " * (UPLOAD - 1))
            socks.append(sock)
        for sock in socks:
            sock.settimeout(3.0)
            try:
                status, body = _answer(sock)
            except TimeoutError:
                continue  # still held, waiting for its last byte
            refused.append(status)
            problem = orjson.loads(body)
            assert problem["code"] == "overloaded", problem
        assert len(refused) >= 12 - PROCESS // UPLOAD, refused
        assert set(refused) == {503}
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.5)
    with http_client(memory_server) as http:
        answer = http.post("/loss/mse", json={"predictions": [1.0, 2.0], "targets": [1.0, 0.0]})
        assert answer.status_code == 200 and answer.json()["value"] == 2.0


def test_a_request_larger_than_the_process_is_refused_before_its_body(
    memory_server: Server,
) -> None:
    sock = _connect(memory_server)
    try:
        sock.sendall(
            f"POST /loss/mse HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\n"
            f"Content-Length: {PROCESS + 1}\r\n\r\n".encode()
        )
        status, body = _answer(sock)
    finally:
        sock.close()
    assert status == 413
    assert orjson.loads(body)["code"] == "memory_budget"


def test_a_json_body_whose_parse_cannot_fit_is_refused(memory_server: Server) -> None:
    """What orjson parses costs up to 40 bytes per byte of JSON text (lists of numbers are
    parsed without it): 1 MiB of nested containers is held at 40 MiB before it is parsed, which
    this 24 MiB process can never fit: 413, with advice. The number lists of a 0.5 MiB body are
    held at their arrays' 8 bytes an element and served."""
    junk = ",".join(["{}"] * (MiB // 3))
    body = f'{{"predictions": [1.0], "targets": [1.0], "junk": [{junk}]}}'.encode()
    with http_client(memory_server) as http:
        answer = http.post("/loss/mse", content=body, headers={"content-type": JSON})
        assert_problem(answer, 413, "memory_budget")
        assert "packed or binary" in answer.json()["detail"]

        values = ",".join(["0.5"] * (MiB // 16))
        body = f'{{"predictions": [{values}], "targets": [{values}]}}'.encode()
        answer = http.post("/loss/mse", content=body, headers={"content-type": JSON})
        assert answer.status_code == 200 and answer.json()["value"] == 0.0


def _packed(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    data = base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode()
    return {"dtype": "float64", "shape": list(array.shape), "data": data}


def _heavy_request() -> tuple[bytes, bytes]:
    """A ``POST /loss`` body that keeps a compute thread busy for a second or so (64 losses of
    200,000 x 4 with gradients), and the whole HTTP request for a raw socket."""
    rng = np.random.default_rng(3)
    pred, targ = rng.normal(size=(200_000, 4)), rng.normal(size=(200_000, 4))
    losses = [{"name": "log_cosh"}, {"name": "huber"}] * 32
    doc = {"predictions": _packed(pred), "targets": _packed(targ), "losses": losses}
    body = orjson.dumps({**doc, "per_sample": False, "gradient": True})
    head = f"POST /loss HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    return body, head.encode() + body


@pytest.fixture(scope="module")
def one_slot_server() -> Iterator[Server]:
    with served({"LOSSD_QUEUE_DEPTH": "64", "LOSSD_COMPUTE_THREADS": "1"}) as srv:
        yield srv


def test_work_for_clients_that_hung_up_is_dropped(one_slot_server: Server) -> None:
    """Ten heavy requests whose clients hang up once they are sent: the queued ones are dropped
    and the running ones stop between blocks (499 in the log), so the next request waits for
    far less than the ten would take."""
    body, request = _heavy_request()

    with httpx.Client(base_url=one_slot_server.url, timeout=300) as http:
        started = time.monotonic()
        assert http.post("/loss", content=body, headers={"content-type": JSON}).status_code == 200
        one = time.monotonic() - started

    def abandon(_: int) -> None:
        sock = _connect(one_slot_server)
        sock.sendall(request)
        time.sleep(0.2)
        sock.close()

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(abandon, range(10)))
    with httpx.Client(base_url=one_slot_server.url, timeout=300) as http:
        started = time.monotonic()
        assert http.post("/loss", content=body, headers={"content-type": JSON}).status_code == 200
        waited = time.monotonic() - started
    # without dropping, the ten take at least 10 / 2 threads = 5 times one request's time
    assert waited < 3 * one, (waited, one)
    with http_client(one_slot_server) as http:
        metrics = http.get("/metrics").text
    gone = re.findall(r'lossd_requests_total\{[^}]*status="499"[^}]*\} (\S+)', metrics)
    assert sum(float(count) for count in gone) >= 8, metrics[:3000]


@pytest.fixture(scope="module")
def short_queue_server() -> Iterator[Server]:
    with served({"LOSSD_QUEUE_DEPTH": "4"}) as srv:
        yield srv


def test_a_queued_request_whose_client_hung_up_gives_its_place_back(
    short_queue_server: Server,
) -> None:
    """Queue depth 4, both compute threads busy with two kept requests, two more queued whose
    clients hang up: the fifth request is queued (200), not refused as if the queue were full
    (503): work whose client left is out of the queue as soon as the hang-up is seen."""
    body, request = _heavy_request()

    def kept(_: int) -> tuple[int, float]:
        with httpx.Client(base_url=short_queue_server.url, timeout=300) as http:
            answer = http.post("/loss", content=body, headers={"content-type": JSON})
            return answer.status_code, time.monotonic()

    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(kept, i) for i in range(2)]
        time.sleep(0.5)  # both are on the compute threads
        for _ in range(2):
            sock = _connect(short_queue_server)
            sock.sendall(request)
            time.sleep(0.3)  # read and queued
            sock.close()
        time.sleep(0.3)  # the hang-ups are seen
        fifth = kept(5)
        firsts = [future.result() for future in running]
    assert [status for status, _ in firsts] == [200, 200]
    assert fifth[0] == 200
    assert fifth[1] > min(done for _, done in firsts)  # it queued behind the running ones


def _peak_rss_since_reset(pid: int) -> tuple[int, int]:
    """(current, peak) resident bytes of ``pid`` (VmRSS, VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def test_the_process_holds_what_its_account_allows(memory_server: Server) -> None:
    """Sixteen clients at once, each with a request its 24 MiB process can hold alone (packed
    and JSON-list bodies, class-index targets, gradients, several losses): every answer is 200
    or 503 overloaded, and the process's peak RSS grows by at most its budget plus the
    allocator's and the connections' slack."""
    rng = np.random.default_rng(5)
    pred = rng.normal(size=(60_000, 4))
    labels = rng.integers(0, 4, size=60_000)
    bodies = [
        orjson.dumps({"predictions": _packed(pred), "targets": _packed(pred * 0.5),
                      "gradient": True, "array_format": "packed"}),
        orjson.dumps({"predictions": pred.tolist(), "targets": labels.tolist(),
                      "params": {"from_logits": True}}),
        orjson.dumps({"predictions": _packed(pred), "targets": _packed(pred),
                      "losses": [{"name": "mse"}, {"name": "huber"}, {"name": "log_cosh"}]}),
    ]  # fmt: skip
    paths = ["/loss/mse", "/loss/cross_entropy", "/loss"]
    pid = memory_server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before, _ = _peak_rss_since_reset(pid)

    def post(k: int) -> list[int]:
        with httpx.Client(base_url=memory_server.url, timeout=120) as http:
            statuses = []
            for _ in range(3):
                answer = http.post(paths[k % 3], content=bodies[k % 3],
                                   headers={"content-type": JSON})  # fmt: skip
                statuses.append(answer.status_code)
                if answer.status_code == 503:
                    assert_problem(answer, 503, "overloaded")
            return statuses

    with ThreadPoolExecutor(16) as pool:
        statuses = [status for some in pool.map(post, range(16)) for status in some]
    _, peak = _peak_rss_since_reset(pid)
    assert set(statuses) <= {200, 503}
    assert 200 in statuses
    slack = 16 * MiB  # 16 connections' buffers, glibc's arenas, numba's per-thread state
    assert peak - before <= PROCESS + slack, (peak - before) / MiB
