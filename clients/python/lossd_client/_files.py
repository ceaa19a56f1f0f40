"""Arrays read from files a batch of rows at a time, so that a file of any size is evaluated
in bounded memory: ``.npy`` (memory-mapped: a batch is a view of the file), ``.csv`` (numbers
only, an optional header line; one column is an (N,) array, several an (N, C) one) and
``.parquet`` (its numeric columns, the same way; needs pyarrow, the ``parquet`` extra).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ._wire import Array

SUFFIXES = (".npy", ".csv", ".parquet")


@dataclass
class Source:
    """A file of rows: how many (None until read, for CSV), how wide, and its batches."""

    path: Path
    rows: int | None
    width: int
    _batches: Any  # (rows per batch) -> Iterator[Array]

    def batches(self, rows: int) -> Iterator[Array]:
        """The file's rows, ``rows`` at a time (the last batch may be shorter)."""
        batches: Iterator[Array] = self._batches(rows)
        return _exactly(batches, rows)


def open_source(path: str | os.PathLike[str]) -> Source:
    """The file as a ``Source``, by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy(path)
    if suffix == ".csv":
        return _csv(path)
    if suffix == ".parquet":
        return _parquet(path)
    raise ValueError(f"{path}: not one of {', '.join(SUFFIXES)}")


def _npy(path: Path) -> Source:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim not in (1, 2):
        raise ValueError(f"{path}: {array.ndim} dimensions; lossd takes (N,) or (N, C)")

    def batches(rows: int) -> Iterator[Array]:
        for start in range(0, array.shape[0], rows):
            yield array[start : start + rows]

    width = array.shape[1] if array.ndim == 2 else 1
    return Source(path, int(array.shape[0]), width, batches)


def _is_header(line: bytes) -> bool:
    try:
        float(line.split(b",", 1)[0])
    except ValueError:
        return True
    return False


def _csv(path: Path) -> Source:
    with path.open("rb") as f:
        first = f.readline()
    header = _is_header(first)
    width = len(first.split(b","))

    def batches(rows: int) -> Iterator[Array]:
        with path.open("rb") as f:
            if header:
                f.readline()
            while lines := [line.decode() for line in islice(f, rows)]:
                array = np.loadtxt(lines, delimiter=",", ndmin=2, dtype=np.float64)
                yield array[:, 0] if array.shape[1] == 1 else array

    return Source(path, None, width, batches)


def _parquet(path: Path) -> Source:
    try:
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ValueError(
            f"{path}: reading .parquet needs pyarrow (pip install 'lossd-client[parquet]')"
        ) from None
    file = parquet.ParquetFile(path)
    width = len(file.schema_arrow.names)

    def batches(rows: int) -> Iterator[Array]:
        for batch in file.iter_batches(batch_size=rows):
            columns = [c.to_numpy(zero_copy_only=False) for c in batch.columns]
            yield columns[0] if len(columns) == 1 else np.column_stack(columns)

    return Source(path, int(file.metadata.num_rows), width, batches)


def _exactly(batches: Iterator[Array], rows: int) -> Iterator[Array]:
    """The same rows in batches of exactly ``rows`` (the last may be shorter): files whose
    reader yields other sizes (Parquet row groups) stay in step with each other."""
    held: list[Array] = []
    count = 0
    for batch in batches:
        if not held and len(batch) == rows:
            yield batch
            continue
        held.append(batch)
        count += len(batch)
        while count >= rows:
            joined = np.concatenate(held) if len(held) > 1 else held[0]
            yield joined[:rows]
            rest = joined[rows:]
            held, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield np.concatenate(held) if len(held) > 1 else held[0]
