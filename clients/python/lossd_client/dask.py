"""A loss over data no machine holds: dask arrays, or the columns of a dask dataframe (parquet
on any filesystem fsspec reads), evaluated partition by partition where the data lives.

    import dask.dataframe as dd
    from distributed import Client as DaskClient
    from lossd_client import dask as lossd_dask

    DaskClient("tcp://scheduler:8786")  # the dask cluster, the default scheduler from now on
    frame = dd.read_parquet("s3://bucket/scores/")
    result = lossd_dask.evaluate(
        ["http://10.0.0.5:8000", "http://10.0.0.6:8000"], "mse",
        frame["prediction"], frame["label"], gradient=True,
    )
    result.value, result.weight_sum, result.n  # numbers
    result.per_sample, result.gradient  # dask arrays, chunked as the input's partitions

Each partition is one task that depends only on that partition, so the scheduler runs it on the
worker holding it; the task sends the partition with a lossd ``Client`` of that worker (the
replicas of ``client_or_urls``; a partition larger than one request is split and merged there).
Every partition is asked for its sum when the mean is wanted; the partitions' scalars (their
sums, weight sums and row counts, a few numbers each) are combined in a tree of at most
``split_every`` inputs per task, and only the root comes back to the caller, who merges them
exactly as the client merges the pieces of one batch (``math.fsum`` of the sums and weight
sums: the result does not depend on how partitions are grouped). The per-sample losses and
derivatives stay on the workers: they are dask arrays built from the partitions' answers
(persisted there), one chunk per partition, a mean's derivatives scaled by the total weight sum
when they are computed. The data never reaches the caller or the scheduler.

Columns of one dataframe are read together: they are joined into one frame (dask reads the
columns of one parquet dataset in one task per partition), and each partition is evaluated in
the task that reads it (dask fuses the two), so its rows never leave that worker. Dask arrays are split along rows only: the columns of an
(N, C) array are joined into one chunk, and the targets' and weights' rows are rechunked to the
predictions' (a rechunk moves data between workers; chunk them alike to avoid it).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
from dask.base import compute, persist
from dask.delayed import Delayed, delayed

from ._client import (
    AsyncClient,
    Client,
    ClientOptions,
    ComputeDtype,
    Evaluation,
    ReduceOver,
    coupled_names,
    fold,
)
from ._jobs import Result, computes_float32, merge
from ._wire import Reduction

__all__ = ["DaskResult", "evaluate"]

OUTPUTS = ("per_sample", "gradient", "hessian")


@dataclass(frozen=True, eq=False)
class DaskResult:
    """``Result`` for dask inputs: ``value``, ``weight_sum`` and ``n`` are numbers;
    ``per_sample`` (N,), ``gradient`` and ``hessian`` (the predictions' shape) are dask arrays
    chunked along rows as the input's partitions, or None when not asked for. ``partitions`` is
    how many there were, ``requests`` how many requests they took in all."""

    loss: str
    reduction: str
    value: float | None
    weight_sum: float
    n: int
    per_sample: da.Array | None
    gradient: da.Array | None
    hessian: da.Array | None
    params: Mapping[str, Any]
    reduce_over: str
    partitions: int
    requests: int


@dataclass(frozen=True)
class _Partials:
    """Partitions' scalars, in partition order; the first non-empty partition's answer
    details (name, params, and each output's dtype and trailing shape)."""

    totals: tuple[float, ...]
    weight_sums: tuple[float, ...]
    rows: tuple[int, ...]
    requests: int
    first: tuple[str, Mapping[str, Any], str, tuple[tuple[str, str, tuple[int, ...]], ...]] | None


# One lossd client per worker process and set of options, shared by the tasks it runs (they
# run on the worker's threads; ``Client`` is thread-safe), closed when the process exits.
_CLIENTS: dict[ClientOptions, Client] = {}
_CLIENTS_LOCK = threading.Lock()


def _worker_client(options: ClientOptions) -> Client:
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(options)
        if client is None:
            client = _CLIENTS[options] = options.client()
        return client


@atexit.register
def _close_clients() -> None:
    with _CLIENTS_LOCK:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()


def _evaluate_arrays(
    options: ClientOptions, request: Evaluation, predictions: Any, targets: Any, weights: Any
) -> Result | None:
    """One partition's answer (None for a partition without rows), on the worker holding it:
    ``request`` with the partition's arrays."""
    predictions = np.asarray(predictions)
    if predictions.shape[0] == 0:
        return None
    weights = None if weights is None else np.asarray(weights)
    evaluation = replace(
        request, predictions=predictions, targets=np.asarray(targets), sample_weight=weights
    )
    return _worker_client(options).evaluate_many([evaluation])[0]


def _evaluate_frame(
    frame: Any, options: ClientOptions, request: Evaluation, layout: tuple[slice | int, ...]
) -> Any:
    """``_evaluate_arrays`` for a partition of the joined frame, its answer in a one-element
    series (what a map over a dataframe's partitions gives): ``layout`` says which of its
    columns are the predictions, the targets and the weights (a slice: a 2-D array of those
    columns; an int: one column, 1-D)."""
    import pandas as pd

    arrays = [frame.iloc[:, where].to_numpy() for where in layout]
    answer = _evaluate_arrays(options, request, *arrays, *([None] * (3 - len(arrays))))
    return pd.Series([answer], dtype=object)


def _unwrap(answer: Any) -> Result | None:
    result: Result | None = answer.iloc[0]
    return result


def _summary(part: Result | None) -> _Partials:
    if part is None:
        return _Partials((), (), (0,), 0, None)
    outputs = tuple(
        (name, array.dtype.str, array.shape[1:])
        for name in OUTPUTS
        if (array := getattr(part, name)) is not None
    )
    return _Partials(
        () if part.value is None else (part.value,),
        (part.weight_sum,),
        (part.n,),
        part.requests,
        (part.loss, dict(part.params), part.reduce_over, outputs),
    )


def _combine(*partials: _Partials) -> _Partials:
    """A node of the tree: its inputs' scalars joined in order (exact: nothing is rounded)."""
    return _Partials(
        tuple(t for p in partials for t in p.totals),
        tuple(w for p in partials for w in p.weight_sums),
        tuple(r for p in partials for r in p.rows),
        sum(p.requests for p in partials),
        next((p.first for p in partials if p.first is not None), None),
    )


def _tree(leaves: list[Delayed], split_every: int) -> Delayed:
    level = leaves
    while len(level) > 1:
        level = [
            delayed(_combine, pure=True)(*level[i : i + split_every])
            for i in range(0, len(level), split_every)
        ]
    return level[0]


def _output(part: Result | None, name: str, scale: float | None, empty: Any) -> Any:
    """One partition's output array, a mean's derivatives scaled (into a new array: the
    persisted answer is not changed, so computing twice gives the same)."""
    if part is None:
        return empty
    array = getattr(part, name)
    if scale is None or name == "per_sample":
        return array
    return np.multiply(array, array.dtype.type(scale))


def _options(
    client_or_urls: Client | AsyncClient | ClientOptions | str | Sequence[str],
) -> ClientOptions:
    if isinstance(client_or_urls, (Client, AsyncClient)):
        return client_or_urls.options
    if isinstance(client_or_urls, ClientOptions):
        return client_or_urls
    if isinstance(client_or_urls, str):
        return ClientOptions((client_or_urls,))
    urls = tuple(client_or_urls)
    if not urls or not all(isinstance(u, str) for u in urls):
        raise ValueError("client_or_urls: a lossd Client, a URL or a non-empty list of URLs")
    return ClientOptions(urls)


def _dtypes(value: Any) -> list[Any]:
    """The dtypes of an array's elements or a frame's columns."""
    if isinstance(value, da.Array) or value.ndim == 1:
        return [value.dtype]
    return list(value.dtypes)


def _is_frame(value: Any) -> bool:
    """A dask dataframe or series (without importing dask.dataframe, which needs pandas)."""
    return (
        hasattr(value, "npartitions")
        and hasattr(value, "to_delayed")
        and not isinstance(value, da.Array)
    )


def _array_parts(
    inputs: list[Any], options: ClientOptions, request: Evaluation
) -> tuple[list[Delayed], tuple[int, ...]]:
    """One task per row chunk of the predictions; the other arrays' rows chunked alike."""
    arrays: list[da.Array] = []
    for index, array in enumerate(inputs):
        if array.ndim not in (1, 2):
            raise ValueError(f"dask arrays of 1 or 2 dimensions, not {array.ndim}")
        if array.ndim == 2 and array.numblocks[1] > 1:
            array = array.rechunk({1: -1})
        if index and array.chunks[0] != arrays[0].chunks[0]:
            if array.shape[0] != arrays[0].shape[0]:
                raise ValueError(
                    f"the arrays' rows differ: {arrays[0].shape[0]} and {array.shape[0]}"
                )
            array = array.rechunk({0: arrays[0].chunks[0]})
        arrays.append(array)
    rows = arrays[0].chunks[0]
    if any(np.isnan(r) for r in rows):
        raise ValueError("dask arrays with unknown chunk sizes: call compute_chunk_sizes()")
    blocks = [a.to_delayed().reshape(len(rows), -1)[:, 0] for a in arrays]
    blocks += [[None] * len(rows)] * (3 - len(blocks))
    parts = [
        delayed(_evaluate_arrays, pure=True)(options, request, p, t, w)
        for p, t, w in zip(*blocks, strict=True)
    ]
    return parts, tuple(int(r) for r in rows)


def _frame_parts(inputs: list[Any], options: ClientOptions, request: Evaluation) -> list[Delayed]:
    """One task per partition of the frame joining the inputs' columns."""
    import dask.dataframe as dd
    import pandas as pd

    counts = {x.npartitions for x in inputs}
    if len(counts) > 1:
        raise ValueError(
            f"dataframe columns with different partitions ({sorted(counts)}): take them from one "
            "dataframe, or repartition them alike"
        )
    frames = []
    layout: list[slice | int] = []
    width = 0
    for index, value in enumerate(inputs):
        frame = value.to_frame() if value.ndim == 1 else value
        columns = len(frame.columns)
        frames.append(frame.rename(columns={c: f"{index}:{c}" for c in frame.columns}))
        layout.append(width if value.ndim == 1 else slice(width, width + columns))
        width += columns
    joined = (
        frames[0] if len(frames) == 1 else dd.concat(frames, axis=1, ignore_unknown_divisions=True)
    )
    # evaluated in the task that reads the partition: dask fuses the read, the selection of
    # the columns and this map into one task, so a partition's rows are never sent anywhere
    answers = joined.map_partitions(
        _evaluate_frame,
        options,
        request,
        tuple(layout),
        meta=pd.Series([], dtype=object),
        enforce_metadata=False,
    )
    return [delayed(_unwrap, pure=True)(answer) for answer in answers.to_delayed()]


def _refuse_coupled(options: ClientOptions, name: str) -> None:
    """A batch-coupled loss (Cox's risk sets, a contrastive batch's pairs) has no partial
    results to merge: evaluated partition by partition it would give another answer."""
    with options.client() as client:
        coupled = coupled_names(client.losses())
    if fold(name) in coupled:
        raise ValueError(
            f"{name} is batch-coupled (a sample's loss depends on the whole batch), so it cannot "
            "be evaluated partition by partition; rechunk to one partition or use Client.evaluate"
        )


def evaluate(
    client_or_urls: Client | AsyncClient | ClientOptions | str | Sequence[str],
    name: str,
    predictions: Any,
    targets: Any,
    *,
    sample_weight: Any = None,
    reduction: Reduction = "mean",
    params: Mapping[str, Any] | None = None,
    per_sample: bool = True,
    gradient: bool = False,
    hessian: bool = False,
    dtype: ComputeDtype | None = None,
    reduce_over: ReduceOver | None = None,
    split_every: int = 8,
) -> DaskResult:
    """Evaluate loss ``name`` over dask collections partition by partition (module docstring).

    ``client_or_urls``: a lossd ``Client`` (its arguments are sent to the workers, which make
    their own: an API key travels with the tasks), a URL or a list of replicas' URLs.
    ``predictions``, ``targets``, ``sample_weight``: dask arrays (1-D, or 2-D (N, C)), or dask
    dataframe columns (a series is (N,), a dataframe of C columns (N, C)), all of one kind.
    The scalars are computed now, on the default dask scheduler (a ``distributed.Client``
    once one exists); the arrays stay lazy, their partitions' answers kept on the workers.
    """
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    options = _options(client_or_urls)
    inputs = [x for x in (predictions, targets, sample_weight) if x is not None]
    # what every partition is asked, its arrays put in on the worker (the mean as a sum)
    request = Evaluation(
        name,
        (),
        (),
        reduction="sum" if reduction == "mean" else reduction,
        params=dict(params or {}),
        per_sample=per_sample,
        gradient=gradient,
        hessian=hessian,
        dtype=dtype,
        reduce_over=reduce_over,
    )
    known_rows: tuple[int, ...] | None = None
    if all(isinstance(x, da.Array) for x in inputs):
        parts, known_rows = _array_parts(inputs, options, request)
    elif all(_is_frame(x) for x in inputs):
        parts = _frame_parts(inputs, options, request)
    else:
        raise TypeError(
            "predictions, targets and sample_weight: all dask arrays, or all columns of dask "
            "dataframes"
        )
    if len(parts) > 1:
        _refuse_coupled(options, name)
    if per_sample or gradient or hessian:  # the answers stay where they were computed
        parts = list(persist(*parts))
    (partials,) = compute(_tree([delayed(_summary, pure=True)(p) for p in parts], split_every))
    assert isinstance(partials, _Partials)
    merged = merge(
        reduction,
        partials.totals,
        partials.weight_sums,
        float32=computes_float32(dtype, [d for x in inputs for d in _dtypes(x)]),
    )
    loss, shown, over, outputs = partials.first or (name, dict(params or {}), "samples", ())
    arrays: dict[str, da.Array] = {}
    for output, dtype_str, trailing in outputs:
        kind = np.dtype(dtype_str)
        empty = np.empty((0, *trailing), dtype=kind)
        chunks = [
            da.from_delayed(
                delayed(_output, pure=True)(part, output, merged.scale, empty),
                shape=(rows, *trailing),
                dtype=kind,
            )
            for part, rows in zip(parts, partials.rows, strict=True)
        ]
        arrays[output] = da.concatenate(chunks, axis=0)
    # persisted as arrays, which hold their chunks on the workers for as long as they live
    # (the partitions' persisted answers are let go once the chunks are taken from them)
    arrays = dict(zip(arrays, persist(*arrays.values()), strict=True))
    if known_rows is not None and partials.rows != known_rows:
        raise RuntimeError(f"the partitions' answers count {partials.rows} rows, not {known_rows}")
    return DaskResult(
        loss=loss,
        reduction=reduction,
        value=merged.value,
        weight_sum=merged.weight_sum,
        n=sum(partials.rows),
        per_sample=arrays.get("per_sample"),
        gradient=arrays.get("gradient"),
        hessian=arrays.get("hessian"),
        params=shown,
        reduce_over=over,
        partitions=len(parts),
        requests=partials.requests,
    )
