"""Connectionist temporal classification, as torch.nn.CTCLoss (and Keras' CTC, from logits).

Predictions are log-probabilities (N, T, C), batch first (torch's are time first: send
``log_probs.transpose(0, 1)``); with ``from_logits`` they are logits and each time step's row is
log-softmaxed first. Targets are (N, S) label sequences padded past each sample's length,
integers (integral floats accepted): the first ``target_lengths[i]`` of row i are its labels,
each in [0, C) and not the blank; what follows them is ignored (any integers, -1 included).
``inputs.input_lengths`` (N,) says how many of the T steps sample i has (at most T),
``inputs.target_lengths`` (N,) how many labels (at most S); both are integers and not
differentiable.

l_i is torch's ``reduction="none"`` value, −log p(labels | steps), from the forward variables
α in log space. A sample whose labels cannot be aligned with its steps (L labels with r repeats
of a label need L + r steps) has p = 0 and l_i = ∞: a 422 naming the sample, or with
``zero_infinity`` loss 0 and gradient 0, as torch's.

Reductions: ``sum`` is Σ w_i·l_i; ``mean`` is torch's, each l_i divided by its target length
(at least 1) and then the weighted mean over the batch, Σ w_i·l_i/max(L_i, 1) / Σ w_i
(``mean_by_target_length: false``: the plain Σ w_i·l_i / Σ w_i, Keras' mean).

Derivatives, per time step t < T_i, with γ_t(c) = Σ_{s: l'_s = c} α_t(s)β_t(s) / (p·y_t(c)) the
posterior probability that the alignment emits c at t (α and β both include step t's emission):
the gradient is torch's, e^{x_tc} − γ_t(c), and the Hessian diagonal its derivative,
e^{x_tc} − γ_t(c)(1 − γ_t(c)). With log-probabilities that sum to 1 over each step (a
log_softmax's) that gradient is the exact gradient with respect to the logits beneath them,
what torch's autograd hands back through log_softmax. For log-probabilities taken as free
numbers the derivatives of l_i alone would be −γ and −γ(1 − γ): torch's gradient differs from
them by e^x, and so does this one. With ``from_logits`` both are exact with respect to the
logits sent: p_tc − γ_t(c) and p_tc(1 − p_tc) − γ_t(c)(1 − γ_t(c)), p = softmax. Steps past
T_i have derivative 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ..errors import InvalidArray, OutOfDomain, ShapeMismatch
from ..jit import Array, RowArrays, block_range, driver, inline, scalar
from ._spec import (
    ComputeDtype,
    ExtraInput,
    Kernel,
    LossParams,
    Memo,
    Prepared,
    kernel_threads,
    memoized,
    readonly,
)
from ._stable import row_factor

# The memo key of a batch's targets as int64 label rows (``prepare``), which ``prepare_inputs``
# checks against the target lengths.
TARGETS_KEY = ("ctc", "targets")
# integers past this are refused before the cast to int64 (1e300 has no int64 to become)
INTEGER_LIMIT = 2.0**62


class CTCParams(LossParams):
    """(N, T, C) log-probabilities, (N, S) padded labels, `inputs.input_lengths` and
    `inputs.target_lengths`."""

    min_rank: ClassVar[int] = 3
    max_rank: ClassVar[int] = 3
    inputs: ClassVar[tuple[ExtraInput, ...]] = (
        ExtraInput(
            "input_lengths",
            "(N,) integers: the time steps of each sample, at most T",
            ("rows",),
            differentiable=False,
        ),
        ExtraInput(
            "target_lengths",
            "(N,) integers: the labels of each sample, at most S (the rest of its row is padding)",
            ("rows",),
            differentiable=False,
        ),
    )
    host_fields: ClassVar[frozenset[str]] = frozenset({"mean_by_target_length"})

    blank: int = Field(0, ge=0, description="the class index of the blank; < C")
    zero_infinity: bool = Field(
        False,
        description="an impossible alignment (infinite loss) counts as loss 0 with gradient 0 "
        "instead of a 422",
    )
    from_logits: bool = Field(
        False, description="the predictions are logits: each step's row is log-softmaxed first"
    )
    mean_by_target_length: bool = Field(
        True,
        description="reduction mean divides each sample's loss by its target length (at least "
        "1) before the mean over samples, as torch; false: the plain mean over samples, as Keras",
    )

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        return np.full((2, 2, 2), math.log(0.5)), np.ones((2, 1))

    @classmethod
    def warm_up_inputs(cls, predictions: Array) -> dict[str, Array]:
        return {"input_lengths": np.full(2, 2), "target_lengths": np.ones(2, dtype=np.int64)}

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Any = None, indices: bool = False
    ) -> int:
        """The targets' int64 copy and the checks' masks (per target element, bounded by the
        predictions' elements only when S ≤ T·C: ``scratch_bytes`` counts the rest), and the
        mean factor."""
        return cls.check_bytes * rows * columns + 16 * rows

    @classmethod
    def scratch_bytes(cls, predictions: tuple[int, ...], targets: Any) -> int:
        """Per thread, the forward variables α (T × (2S + 1) float64), two rows of β and the
        per-step sums; plus the int64 label rows and their masks (S per sample)."""
        if len(predictions) != 3 or targets is None or not targets.rows:
            return 0
        t, c = predictions[1], predictions[2]
        s = int(targets.elements) // int(targets.rows)
        per_thread = 8 * (t * (2 * s + 1) + 2 * (2 * s + 1) + c + t)
        return kernel_threads() * per_thread + 12 * s * int(targets.rows)

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Any = None, targets: Any = None) -> int:
        """Forward and backward over T × (2S + 1) states a sample, a few steps each: with C ≥ 2
        classes T·(2S + 1) ≤ T·C·(S + 1), so 8·N·(T·C)·(S + 1) bounds it, S the targets'
        declared width (unknown: S ≤ T ≤ T·C). A long label row on a short batch is not cheap:
        this keeps it off the event loop."""
        width = columns
        if targets is not None and targets.rows:
            width = int(targets.elements) // int(targets.rows)
        return 8 * rows * columns * (width + 1)

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """(N, S) integer targets as int64 label rows; C for the kernel, which sees each
        sample's T steps as one (T·C) row."""
        n, _, classes = predictions.shape
        if targets.ndim != 2 or targets.shape[0] != n:
            raise ShapeMismatch(
                f"targets have shape {list(targets.shape)}; {name} takes (N, S) label rows "
                f"padded past each target length, N = {n} as the predictions",
                errors=[(("targets",), "must have shape (N, S)")],
            )
        if self.blank >= classes:
            raise OutOfDomain(
                f"blank is {self.blank}; predictions have {classes} classes, so it must be "
                f"less than {classes}",
                errors=[(("params", "blank"), f"must be < {classes}")],
            )
        labels = memoized(memo, TARGETS_KEY, lambda: integers(targets, "targets"))
        kernel_params = {**self.kernel_params(), "classes": float(classes)}
        return Prepared(labels, kernel_params)

    def prepare_inputs(
        self, predictions: Array, inputs: Mapping[str, Array], dtype: ComputeDtype, memo: Memo
    ) -> dict[str, Array]:
        """The lengths as int64, checked against T and S, and the labels within each target
        length against C, the blank and the sample's steps."""
        _, steps, classes = predictions.shape
        labels: Array = memo[TARGETS_KEY]
        width = labels.shape[1]
        lengths = {}
        for x, most in (("input_lengths", steps), ("target_lengths", width)):
            array = memoized(memo, ("ctc", x), partial(integers, inputs[x], f"inputs.{x}"))
            bad = (array < 0) | (array > most)
            if bad.any():
                i = int(np.argmax(bad))
                what = (
                    "T, the predictions' time steps"
                    if x == "input_lengths"
                    else "S, the targets' columns"
                )
                raise OutOfDomain(
                    f"inputs.{x}[{i}] is {int(array[i])}; lengths must be in [0, {most}] ({what})",
                    errors=[(("inputs", x, i), f"must be in [0, {most}]")],
                )
            lengths[x] = array
        self._check_labels(labels, lengths["input_lengths"], lengths["target_lengths"], classes)
        return lengths

    def _check_labels(self, labels: Array, steps: Array, counts: Array, classes: int) -> None:
        """Each label within its target length in [0, C) and not the blank; each sample's
        labels alignable with its steps, unless ``zero_infinity``."""
        inside = np.arange(labels.shape[1]) < counts[:, None]
        bad = inside & ((labels < 0) | (labels >= classes) | (labels == self.blank))
        if bad.any():
            i, j = (int(k) for k in np.unravel_index(int(np.argmax(bad)), bad.shape))
            label = int(labels[i, j])
            why = "the blank" if label == self.blank else f"outside [0, {classes})"
            raise OutOfDomain(
                f"targets[{i}][{j}] is {label}, {why}: labels within a target length are class "
                f"indices in [0, {classes}) other than the blank ({self.blank})",
                errors=[(("targets", i, j), "must be a class index other than the blank")],
            )
        if self.zero_infinity or not labels.size:
            return
        repeats = (inside[:, 1:] & (labels[:, 1:] == labels[:, :-1])).sum(axis=1)
        short = counts + repeats > steps
        if short.any():
            i = int(np.argmax(short))
            raise OutOfDomain(
                f"sample {i} cannot be aligned: its {int(counts[i])} labels ({int(repeats[i])} "
                f"repeated) need at least {int(counts[i] + repeats[i])} time steps and "
                f"inputs.input_lengths[{i}] is {int(steps[i])}, so its loss is infinite; send "
                "zero_infinity: true to count such samples as 0",
                errors=[(("inputs", "input_lengths", i), "too short for the sample's labels")],
            )

    def mean_factor(self, inputs: Mapping[str, Array], dtype: ComputeDtype) -> Array | None:
        """1 / max(target length, 1): torch's mean."""
        if not self.mean_by_target_length:
            return None
        return readonly(1.0 / np.maximum(inputs["target_lengths"], 1).astype(dtype))


def integers(array: Array, field: str) -> Array:
    """``array`` as read-only int64, after checking it holds integers (integral floats
    accepted); 422 at ``field`` with the first index that is not one."""
    if array.dtype.kind == "f":
        bad = (array != np.floor(array)) | (np.abs(array) > INTEGER_LIMIT)
        if bad.any():
            where = [int(k) for k in np.unravel_index(int(np.argmax(bad)), array.shape)]
            raise InvalidArray(
                f"{field}{where} is {float(array[tuple(where)])!r}; {field} are integers",
                errors=[((*field.split("."), *where), "must be an integer")],
            )
    return readonly(np.ascontiguousarray(array, dtype=np.int64))


@inline
def log_add(a: float, b: float) -> float:
    """log(e^a + e^b), −∞ for two −∞."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


@inline
def label_of(targ: Array, i: int, s: int, blank: int) -> int:
    """l'_s, the extended label sequence: the blank at even s, label (s − 1)/2 at odd s."""
    return blank if s % 2 == 0 else int(targ[i, s // 2])


@scalar
def ctc_sample(
    pred: Array, targ: Array, i: int, steps: int, count: int, classes: int, blank: int,
    from_logits: bool, zero_infinity: bool, f: float, grad: Array, hess: Array,
) -> float:  # fmt: skip
    r"""$l_i = -\log p$ of sample ``i`` ($T_i$ = ``steps``, $L$ = ``count`` labels), and its
    derivatives times ``f`` into ``grad`` and ``hess`` when they are not empty."""
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    width = 2 * count + 1
    # each step's log-normaliser: its log-sum-exp with from_logits, else 0
    norm = np.zeros(max(steps, 1))
    if from_logits:
        for t in range(steps):
            top = -math.inf
            for c in range(classes):
                top = max(top, pred[i, t * classes + c])
            acc = 0.0
            for c in range(classes):
                acc += math.exp(pred[i, t * classes + c] - top)
            norm[t] = top + math.log(acc)
    nll = math.inf
    alpha = np.full((max(steps, 1), width), -math.inf)
    if steps == 0:
        nll = 0.0 if count == 0 else math.inf
    else:
        alpha[0, 0] = pred[i, blank] - norm[0]
        if count > 0:
            alpha[0, 1] = pred[i, label_of(targ, i, 1, blank)] - norm[0]
        for t in range(1, steps):
            for s in range(width):
                label = label_of(targ, i, s, blank)
                a = alpha[t - 1, s]
                if s >= 1:
                    a = log_add(a, alpha[t - 1, s - 1])
                if s >= 2 and label != blank and label != label_of(targ, i, s - 2, blank):
                    a = log_add(a, alpha[t - 1, s - 2])
                if a != -math.inf:
                    a += pred[i, t * classes + label] - norm[t]
                alpha[t, s] = a
        last = alpha[steps - 1, width - 1]
        if width >= 2:
            last = log_add(last, alpha[steps - 1, width - 2])
        nll = -last
    infinite = nll == math.inf
    value = 0.0 if infinite and zero_infinity else nll
    if not (want_g or want_h):
        return value
    for j in range(grad.shape[1] if want_g else hess.shape[1]):
        if want_g:
            grad[i, j] = 0.0
        if want_h:
            hess[i, j] = 0.0
    if infinite and zero_infinity:
        return value
    beta = np.full(width, -math.inf)
    after = np.full(width, -math.inf)  # β of the step after
    occupancy = np.empty(classes)
    for t in range(steps - 1, -1, -1):
        for s in range(width):
            label = label_of(targ, i, s, blank)
            if t == steps - 1:
                b = 0.0 if s >= width - 2 else -math.inf
            else:
                b = after[s]
                if s + 1 < width:
                    b = log_add(b, after[s + 1])
                if s + 2 < width and label != blank and label != label_of(targ, i, s + 2, blank):
                    b = log_add(b, after[s + 2])
            if b != -math.inf:
                b += pred[i, t * classes + label] - norm[t]
            beta[s] = b
        for c in range(classes):
            occupancy[c] = -math.inf
        for s in range(width):
            label = label_of(targ, i, s, blank)
            occupancy[label] = log_add(occupancy[label], alpha[t, s] + beta[s])
        for c in range(classes):
            x = pred[i, t * classes + c] - norm[t]
            gamma = math.exp(occupancy[c] + nll - x)
            if want_g:
                grad[i, t * classes + c] = (math.exp(x) - gamma) * f
            if want_h:
                # d(e^x)/dx is e^x for log-probabilities, p(1 − p) for logits
                e = math.exp(x)
                slope = e * (1.0 - e) if from_logits else e
                hess[i, t * classes + c] = (slope - gamma * (1.0 - gamma)) * f
        for s in range(width):
            after[s] = beta[s]
    return value


@scalar
def ctc_rows(
    k: int, rows: int, io: RowArrays, params: tuple[Array, Array, float, bool, bool, float]
) -> None:
    r"""Block ``k`` of ``ctc_batch``: each sample's forward-backward (``ctc_sample``).
    Reference: ``torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), ..., reduction="none")``."""
    pred, targ, w, scale, loss, grad, hess = io
    input_lengths, target_lengths, blank, zero_infinity, from_logits, classes = params
    n = pred.shape[0]
    c = int(classes)
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        loss[i] = ctc_sample(
            pred, targ, i, int(input_lengths[i]), int(target_lengths[i]), c, int(blank),
            from_logits, zero_infinity, f, grad, hess,
        )  # fmt: skip


ctc_batch = driver(
    ctc_rows, "input_lengths", "target_lengths", "blank", "zero_infinity", "from_logits", "classes"
)


KERNEL = Kernel(CTCParams, ctc_batch)
