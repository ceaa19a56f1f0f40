"""``Client`` (threads) and ``AsyncClient`` (asyncio): the same requests, the same splitting
and merging (``_jobs``), the same bodies and answer readers (``_wire``); only the I/O differs.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, cast
from urllib.parse import quote

import httpx
import numpy.typing as npt

from . import __version__
from ._errors import ServerError, TooLarge, error_from_answer
from ._jobs import Job, Limits, Piece, Result, merge
from ._wire import (
    BINARY,
    HEADER_LENGTH,
    INPUTS,
    FramedAnswer,
    Options,
    Reduction,
    Sink,
    Transport,
    json_answer,
    wire_array,
)

DEFAULT_URL = "http://127.0.0.1:8000"
# Upload slices: httpcore copies the unsent rest of each slice after every partial socket
# send, so a slice costs time quadratic in its size; a few MiB keeps that negligible without
# a Python-level loop per 64 KiB. 250 MB to a bare echo on this 2-core VM: 3.9-4.5 s as one
# bytes body, 0.25-0.28 s in 1 or 4 MiB slices, 0.24 s through http.client
# (benchmarks/python_client.py).
UPLOAD_CHUNK_BYTES = 4 << 20
# How a refused upload can look when the server's answer is lost with its connection (a 413
# before the body is read, then close): see ``Job.cut``.
CUT_OFF = (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)
# A replica that could not be reached: no connection, or a proxy in front of it answering 502
# (its upstream failed). With several replicas the piece goes to another at once.
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
# Seconds a replica that could not be reached is passed over while others are up.
DOWN_SECONDS = 2.0
# Requests in flight per replica when ``concurrency`` is not given.
PER_REPLICA = 4
ComputeDtype = Literal["float64", "float32"]
ReduceOver = Literal["samples", "elements"]
# A batch of a stream: (predictions, targets) or (predictions, targets, sample_weight).
Batch = (
    tuple[npt.ArrayLike, npt.ArrayLike] | tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike | None]
)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One evaluation for ``evaluate_many``: ``evaluate``'s arguments."""

    name: str
    predictions: npt.ArrayLike
    targets: npt.ArrayLike | None
    sample_weight: npt.ArrayLike | None = None
    reduction: Reduction = "mean"
    params: Mapping[str, Any] | None = None
    per_sample: bool = True
    gradient: bool = False
    hessian: bool = False
    dtype: ComputeDtype | None = None
    reduce_over: ReduceOver | None = None
    inputs: Mapping[str, npt.ArrayLike] | None = None
    input_gradients: bool = False


@dataclass(frozen=True)
class ClientOptions:
    """A client's constructor arguments, hashable and picklable: what another process needs to
    make the same client (``lossd_client.dask`` sends them to its workers)."""

    urls: tuple[str, ...]
    api_key: str | None = None
    timeout: float = 60.0
    transport: Transport = "binary"
    max_elements: int | None = None
    max_body_bytes: int | None = None
    concurrency: int | None = None
    retries: int = 5
    max_retry_wait: float = 30.0
    upload_chunk_bytes: int = UPLOAD_CHUNK_BYTES
    headers: tuple[tuple[str, str], ...] = ()

    def client(self) -> Client:
        """A new ``Client`` with these arguments."""
        arguments: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        return Client(**{**arguments, "headers": dict(self.headers)})


class _Settings:
    """What both clients share: how to build jobs, the limits learnt, the retry policy."""

    def __init__(self, options: ClientOptions) -> None:
        if options.transport not in ("binary", "json"):
            raise ValueError(f"transport must be 'binary' or 'json', not {options.transport!r}")
        concurrency = options.concurrency
        if concurrency is None:
            concurrency = PER_REPLICA * len(options.urls)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.transport: Transport = options.transport
        self.limits = Limits(options.max_elements, options.max_body_bytes)
        self.concurrency = concurrency
        self.retries = options.retries
        self.max_retry_wait = options.max_retry_wait
        self.upload_chunk_bytes = options.upload_chunk_bytes

    def job(self, evaluation: Evaluation) -> Job:
        arrays = {"predictions": wire_array(evaluation.predictions, "predictions")}
        if evaluation.targets is not None:
            arrays["targets"] = wire_array(evaluation.targets, "targets")
        if evaluation.sample_weight is not None:
            arrays["sample_weight"] = wire_array(evaluation.sample_weight, "sample_weight")
        for key, value in (evaluation.inputs or {}).items():
            arrays[f"{INPUTS}.{key}"] = wire_array(value, f"inputs[{key!r}]")
        options = Options(
            reduction=evaluation.reduction,
            params=dict(evaluation.params or {}),
            per_sample=evaluation.per_sample,
            gradient=evaluation.gradient,
            hessian=evaluation.hessian,
            dtype=evaluation.dtype,
            reduce_over=evaluation.reduce_over,
            input_gradients=evaluation.input_gradients,
        )
        return Job(evaluation.name, arrays, options, self.transport)

    def retry_delay(self, error: ServerError, attempt: int) -> float:
        """Seconds to wait before retrying a 503: its Retry-After, else a doubling backoff from
        0.25 s; never more than ``max_retry_wait``."""
        delay = error.retry_after if error.retry_after is not None else 0.25 * 2**attempt
        return min(delay, self.max_retry_wait)


def _urls(url: str, urls: Sequence[str] | None) -> list[str]:
    if urls is None:
        return [url]
    if isinstance(urls, str):
        raise TypeError("urls must be a sequence of URLs, not one string")
    if not urls:
        raise ValueError("urls must name at least one server")
    return list(urls)


class _Replicas:
    """The servers a client spreads its requests over, and what it knows of them: requests in
    flight on each, and which could not be reached lately. ``pick`` chooses the reachable
    replica with the fewest requests in flight, taking turns among equals."""

    def __init__(self, count: int) -> None:
        self.in_flight = [0] * count
        self.down_until = [0.0] * count
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.in_flight)

    def pick(self, avoid: set[int]) -> int:
        """A replica for the next request (counted in flight until ``done``), not one in
        ``avoid`` unless that is all there is."""
        with self._lock:
            count = len(self.in_flight)
            start = next(self._turn) % count
            order = [(start + k) % count for k in range(count)]
            candidates = [i for i in order if i not in avoid] or order
            now = time.monotonic()
            up = [i for i in candidates if self.down_until[i] <= now] or candidates
            chosen = min(up, key=lambda i: self.in_flight[i])  # the first of equals: in turn
            self.in_flight[chosen] += 1
            return chosen

    def done(self, index: int) -> None:
        with self._lock:
            self.in_flight[index] -= 1

    def unreachable(self, index: int) -> None:
        with self._lock:
            self.down_until[index] = time.monotonic() + DOWN_SECONDS


class _Route:
    """One piece's attempts over the replicas. A round tries each replica at most once: a
    replica that answers 503 or 502 or cannot be reached is left for the next one at once. A
    round in which every replica failed so ends the piece with the error when none was a 503
    (nothing to wait for), else waits the 503's Retry-After and starts the next, up to
    ``retries`` times. A connection cut while the piece was sent or answered is tried once on
    another replica (the first may have died) before it is taken for a refusal of the body's
    size (``Job.cut``). With one replica this is the single-server client's behaviour."""

    def __init__(self, replicas: _Replicas, settings: _Settings) -> None:
        self.replicas = replicas
        self.settings = settings
        self.tried: set[int] = set()
        self.rounds = 0
        self.overloaded: ServerError | None = None
        self.cut_elsewhere = False

    def pick(self) -> int:
        return self.replicas.pick(self.tried)

    def failed(self, index: int, error: Exception, *, reachable: bool) -> float:
        """After a 503, a 502 or no connection: 0 to try another replica now, else the seconds
        to wait before the next round; raises ``error`` when the piece must give up."""
        if not reachable:
            self.replicas.unreachable(index)
        elif isinstance(error, ServerError) and error.status == 503:
            self.overloaded = error
        self.tried.add(index)
        if len(self.tried) < len(self.replicas):
            return 0.0
        overloaded, self.overloaded = self.overloaded, None
        if overloaded is None or self.rounds == self.settings.retries:
            raise error
        self.tried.clear()
        self.rounds += 1
        return self.settings.retry_delay(overloaded, self.rounds - 1)

    def cut(self, index: int) -> bool:
        """Whether to send a piece whose connection was cut to another replica first."""
        if self.cut_elsewhere or len(self.replicas) == 1:
            return False
        self.cut_elsewhere = True
        self.tried = {index}
        return True


def fold(name: str) -> str:
    """A loss name as the server matches it: case-insensitive, '-' and '_' alike."""
    return name.lower().replace("-", "_")


def coupled_names(catalogue: list[dict[str, Any]], flag: str = "batch_coupled") -> frozenset[str]:
    """The names and aliases (folded) of the catalogue's losses with ``flag``: the batch-coupled
    ones (a sample's loss depends on the whole batch, so their batches are never split:
    ``Job.pieces``) by default, or those whose mean weighs each sample by a factor of its own
    (``mean_factor``: a split mean merges the pieces' means, ``Job.result``)."""
    return frozenset(
        fold(name)
        for entry in catalogue
        if entry.get(flag)
        for name in (entry["name"], *entry.get("aliases", ()))
    )


def _reachable(error: ServerError) -> bool:
    """A 502 is a proxy's word that the server behind it failed: as good as no connection."""
    return error.status != 502


def _headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    # identity: lossd does not compress, and arrays of floats barely compress: a proxy doing it
    # would only cost time
    headers = {"User-Agent": f"lossd-client/{__version__}", "Accept-Encoding": "identity"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra or {})
    return headers


def _path(name: str) -> str:
    return f"/loss/{quote(name, safe='')}"


def _request(piece: Piece, chunk_bytes: int) -> tuple[Iterator[bytes], dict[str, str]]:
    """The piece's body as slices, and its headers (with the Content-Length: a body of
    unknown length would be sent chunked, which the server copies once more)."""
    body = piece.job.body(piece)
    chunks = cast(Iterator[bytes], body.chunks(chunk_bytes))  # httpx sends any buffer
    return chunks, {**body.headers, "Content-Length": str(body.length)}


def _framed(response: httpx.Response, sink: Sink) -> FramedAnswer | None:
    """A reader for the answer when it is in the binary framing, else None (JSON)."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != BINARY:
        return None
    return FramedAnswer(int(response.headers.get(HEADER_LENGTH, "0")), sink)


class _Stream:
    """A streamed evaluation's running totals: each batch is evaluated as a sum (no per-sample
    output), and the batches' sums and weight sums add up to the stream's (``_jobs``)."""

    def __init__(self, name: str, reduction: Reduction, dtype: ComputeDtype | None) -> None:
        self.name = name
        self.reduction = reduction
        self.dtype = dtype
        self.totals: list[float] = []
        self.weight_sums: list[float] = []
        self.n = 0
        self.requests = 0
        self.first: Result | None = None

    def evaluation(
        self, batch: Batch, params: Mapping[str, Any] | None, reduce_over: ReduceOver | None
    ) -> Evaluation:
        predictions, targets, *rest = batch
        return Evaluation(
            self.name,
            predictions,
            targets,
            sample_weight=rest[0] if rest else None,
            reduction="sum" if self.reduction == "mean" else self.reduction,
            params=params,
            per_sample=False,
            dtype=self.dtype,
            reduce_over=reduce_over,
        )

    def add(self, result: Result) -> int:
        """Count a batch's result; its rows."""
        self.first = self.first or result
        if result.value is not None:
            self.totals.append(result.value)
        self.weight_sums.append(result.weight_sum)
        self.n += result.n
        self.requests += result.requests
        return result.n

    def result(self) -> Result:
        merged = merge(
            self.reduction, self.totals, self.weight_sums, float32=self.dtype == "float32"
        )
        first = self.first
        return Result(
            loss=first.loss if first else self.name,
            reduction=self.reduction,
            value=merged.value,
            weight_sum=merged.weight_sum,
            n=self.n,
            per_sample=None,
            gradient=None,
            hessian=None,
            params=first.params if first else {},
            reduce_over=first.reduce_over if first else "samples",
            requests=self.requests,
        )


H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _Base(Generic[H]):
    """The constructor both clients share; each makes its own kind of HTTP client."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        urls: Sequence[str] | None = None,
        timeout: float = 60.0,
        transport: Transport = "binary",
        max_elements: int | None = None,
        max_body_bytes: int | None = None,
        concurrency: int | None = None,
        retries: int = 5,
        max_retry_wait: float = 30.0,
        upload_chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # its arguments, for another process to make the same client (lossd_client.dask)
        self.options = ClientOptions(
            tuple(_urls(url, urls)),
            api_key,
            timeout,
            transport,
            max_elements,
            max_body_bytes,
            concurrency,
            retries,
            max_retry_wait,
            upload_chunk_bytes,
            tuple((headers or {}).items()),
        )
        self._settings = _Settings(self.options)
        self._replicas = _Replicas(len(self.options.urls))
        # the batch-coupled losses' names and those with a mean factor, folded (``_learn``)
        self._coupled: frozenset[str] | None = None
        self._factored: frozenset[str] = frozenset()
        self._https: list[H] = [
            self._http(base, timeout, _headers(api_key, headers)) for base in self.options.urls
        ]

    def _http(self, base: str, timeout: float, headers: dict[str, str]) -> H:
        raise NotImplementedError

    def _know(self, catalogue: list[dict[str, Any]]) -> None:
        """Keep what splitting needs from the catalogue (``_learn``)."""
        self._coupled = coupled_names(catalogue)
        self._factored = coupled_names(catalogue, "mean_factor")

    def _tell(self, job: Job) -> None:
        """Tell a job what the catalogue says of its loss."""
        assert self._coupled is not None
        job.coupled = fold(job.name) in self._coupled
        job.factored = fold(job.name) in self._factored


class Client(_Base[httpx.Client]):
    """A client of one lossd server, or of several replicas (``urls``). Thread-safe; use it as a
    context manager or ``close()`` it.

    ``transport``: ``"binary"`` (default) sends the arrays as raw bytes in lossd's binary
    framing and asks for answers the same way; ``"json"`` sends JSON with base64-packed arrays.
    Batches larger than the server's limits are split into row pieces sent ``concurrency`` at a
    time and merged exactly; the limits are ``max_elements``/``max_body_bytes`` when given, else
    the server's defaults, lowered when a 413 names lower ones. A batch-coupled loss
    (``batch_coupled`` in the catalogue, read once the first time a batch would be split) is
    never split: its batch is sent whole, and a ``TooLarge`` says why when it does not fit. A
    503 is retried up to ``retries`` times after its Retry-After (at most ``max_retry_wait``
    seconds).

    ``urls`` (instead of ``url``): replicas of one service. Each request goes to the replica
    with the fewest of this client's requests in flight (in turn among equals), so the pieces of
    a large evaluation are spread over them; a piece that meets no connection, a cut
    connection, a 502 or a 503 is sent to another replica at once (loss requests are
    idempotent), and the answers merge as one server's do: the same pieces give the same bits
    whichever replica answered each. ``concurrency`` is then the requests in flight in all,
    4 per replica unless given.

    ``options``: the arguments it was made with (``ClientOptions``, picklable), from which
    ``options.client()`` makes the same client elsewhere (``lossd_client.dask``'s workers).
    """

    def _http(self, base: str, timeout: float, headers: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=base, timeout=timeout, headers=headers)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for http in self._https:
            http.close()

    # --- the catalogue -----------------------------------------------------------------------

    def losses(self) -> list[dict[str, Any]]:
        """The catalogue (``GET /losses``): every loss with its aliases, parameters (JSON
        schema), formula and reference."""
        route = _Route(self._replicas, self._settings)
        while True:
            index = route.pick()
            try:
                response = self._https[index].get("/losses")
            except UNREACHABLE as unreachable:
                delay = route.failed(index, unreachable, reachable=False)
                response = None
            finally:
                self._replicas.done(index)
            if response is not None:
                if response.status_code == 200:
                    losses: list[dict[str, Any]] = response.json()["losses"]
                    return losses
                error = error_from_answer(response.status_code, response.headers, response.content)
                if not isinstance(error, ServerError) or error.status not in (502, 503):
                    raise error
                delay = route.failed(index, error, reachable=_reachable(error))
            time.sleep(delay)

    # --- evaluating --------------------------------------------------------------------------

    def evaluate(
        self,
        name: str,
        predictions: npt.ArrayLike,
        targets: npt.ArrayLike | None,
        *,
        sample_weight: npt.ArrayLike | None = None,
        reduction: Reduction = "mean",
        params: Mapping[str, Any] | None = None,
        per_sample: bool = True,
        gradient: bool = False,
        hessian: bool = False,
        dtype: ComputeDtype | None = None,
        reduce_over: ReduceOver | None = None,
        inputs: Mapping[str, npt.ArrayLike] | None = None,
        input_gradients: bool = False,
    ) -> Result:
        """Evaluate loss ``name`` (or an alias) on one batch: predictions (N,) or (N, C),
        targets of the same shape or (N,) class indices (None for a loss that takes none,
        triplet_margin), optional (N,) sample weights, and the extra named arrays of the losses
        that take them (``inputs={"var": ...}``; ``input_gradients=True`` returns their
        gradients in ``Result.input_gradients``). A split batch cuts the inputs with its rows."""
        evaluation = Evaluation(
            name,
            predictions,
            targets,
            sample_weight,
            reduction,
            params,
            per_sample,
            gradient,
            hessian,
            dtype,
            reduce_over,
            inputs,
            input_gradients,
        )
        return self.evaluate_many([evaluation])[0]

    def evaluate_many(self, evaluations: Iterable[Evaluation]) -> list[Result]:
        """Several evaluations, their requests sent ``concurrency`` at a time; results in
        order."""
        jobs = [self._settings.job(e) for e in evaluations]
        for job in jobs:
            if len(job.pieces(self._settings.limits)) > 1:
                self._learn(job)
        self._run([p for job in jobs for p in job.pieces(self._settings.limits)])
        return [job.result() for job in jobs]

    def _learn(self, job: Job) -> None:
        """Whether the job's loss is batch-coupled (never split) and whether its mean has a
        factor per sample, from the catalogue, fetched once, the first time a batch would be
        split."""
        if job.coupled is None:
            if self._coupled is None:
                self._know(self.losses())
            self._tell(job)

    def evaluate_stream(
        self,
        name: str,
        batches: Iterable[Batch],
        *,
        reduction: Reduction = "mean",
        params: Mapping[str, Any] | None = None,
        dtype: ComputeDtype | None = None,
        reduce_over: ReduceOver | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Result:
        """The loss over a stream of batches too large to hold at once (files, generators): its
        value, weight_sum and n, as one request over all of them would answer (no per-sample
        losses or derivatives). Batches are read as requests finish, ``concurrency`` in
        flight; ``progress`` is called with each finished batch's rows."""
        stream = _Stream(name, reduction, dtype)
        with ThreadPoolExecutor(self._settings.concurrency, "lossd-client") as pool:
            pending: set[Future[Result]] = set()

            def collect(done: set[Future[Result]]) -> None:
                for future in done:
                    rows = stream.add(future.result())
                    if progress is not None:
                        progress(rows)

            try:
                for batch in batches:
                    if len(pending) >= self._settings.concurrency:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        collect(done)
                    evaluation = stream.evaluation(batch, params, reduce_over)
                    pending.add(pool.submit(lambda e: self.evaluate_many([e])[0], evaluation))
                done, pending = wait(pending)
                collect(done)
            finally:
                for future in pending:
                    future.cancel()
        return stream.result()

    # --- pieces ------------------------------------------------------------------------------

    def _run(self, pieces: list[Piece]) -> None:
        """Send the pieces, ``concurrency`` at a time, and the pieces they split into."""
        if len(pieces) == 1:  # most evaluations: no thread
            children = self._attempt(pieces[0])
            if children:
                self._run(children)
            return
        with ThreadPoolExecutor(self._settings.concurrency, "lossd-client") as pool:
            pending = {pool.submit(self._attempt, piece) for piece in pieces}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        pending |= {pool.submit(self._attempt, c) for c in future.result()}
            finally:
                for future in pending:
                    future.cancel()

    def _attempt(self, piece: Piece) -> list[Piece]:
        """Send one piece, retrying 503s; the pieces it must be split into instead, if any."""
        settings = self._settings
        smaller = piece.job.pieces(settings.limits, piece.start, piece.stop)
        if len(smaller) > 1:  # limits learnt since it was planned
            self._learn(piece.job)
            smaller = piece.job.pieces(settings.limits, piece.start, piece.stop)
        if len(smaller) > 1:
            return smaller
        route = _Route(self._replicas, settings)
        while True:
            index = route.pick()
            try:
                self._exchange(piece, index)
                return []
            except ServerError as error:
                if error.status not in (502, 503):
                    raise
                delay = route.failed(index, error, reachable=_reachable(error))
            except UNREACHABLE as error:
                delay = route.failed(index, error, reachable=False)
            except TooLarge as error:
                self._learn(piece.job)
                smaller = piece.job.resplit(piece, error, settings.limits)
                if not smaller:
                    raise
                return smaller
            except CUT_OFF:
                if not route.cut(index):
                    self._learn(piece.job)
                    smaller = piece.job.cut(piece, settings.limits)
                    if not smaller:
                        raise
                    return smaller
                delay = 0.0
            finally:
                self._replicas.done(index)  # not in flight while waiting
            if delay:
                time.sleep(delay)

    def _exchange(self, piece: Piece, index: int) -> None:
        """One request to replica ``index`` and its answer, written into the job's outputs."""
        chunks, headers = _request(piece, self._settings.upload_chunk_bytes)
        path = _path(piece.job.name)
        http = self._https[index]
        with http.stream("POST", path, content=chunks, headers=headers) as response:
            if response.status_code != 200:
                body = response.read()
                raise error_from_answer(response.status_code, response.headers, body)
            sink = piece.job.sink(piece)
            reader = _framed(response, sink)
            if reader is None:
                doc = json_answer(response.read(), sink)
            else:
                for chunk in response.iter_bytes():
                    reader.feed(chunk)
                doc = reader.finish()
        piece.job.record(piece, doc)


class AsyncClient(_Base[httpx.AsyncClient]):
    """``Client`` for asyncio: the same arguments and methods, awaited."""

    def _http(self, base: str, timeout: float, headers: dict[str, str]) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base, timeout=timeout, headers=headers)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for http in self._https:
            await http.aclose()

    async def losses(self) -> list[dict[str, Any]]:
        """The catalogue (``GET /losses``)."""
        route = _Route(self._replicas, self._settings)
        while True:
            index = route.pick()
            try:
                response = await self._https[index].get("/losses")
            except UNREACHABLE as unreachable:
                delay = route.failed(index, unreachable, reachable=False)
                response = None
            finally:
                self._replicas.done(index)
            if response is not None:
                if response.status_code == 200:
                    losses: list[dict[str, Any]] = response.json()["losses"]
                    return losses
                error = error_from_answer(response.status_code, response.headers, response.content)
                if not isinstance(error, ServerError) or error.status not in (502, 503):
                    raise error
                delay = route.failed(index, error, reachable=_reachable(error))
            await asyncio.sleep(delay)

    async def evaluate(
        self,
        name: str,
        predictions: npt.ArrayLike,
        targets: npt.ArrayLike | None,
        *,
        sample_weight: npt.ArrayLike | None = None,
        reduction: Reduction = "mean",
        params: Mapping[str, Any] | None = None,
        per_sample: bool = True,
        gradient: bool = False,
        hessian: bool = False,
        dtype: ComputeDtype | None = None,
        reduce_over: ReduceOver | None = None,
        inputs: Mapping[str, npt.ArrayLike] | None = None,
        input_gradients: bool = False,
    ) -> Result:
        """As ``Client.evaluate``."""
        evaluation = Evaluation(
            name,
            predictions,
            targets,
            sample_weight,
            reduction,
            params,
            per_sample,
            gradient,
            hessian,
            dtype,
            reduce_over,
            inputs,
            input_gradients,
        )
        return (await self.evaluate_many([evaluation]))[0]

    async def evaluate_many(self, evaluations: Iterable[Evaluation]) -> list[Result]:
        """As ``Client.evaluate_many``."""
        jobs = [self._settings.job(e) for e in evaluations]
        for job in jobs:
            if len(job.pieces(self._settings.limits)) > 1:
                await self._learn(job)
        await self._run([p for job in jobs for p in job.pieces(self._settings.limits)])
        return [job.result() for job in jobs]

    async def _learn(self, job: Job) -> None:
        """As ``Client._learn``."""
        if job.coupled is None:
            if self._coupled is None:
                self._know(await self.losses())
            self._tell(job)

    async def evaluate_stream(
        self,
        name: str,
        batches: Iterable[Batch] | AsyncIterable[Batch],
        *,
        reduction: Reduction = "mean",
        params: Mapping[str, Any] | None = None,
        dtype: ComputeDtype | None = None,
        reduce_over: ReduceOver | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Result:
        """As ``Client.evaluate_stream``; ``batches`` may also be an async iterable."""
        stream = _Stream(name, reduction, dtype)
        pending: set[asyncio.Task[list[Result]]] = set()

        def collect(done: set[asyncio.Task[list[Result]]]) -> None:
            for task in done:
                rows = stream.add(task.result()[0])
                if progress is not None:
                    progress(rows)

        try:
            async for batch in _aiter(batches):
                if len(pending) >= self._settings.concurrency:
                    done, pending = await asyncio.wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
                evaluation = stream.evaluation(batch, params, reduce_over)
                pending.add(asyncio.create_task(self.evaluate_many([evaluation])))
            if pending:
                done, pending = await asyncio.wait(pending)
                collect(done)
        finally:
            for task in pending:
                task.cancel()
        return stream.result()

    async def _run(self, pieces: list[Piece]) -> None:
        slots = asyncio.Semaphore(self._settings.concurrency)

        async def send(piece: Piece) -> None:
            async with slots:
                children = await self._attempt(piece)
            if children:
                await _gather([send(c) for c in children])

        await _gather([send(p) for p in pieces])

    async def _attempt(self, piece: Piece) -> list[Piece]:
        """As ``Client._attempt``."""
        settings = self._settings
        smaller = piece.job.pieces(settings.limits, piece.start, piece.stop)
        if len(smaller) > 1:  # limits learnt since it was planned
            await self._learn(piece.job)
            smaller = piece.job.pieces(settings.limits, piece.start, piece.stop)
        if len(smaller) > 1:
            return smaller
        route = _Route(self._replicas, settings)
        while True:
            index = route.pick()
            try:
                await self._exchange(piece, index)
                return []
            except ServerError as error:
                if error.status not in (502, 503):
                    raise
                delay = route.failed(index, error, reachable=_reachable(error))
            except UNREACHABLE as error:
                delay = route.failed(index, error, reachable=False)
            except TooLarge as error:
                await self._learn(piece.job)
                smaller = piece.job.resplit(piece, error, settings.limits)
                if not smaller:
                    raise
                return smaller
            except CUT_OFF:
                if not route.cut(index):
                    await self._learn(piece.job)
                    smaller = piece.job.cut(piece, settings.limits)
                    if not smaller:
                        raise
                    return smaller
                delay = 0.0
            finally:
                self._replicas.done(index)  # not in flight while waiting
            if delay:
                await asyncio.sleep(delay)

    async def _exchange(self, piece: Piece, index: int) -> None:
        chunks, headers = _request(piece, self._settings.upload_chunk_bytes)
        path = _path(piece.job.name)
        async with self._https[index].stream(
            "POST", path, content=_async_chunks(chunks), headers=headers
        ) as response:
            if response.status_code != 200:
                body = await response.aread()
                raise error_from_answer(response.status_code, response.headers, body)
            sink = piece.job.sink(piece)
            reader = _framed(response, sink)
            if reader is None:
                doc = json_answer(await response.aread(), sink)
            else:
                async for chunk in response.aiter_bytes():
                    reader.feed(chunk)
                doc = reader.finish()
        piece.job.record(piece, doc)


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _aiter(items: Iterable[Batch] | AsyncIterable[Batch]) -> AsyncIterator[Batch]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _gather(coroutines: list[Any]) -> None:
    """Run the coroutines together; on the first failure cancel the others and raise it (not an
    ExceptionGroup: callers catch ``LossdError``)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
