"""The Python client over several replicas (``Client(urls=[...])``): the pieces of a large
evaluation spread over every replica, the merged answer the single server's to the last bit
(same pieces), and a replica killed (SIGKILL) before or while evaluating, one answering 503
not_ready (its kernels still compiling), or a proxy answering 502 for one, costs no piece: each
is answered by another."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lossd_client import AsyncClient, Client, Result

from service.losses import REGISTRY
from tests.support.balancer import balancer
from tests.support.servers import (
    Server,
    answered,
    cache_without,
    cold_losses,
    free_port,
    grown,
    served,
    start_server,
)

PIECE = 65_536  # max_elements given to the clients: rows of one piece (16 summation blocks)
N = 6 * PIECE + 1234  # seven pieces, the last a partial one
rng = np.random.default_rng(16)


@pytest.fixture(scope="module")
def second() -> Iterator[Server]:
    """A second replica beside the session's server."""
    with served() as srv:
        yield srv


def _batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.normal(size=N), rng.normal(size=N), rng.uniform(0.0, 2.0, size=N)


def _alone(srv: Server, p: np.ndarray, t: np.ndarray, w: np.ndarray) -> Result:
    with Client(srv.url, max_elements=PIECE) as one:
        return one.evaluate("mse", p, t, sample_weight=w, gradient=True)


def _assert_identical(got: Result, expected: Result) -> None:
    """The same bits: scalars compared with ==, arrays elementwise with their dtypes."""
    assert (got.value, got.weight_sum, got.n, got.requests) == (
        expected.value,
        expected.weight_sum,
        expected.n,
        expected.requests,
    )
    for name in ("per_sample", "gradient"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def _kill(srv: Server) -> None:
    srv.process.kill()
    srv.process.wait(timeout=30)
    if srv.log is not None:
        srv.log.close()


@pytest.mark.loss("mse")
def test_pieces_spread_over_every_replica_and_merge_to_the_bit(
    server: Server, second: Server
) -> None:
    """Seven pieces over two replicas (least in flight, in turn among equals): both answer some,
    together exactly seven, and the merge is the single server's, bit for bit; the async client
    too."""
    p, t, w = _batch()
    expected = _alone(server, p, t, w)
    assert expected.requests == 7
    before = [answered(server, "mse"), answered(second, "mse")]
    with Client(urls=[server.url, second.url], max_elements=PIECE) as sharded:
        got = sharded.evaluate("mse", p, t, sample_weight=w, gradient=True)
    more = grown([server, second], "mse", before, 7)
    assert min(more) >= 1 and sum(more) == 7, more
    _assert_identical(got, expected)

    async def scenario() -> Result:
        async with AsyncClient(urls=[server.url, second.url], max_elements=PIECE) as sharded:
            return await sharded.evaluate("mse", p, t, sample_weight=w, gradient=True)

    before = [answered(server, "mse"), answered(second, "mse")]
    _assert_identical(asyncio.run(scenario()), expected)
    more = grown([server, second], "mse", before, 7)
    assert min(more) >= 1 and sum(more) == 7, more


@pytest.mark.loss("mse")
def test_a_replica_killed_before_the_evaluation_costs_no_piece(server: Server) -> None:
    """A replica that is gone (SIGKILL): its connections are refused, every piece goes to the
    other, and the answer is the same."""
    p, t, w = _batch()
    expected = _alone(server, p, t, w)
    dead = start_server()
    _kill(dead)
    before = answered(server, "mse")
    with Client(urls=[dead.url, server.url], max_elements=PIECE) as sharded:
        _assert_identical(sharded.evaluate("mse", p, t, sample_weight=w, gradient=True), expected)
        assert len(sharded.losses()) == len(REGISTRY)  # the catalogue, from the live one too
    assert grown([server], "mse", [before], 7) == [7]


@pytest.mark.loss("mse")
def test_a_replica_killed_while_evaluating_costs_no_piece(server: Server) -> None:
    """SIGKILL to one of two replicas once it has answered a piece, with pieces in flight on
    it: the cut ones and the rest are answered by the other, each piece once in the result."""
    rows = 40 * PIECE
    p, t, w = rng.normal(size=rows), rng.normal(size=rows), rng.uniform(0.0, 2.0, size=rows)
    with Client(server.url, max_elements=PIECE) as one:
        expected = one.evaluate("mse", p, t, sample_weight=w, gradient=True)
    victim = start_server()
    killed = threading.Event()

    def kill_once_it_answers() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and answered(victim, "mse") < 1:
            time.sleep(0.02)
        _kill(victim)
        killed.set()

    try:
        with Client(urls=[victim.url, server.url], max_elements=PIECE, concurrency=8) as sharded:
            killer = threading.Thread(target=kill_once_it_answers)
            killer.start()
            got = sharded.evaluate("mse", p, t, sample_weight=w, gradient=True)
            killer.join(timeout=90)
    finally:
        if victim.process.poll() is None:
            _kill(victim)
    assert killed.is_set()
    _assert_identical(got, expected)
    assert got.requests == 40


@pytest.mark.loss("mse")
def test_a_502_sends_the_piece_to_another_replica(server: Server) -> None:
    """A proxy whose replica is gone answers 502 (here nginx in front of a closed port): the
    client takes it for an unreachable replica and every piece is answered by the other."""
    p, t, w = _batch()
    expected = _alone(server, p, t, w)
    before = answered(server, "mse")
    with balancer([f"http://127.0.0.1:{free_port()}"]) as gateway:
        with Client(urls=[gateway.url, server.url], max_elements=PIECE) as sharded:
            got = sharded.evaluate("mse", p, t, sample_weight=w, gradient=True)
        statuses = [line.split('"')[2].split()[0] for line in gateway.access_log()]
    _assert_identical(got, expected)
    assert grown([server], "mse", [before], 7) == [7]
    assert statuses and set(statuses) == {"502"}


@pytest.mark.loss("tversky")
def test_a_503_sends_the_piece_to_another_replica_at_once(server: Server) -> None:
    """A replica still compiling tversky's kernels answers 503 not_ready: the client sends the
    piece to the other replica without waiting, and passes on none of the 503s."""
    cold_ones = cold_losses()
    assert "tversky" in cold_ones[-2:]  # warmed last but for ctc (rank-3 batches only)
    p, t = rng.uniform(size=N), rng.integers(0, 2, N).astype(np.float64)
    with Client(server.url, max_elements=PIECE) as one:
        expected = one.evaluate("tversky", p, t, gradient=True)
    with tempfile.TemporaryDirectory(prefix="lossd-cold-") as tmp:
        cache = Path(tmp) / "numba"
        cache_without(cold_ones, cache)
        cold = start_server({"NUMBA_CACHE_DIR": str(cache)}, wait_for="/healthz")
        try:
            with Client(urls=[cold.url, server.url], max_elements=PIECE) as sharded:
                got = sharded.evaluate("tversky", p, t, gradient=True)
            assert grown([cold], "tversky", [0], 1, status=503)[0] >= 1
            assert answered(cold, "tversky", 200) == 0
        finally:
            _kill(cold)
    _assert_identical(got, expected)
