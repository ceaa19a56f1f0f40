"""``lossd_client.dask.evaluate`` on a ``distributed.LocalCluster`` of three worker processes
and two lossd replicas that take at most ``MAX_ELEMENTS`` per array: a dataset 24 times that,
written as 24 parquet files and read with dask.dataframe, evaluated partition by partition on
the workers; its value equal to numpy's to 1e-12, its per-sample losses and gradient (dask
arrays chunked as the partitions) equal numpy's without ever coming to this process, whose
peak RSS is reported and stays far below the data's size."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest
from dask.delayed import delayed
from lossd_client import Client, UnknownLoss
from lossd_client import dask as lossd_dask

from tests.support.servers import Server, answered, grown, served

MAX_ELEMENTS = 100_000  # per array, in both replicas: one request holds at most this many rows
FILES, ROWS = 24, 120_000  # each partition is more than one request: the worker splits it
N = FILES * ROWS  # 28.8 times one request
MiB = 2**20

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[Server]]:
    env = {"LOSSD_MAX_ELEMENTS": str(MAX_ELEMENTS)}
    with served(env) as first, served(env) as second:
        yield [first, second]


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    """Three worker processes of one thread each (the driver is this process: its memory is
    the driver's alone); the default scheduler while the module runs."""
    with (
        distributed.LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """FILES parquet files of predictions, targets and weights, written one at a time; numpy's
    weighted mse over all of them accumulated exactly as they are written: (directory, total
    of w·(p−t)², total of w)."""
    directory = tmp_path_factory.mktemp("parquet")
    rng = np.random.default_rng(16)
    totals, weights = [], []
    for index in range(FILES):
        p, t = rng.normal(size=ROWS), rng.normal(size=ROWS)
        w = rng.uniform(0.0, 2.0, size=ROWS)
        pd.DataFrame({"p": p, "t": t, "w": w}).to_parquet(directory / f"part-{index:03d}.parquet")
        totals.append(math.fsum(w * (p - t) ** 2))
        weights.append(math.fsum(w))
    return directory, math.fsum(totals), math.fsum(weights)


def _rss() -> tuple[int, int]:
    """This process's (current, peak) resident bytes (VmRSS, VmHWM)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def _differences(
    part: pd.DataFrame, per_sample: np.ndarray, gradient: np.ndarray, weight_sum: float
) -> tuple[float, float]:
    """The largest differences of a partition's per-sample mse and its mean's gradient from
    numpy's."""
    p, t, w = (part[c].to_numpy() for c in "ptw")
    return (
        float(np.max(abs(per_sample - (p - t) ** 2))),
        float(np.max(abs(gradient - 2.0 * w * (p - t) / weight_sum))),
    )


def _transferred(dask_client: distributed.Client) -> int:
    """Bytes the workers have fetched from one another so far."""
    counts = dask_client.run(
        lambda dask_worker: sum(entry["total"] for entry in dask_worker.transfer_incoming_log)
    )
    return sum(counts.values())


@pytest.mark.loss("mse")
def test_parquet_partitions_are_evaluated_on_the_workers_and_merge_exactly(
    replicas: list[Server],
    cluster: distributed.Client,
    dataset: tuple[Path, float, float],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """24 parquet files (28.8 times what one request may hold) read with dask.dataframe: each
    partition is read and evaluated by one worker (split in two requests there), spread over
    both replicas; the mean is numpy's to 1e-12; the per-sample losses and the gradient are
    dask arrays with one chunk per file, equal to numpy's, compared on the workers; this
    process's RSS grows by a small part of the data's size."""
    directory, total, weight_sum = dataset
    frame = dd.read_parquet(directory)
    assert frame.npartitions == FILES
    data_bytes = N * 3 * 8
    before = [answered(s, "mse") for s in replicas]
    moved = _transferred(cluster)
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS (VmHWM) from here on
    rss_before, _ = _rss()

    result = lossd_dask.evaluate(
        [s.url for s in replicas], "mse", frame["p"], frame["t"],
        sample_weight=frame["w"], gradient=True,
    )  # fmt: skip
    moved = _transferred(cluster) - moved
    expected = total / weight_sum
    assert result.n == N and result.partitions == FILES
    assert abs(result.value - expected) <= 1e-12 * expected, (result.value, expected)
    assert abs(result.weight_sum - weight_sum) <= 1e-12 * weight_sum
    assert result.requests == 2 * FILES  # 120,000 rows a partition, at most 100,000 a request
    assert result.per_sample is not None and result.gradient is not None
    assert result.per_sample.chunks == ((ROWS,) * FILES,)
    assert result.gradient.chunks == ((ROWS,) * FILES,)

    # the arrays against numpy's formulas, partition by partition on the workers: only the
    # largest differences come back
    checks = [
        delayed(_differences)(part, per_sample, gradient, weight_sum)
        for part, per_sample, gradient in zip(
            frame.to_delayed(),
            result.per_sample.to_delayed(),
            result.gradient.to_delayed(),
            strict=True,
        )
    ]
    per_sample_error, gradient_error = np.max(dask.compute(*checks), axis=0)
    _, peak = _rss()
    assert per_sample_error <= 1e-12 * 40, per_sample_error  # (p − t)² stays below 40 here
    assert gradient_error <= 1e-12 * 40 / weight_sum * 2, gradient_error

    more = grown(replicas, "mse", before, 2 * FILES)
    assert min(more) >= 1 and sum(more) == 2 * FILES, more  # both replicas answered
    growth = peak - rss_before
    with capsys.disabled():
        print(
            f"\n  dask: {N:,} rows in {FILES} parquet files ({data_bytes / MiB:.0f} MiB of "
            f"columns) on 3 workers, {result.requests} requests over 2 replicas; the driver's "
            f"peak RSS {peak / MiB:.0f} MiB, {growth / MiB:.1f} MiB above its start; the "
            f"workers fetched {moved / 2**10:.0f} KiB from one another while evaluating"
        )
    assert growth < data_bytes / 8, (growth / MiB, data_bytes / MiB)
    # each partition was evaluated where it was read: the workers passed one another only the
    # partitions' scalars, not a partition's columns (1.6 MiB each)
    assert moved < 256 * 2**10, moved


@pytest.mark.loss("cross_entropy")
def test_dask_arrays_give_one_requests_answer_chunk_for_chunk(
    replicas: list[Server], cluster: distributed.Client
) -> None:
    """(N, C) logits and class-index targets as dask arrays, chunked unlike each other and
    across columns: the targets follow the predictions' row chunks, the columns are joined,
    and value, per-sample losses, gradient and Hessian equal one client's evaluation of the
    whole batch (the mean's derivatives scaled by the total weight sum)."""
    rng = np.random.default_rng(7)
    rows, classes = 150_000, 3  # 450,000 logits: 4.5 times one request
    logits = rng.normal(size=(rows, classes))
    labels = rng.integers(0, classes, size=rows)
    predictions = da.from_array(logits, chunks=(40_000, 2))
    targets = da.from_array(labels, chunks=30_000)
    params = {"from_logits": True}
    result = lossd_dask.evaluate(
        replicas[0].url, "cross_entropy", predictions, targets, params=params,
        gradient=True, hessian=True,
    )  # fmt: skip
    with Client(urls=[s.url for s in replicas]) as whole:
        expected = whole.evaluate(
            "cross_entropy", logits, labels, params=params, gradient=True, hessian=True
        )
    assert result.loss == "cross_entropy" and result.params == expected.params
    assert result.n == rows and result.partitions == 4
    assert abs(result.value - expected.value) <= 1e-12 * expected.value
    assert result.weight_sum == expected.weight_sum
    assert result.gradient.chunks == ((40_000,) * 3 + (30_000,), (classes,))
    per_sample, gradient, hessian = da.compute(result.per_sample, result.gradient, result.hessian)
    np.testing.assert_allclose(per_sample, expected.per_sample, rtol=1e-12, atol=0)
    np.testing.assert_allclose(gradient, expected.gradient, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(hessian, expected.hessian, rtol=1e-12, atol=1e-18)


@pytest.mark.loss("mse")
def test_a_workers_error_reaches_the_caller_as_the_clients_exception(
    replicas: list[Server], cluster: distributed.Client
) -> None:
    """An unknown loss is refused by the server a worker asked: the caller gets the client's
    own UnknownLoss, its code and detail intact; mixing arrays and columns is refused before
    anything runs."""
    values = da.ones(10, chunks=5)
    with Client(replicas[0].url) as client, pytest.raises(UnknownLoss) as refused:
        lossd_dask.evaluate(client, "no_such_loss", values, values)
    assert refused.value.code == "unknown_loss" and "no_such_loss" in refused.value.detail
    frame = dd.from_pandas(pd.DataFrame({"p": np.ones(10)}), npartitions=2)
    with pytest.raises(TypeError, match="all dask arrays"):
        lossd_dask.evaluate(replicas[0].url, "mse", frame["p"], values)


@pytest.mark.loss("cox")
def test_a_batch_coupled_loss_is_not_cut_into_partitions(
    replicas: list[Server], cluster: distributed.Client
) -> None:
    """Cox's risk sets span the whole batch: over two partitions it has no partial results to
    merge, so it is refused with the reason before any partition is sent; over one partition
    it is one request's answer."""
    rng = np.random.default_rng(3)
    scores, times = rng.normal(size=40), rng.uniform(1.0, 5.0, size=40)
    with pytest.raises(ValueError, match="batch-coupled"):
        lossd_dask.evaluate(
            replicas[0].url, "survival:cox", da.from_array(scores, chunks=20),
            da.from_array(times, chunks=20),
        )  # fmt: skip
    whole = lossd_dask.evaluate(
        replicas[0].url, "cox", da.from_array(scores, chunks=40), da.from_array(times, chunks=40)
    )
    with Client(replicas[0].url) as client:
        assert whole.value == client.evaluate("cox", scores, times).value
