"""One evaluation as requests: split into row pieces that fit the server's limits, and the
pieces' answers merged into the result one request over the whole batch gives.

Why the merge is exact: every reduction is a sum over rows. A piece's answer carries its
``weight_sum`` (the mean's normaliser, Σ w_i·κ_i over its rows) and, asked with reduction
``sum``, its total Σ w_i·l_i. The batch's sum is the sum of the pieces' totals and its mean is
that over the sum of their weight sums, 0 when that is 0, as the server computes it. Per-sample
losses do not depend on the reduction, and the derivatives of a sum are the pieces' derivatives
of their sums; those of the mean are the same divided by the batch's weight sum, which is what
the server multiplies them by (a mean's derivative of one piece is divided by that piece's
weight sum instead, so a split mean is asked as a sum). Pieces start at multiples of the
server's 4096-row summation blocks, so their block sums are the whole batch's.

A loss whose mean weighs each sample by a factor of its own (``mean_factor`` in ``GET /losses``:
ctc's 1 / target length) has a sum that is not its mean's numerator: its split mean is asked of
the pieces as means and merged as Σ_k mean_k·W_k / W, piece k's derivatives scaled by W_k / W,
equal to one request's to rounding rather than to the bit.

What this does not reproduce: the one rule that looks at a whole batch, ``hinge`` and
``squared_hinge`` refusing targets with both 0 and -1, is checked piece by piece.

What is never split: a batch-coupled loss (``batch_coupled`` in ``GET /losses``: Cox's risk
sets, the pairs of ntxent and circle), where a sample's loss depends on every other row of the
batch. Its batch is sent whole; if the server will not take it, the ``TooLarge`` says so.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import AnswerError, TooLarge
from ._wire import INPUT_GRADIENTS, Array, Body, Options, Sink, Transport, encode, header_bytes

# The server's defaults (LOSSD_MAX_ELEMENTS, LOSSD_MAX_BODY_BYTES): it does not publish its
# limits, so the client starts from these and lowers them when a 413 says they are lower.
DEFAULT_MAX_ELEMENTS = 33_554_432
DEFAULT_MAX_BODY_BYTES = 268_435_456
# A connection cut while sending a body larger than this is taken for a refusal of its size
# (``Job.cut``); a smaller body cut off is something else, and the error goes to the caller.
CUT_FLOOR_BYTES = 1 << 16
# Rows the server sums in one block (service/reductions.py); pieces start at multiples of it.
BLOCK_ROWS = 4096

_ELEMENTS = re.compile(r"has more than (\d+) elements")
_BODY_BYTES = re.compile(r"larger than (\d+) bytes")


@dataclass(frozen=True, eq=False)
class Result:
    """The answer to one evaluation, whether it took one request or several.

    ``value`` is None for reduction ``none``; ``per_sample`` (N,), ``gradient`` and ``hessian``
    (the predictions' shape) are None when not asked for, in the compute dtype (float64 unless
    float32 was asked for or the inputs were half precision); ``input_gradients``, when asked
    for, holds the gradient with respect to each differentiable extra input by its name (the
    input's shape; empty for a loss without extra inputs). ``requests`` is how many requests it
    took (more than 1 when the batch was split to fit the server's limits).
    """

    loss: str
    reduction: str
    value: float | None
    weight_sum: float
    n: int
    per_sample: Array | None
    gradient: Array | None
    hessian: Array | None
    params: Mapping[str, Any]
    reduce_over: str = "samples"
    requests: int = 1
    input_gradients: Mapping[str, Array] | None = None


class Limits:
    """What the client knows of the server's limits: the ones it was given, or the server's
    defaults, lowered when a 413 names a lower one."""

    def __init__(self, max_elements: int | None, max_body_bytes: int | None) -> None:
        self.max_elements = max_elements or DEFAULT_MAX_ELEMENTS
        self.max_body_bytes = max_body_bytes or DEFAULT_MAX_BODY_BYTES
        self._lock = threading.Lock()

    def lower(self, *, elements: int | None = None, body_bytes: int | None = None) -> None:
        with self._lock:
            if elements is not None:
                self.max_elements = max(1, min(self.max_elements, elements))
            if body_bytes is not None:
                self.max_body_bytes = max(1, min(self.max_body_bytes, body_bytes))


@dataclass(frozen=True)
class Piece:
    """Rows ``start`` to ``stop`` of a job's batch, sent as one request."""

    job: Job
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.job.rows


class Job:
    """One evaluation: its arrays (as sent), options, the output arrays its pieces' answers are
    written into, and the pieces' scalars until they are merged."""

    def __init__(
        self, name: str, arrays: dict[str, Array], options: Options, transport: Transport
    ) -> None:
        self.name = name
        self.arrays = arrays
        self.options = options
        self.transport = transport
        self.rows = arrays["predictions"].shape[0]
        # whether the loss is batch-coupled (never split); None until the client needs to know
        self.coupled: bool | None = None
        # whether its mean weighs each sample by a factor of its own (ctc): a split mean is
        # then asked as means and merged as Σ_k mean_k·W_k / W (to rounding, not to the bit)
        self.factored = False
        self._outputs: dict[str, Array] = {}
        self._answers: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()

    # --- splitting ---------------------------------------------------------------------------

    def splittable(self) -> bool:
        """Rows can be split only when every array has the batch's rows (otherwise the server's
        422 shape_mismatch is the answer, from one request)."""
        return all(a.shape[0] == self.rows for a in self.arrays.values())

    def rows_per_piece(self, limits: Limits) -> int:
        """The most rows one request may carry under ``limits``, a multiple of the server's
        summation block when it is at least one block."""
        widths = [int(np.prod(a.shape[1:])) for a in self.arrays.values()]
        row_bytes = sum(
            w * a.dtype.itemsize for w, a in zip(widths, self.arrays.values(), strict=True)
        )
        room = limits.max_body_bytes - header_bytes(self.options.document(), self.arrays) - 64
        if self.transport == "json":  # base64: 4 characters for every 3 bytes
            room = room * 3 // 4
        rows = max(1, min(limits.max_elements // max(widths), room // max(row_bytes, 1)))
        return rows - rows % BLOCK_ROWS if rows >= BLOCK_ROWS else rows

    def pieces(self, limits: Limits, start: int = 0, stop: int | None = None) -> list[Piece]:
        """Rows ``start`` to ``stop`` (the whole batch by default) as pieces that fit."""
        stop = self.rows if stop is None else stop
        if not self.splittable() or self.coupled or stop - start <= 1:
            return [Piece(self, start, stop)]
        step = self.rows_per_piece(limits)
        return [Piece(self, s, min(stop, s + step)) for s in range(start, stop, step)] or [
            Piece(self, start, stop)
        ]

    def resplit(self, piece: Piece, error: TooLarge, limits: Limits) -> list[Piece]:
        """The piece in smaller pieces after the server refused it (413), having learnt the
        limit the refusal names; empty when splitting cannot help (one row, or another 413).
        A batch-coupled loss's batch cannot be split: the refusal is raised again, saying so."""
        if self.coupled:
            raise self.unsplittable(error)
        if piece.rows <= 1 or not self.splittable():
            return []
        found = None
        if error.code == "too_many_elements":
            found = _ELEMENTS.search(error.detail)
            widest = max(a[piece.start : piece.stop].size for a in self.arrays.values())
            limits.lower(elements=int(found[1]) if found else widest // 2)
        elif error.code == "payload_too_large":
            found = _BODY_BYTES.search(error.detail)
            size = self.body(piece).length
            limits.lower(body_bytes=int(found[1]) if found else size // 2)
        elif error.code != "memory_budget":
            return []
        smaller = self.pieces(limits, piece.start, piece.stop)
        # memory_budget, or a limit that should have fit: halve (the request budget is not
        # published either, and the process budget depends on what else the server holds)
        return smaller if len(smaller) > 1 else self._halves(piece)

    def cut(self, piece: Piece, limits: Limits) -> list[Piece]:
        """The piece in halves after the connection broke while its body was sent or before its
        answer arrived; empty when that cannot be the body's size.

        A server refusing a body for its size (413 payload_too_large) answers before reading it
        and closes the connection; the answer is often lost with it (asyncio always loses it).
        A large body cut off is taken as such a refusal: the body limit is lowered below it and
        the halves are sent. Were it a network failure, the halves merge to the same result.
        """
        size = self.body(piece).length
        if piece.rows <= 1 or not self.splittable() or self.coupled or size <= CUT_FLOOR_BYTES:
            return []
        limits.lower(body_bytes=size // 2)
        smaller = self.pieces(limits, piece.start, piece.stop)
        return smaller if len(smaller) > 1 else self._halves(piece)

    def unsplittable(self, error: TooLarge) -> TooLarge:
        """The server's refusal of a batch-coupled loss's batch, which no split can help."""
        return TooLarge(
            error.status,
            error.code,
            f"{error.detail}; {self.name} is batch-coupled (a sample's loss depends on every row "
            f"of the batch), so its {self.rows} rows cannot be split across requests: send a "
            "smaller batch, or raise the server's limits (LOSSD_MAX_ELEMENTS, "
            "LOSSD_MAX_BODY_BYTES, LOSSD_MAX_REQUEST_BYTES)",
            error.errors,
        )

    def _halves(self, piece: Piece) -> list[Piece]:
        half = piece.start + max(1, piece.rows // 2)
        if half - piece.start >= BLOCK_ROWS:
            half -= (half - piece.start) % BLOCK_ROWS
        return [Piece(self, piece.start, half), Piece(self, half, piece.stop)]

    # --- one piece's request and answer ------------------------------------------------------

    def body(self, piece: Piece) -> Body:
        """The piece's request: the rows of every array (views, no copy); a piece of a split
        mean asks for its sum (see the module docstring)."""
        arrays = self.arrays  # whole: as given, so that the server sees mismatched shapes
        if not piece.whole:
            arrays = {k: a[piece.start : piece.stop] for k, a in arrays.items()}
        split_mean = not piece.whole and self.options.reduction == "mean" and not self.factored
        return encode(self.transport, self.options.document("sum" if split_mean else None), arrays)

    def sink(self, piece: Piece) -> Sink:
        """Where the piece's answer arrays go: its rows of the job's outputs, allocated when the
        first answer says their dtype."""

        def target(name: str, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Array:
            if shape[:1] != (piece.rows,):
                raise AnswerError(
                    f"the answer's {name} has shape {list(shape)}, not {piece.rows} rows"
                )
            with self._lock:
                out = self._outputs.get(name)
                if out is None:
                    out = self._outputs[name] = np.empty((self.rows, *shape[1:]), dtype=dtype)
            if out.dtype != dtype or out.shape[1:] != shape[1:]:
                raise AnswerError(f"the answers' {name} arrays disagree in dtype or width")
            return out[piece.start : piece.stop]

        return target

    def record(self, piece: Piece, doc: dict[str, Any]) -> None:
        """Keep a piece's answer (its arrays are already in the outputs)."""
        if doc.get("n") != piece.rows:
            raise AnswerError(
                f"the answer counts n = {doc.get('n')!r} rows, {piece.rows} were sent"
            )
        with self._lock:
            self._answers.append((piece.start, doc))

    # --- the result --------------------------------------------------------------------------

    def result(self) -> Result:
        """The pieces' answers as one result (see the module docstring)."""
        answers = [doc for _, doc in sorted(self._answers, key=lambda a: a[0])]
        first = answers[0]
        value = first.get("value")
        weight_sum = float(first["weight_sum"])
        if len(answers) > 1 and self.factored and self.options.reduction == "mean":
            value, weight_sum = self._merge_means()
        elif len(answers) > 1:
            merged = merge(
                self.options.reduction,
                [float(a["value"]) for a in answers if a.get("value") is not None],
                [float(a["weight_sum"]) for a in answers],
                float32=self._float32(),
            )
            value, weight_sum = merged.value, merged.weight_sum
            if merged.scale is not None:
                for out in self._derivatives():
                    np.multiply(out, out.dtype.type(merged.scale), out=out)
        return Result(
            loss=str(first.get("loss", self.name)),
            reduction=self.options.reduction,
            value=None if value is None else float(value),
            weight_sum=weight_sum,
            n=self.rows,
            per_sample=self._outputs.get("per_sample"),
            gradient=self._outputs.get("gradient"),
            hessian=self._outputs.get("hessian"),
            params=first.get("params", {}),
            reduce_over=str(first.get("reduce_over", "samples")),
            requests=len(answers),
            input_gradients=self._input_gradients(first),
        )

    def _input_gradients(self, first: dict[str, Any]) -> dict[str, Array] | None:
        """The gradients with respect to the extra inputs, each assembled from the pieces'
        rows; None when not asked for."""
        if not self.options.input_gradients:
            return None
        prefix = f"{INPUT_GRADIENTS}."
        sent = first.get(INPUT_GRADIENTS)
        names = list(sent) if isinstance(sent, dict) else []
        return {name: self._outputs[prefix + name] for name in names}

    def _float32(self) -> bool:
        """Whether the server computes this evaluation in float32."""
        return computes_float32(self.options.dtype, [a.dtype for a in self.arrays.values()])

    def _derivatives(self) -> list[Array]:
        """The output arrays a mean scales: the gradient, the Hessian diagonal and the extra
        inputs' gradients."""
        return [
            out
            for name, out in self._outputs.items()
            if name in ("gradient", "hessian") or name.startswith(f"{INPUT_GRADIENTS}.")
        ]

    def _merge_means(self) -> tuple[float, float]:
        """A split mean of a loss with a factor per sample (``factored``), each piece asked as a
        mean: the batch's mean is Σ_k mean_k·W_k / W and piece k's derivatives are scaled by
        W_k / W (W_k its weight sum, W theirs)."""
        weight_sum = math.fsum(float(doc["weight_sum"]) for _, doc in self._answers)
        total = math.fsum(
            float(doc["value"]) * float(doc["weight_sum"]) for _, doc in self._answers
        )
        value = total / weight_sum if weight_sum > 0 else 0.0
        for start, doc in self._answers:
            share = float(doc["weight_sum"]) / weight_sum if weight_sum > 0 else 0.0
            for out in self._derivatives():
                part = out[start : start + int(doc["n"])]
                np.multiply(part, out.dtype.type(share), out=part)
        return float(np.float32(value)) if self._float32() else value, weight_sum


@dataclass(frozen=True)
class Merged:
    """Pieces' scalars merged: the batch's value (None for reduction ``none``) and weight sum,
    and ``scale``, what the pieces' derivatives of their sums are multiplied by to give a
    mean's (None when they stand as they are)."""

    value: float | None
    weight_sum: float
    scale: float | None


def merge(
    reduction: str, totals: Sequence[float], weight_sums: Sequence[float], *, float32: bool
) -> Merged:
    """The exact merge of pieces each evaluated as a sum (a split mean is asked of every piece
    as a sum, see the module docstring): totals and weight sums added exactly (``math.fsum``,
    whatever their order or grouping), a mean recomputed as the server computes it. Shared by
    split batches, streams (``Client.evaluate_stream``) and dask partitions."""
    weight_sum = math.fsum(weight_sums)
    if reduction == "none":
        return Merged(None, weight_sum, None)
    total = math.fsum(totals)
    if reduction == "sum":
        return Merged(total, weight_sum, None)
    scale = 1.0 / weight_sum if weight_sum > 0 else 0.0
    value = total / weight_sum if weight_sum > 0 else 0.0
    if float32:
        value = float(np.float32(value))
    return Merged(value, weight_sum, scale)


def computes_float32(dtype: str | None, input_dtypes: Iterable[Any]) -> bool:
    """Whether the server computes an evaluation in float32 (its rule: asked for, or
    half-precision inputs and no dtype), from the inputs' dtypes."""
    if dtype is not None:
        return dtype == "float32"
    return any(str(kind) == "float16" for kind in input_dtypes)
