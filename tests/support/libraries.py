"""The reference libraries of LOSSES.md as float64 torch functions with autograd, for
``tests/test_differential.py``.

Terms, each defined once:

library reference
    ``reference(name, params, pred, targ)``: the per-sample losses ``l_i`` of the library call
    LOSSES.md names for one loss and parameter set, as a torch function of the (N, D)
    predictions (float64, differentiable), with the κ_i of SPEC section 4 and the label of the
    call. Where the library has a float64 torch implementation it is called
    (``torch.nn.functional``); where it has none, its formula is written out in torch float64
    following the library's source line by line:

    - Keras 3 (``keras.losses``): on the torch backend it cannot compute in float64.
      ``keras.src.backend.common.dtypes`` maps every 64-bit result type to 32 bits on any backend
      but TensorFlow (``BIT64_TO_BIT32_DTYPE``), so ``ops.mean`` casts its input to float32 even
      with ``floatx`` float64 (``log_cosh`` of float64 inputs is off by 2e-8 relative). Keras
      itself is called by ``keras_reference`` and compared at 1e-6; the 1e-9 comparison is with
      the same formula in torch float64.
    - optax (``sigmoid_focal_loss``, ``poly_loss_cross_entropy``, ``softmax_cross_entropy``,
      ``sigmoid_binary_cross_entropy``, ``kl_divergence_with_log_targets``,
      ``generalized_kl_divergence``, ``multiclass_sparsemax_loss``): the formulas of
      ``optax/losses/_classification.py`` (google-deepmind/optax at 2edbcbe), including the
      log-space ``log(1 − p_t)`` of ``sigmoid_focal_loss``.
    - optax's ``ranking_softmax_loss`` and ``ntxent``, Rax's pairwise and pointwise losses,
      Keras' ``circle`` and XGBoost's Cox and AFT likelihoods: their code in torch float64 here;
      the libraries themselves (JAX with x64, Keras, XGBoost's metrics) are called by
      ``tests/test_listwise_losses.py``.
    - scikit-learn (``mean_pinball_loss``, ``mean_tweedie_deviance``, ``log_loss``) and scipy
      (``jensenshannon``) have no autograd: ``direct_values`` calls them for the values, and the
      gradients are those of their formulas in torch (``sklearn.metrics._regression`` and
      ``scipy.spatial.distance``).
    - XGBoost's objectives are their gradient and Hessian formulas (``xgboost_derivatives``).
κ
    The normaliser of one sample in a mean: Σ_c cw_c·y_ic for the class-weighted losses (y
    unsmoothed; 0 for an ignored sample), 1 otherwise. ``mean = Σ w_i l_i / Σ w_i κ_i``.
index targets
    (N,) class indices for (N, C) predictions: ``rows`` holds them as one-hot rows (an ignored
    sample as an all-zero row), ``index`` as sent, for torch's index-target calls.
extra inputs
    The arrays a loss takes under ``inputs``: ``Targets.inputs`` holds them as float64 leaf
    tensors of their own shapes that record gradients, and a reference reads them as (N, D')
    rows, so that autograd of its reduced value gives the gradients with respect to them too
    (``input_gradients``). A loss that takes no targets (triplet_margin) has (N, 0) target rows;
    one that takes one label per sample (cosine_embedding) (N, 1).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.spatial.distance
import sklearn.metrics
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # the backend is chosen before the import

from service.losses import resolve
from tests.support.references import CASES, Array, class_weights, one_hot

keras.config.set_floatx("float64")
F = torch.nn.functional
Tensor = torch.Tensor
PerSample = Callable[[Tensor], Tensor]

CLASS_WEIGHTED = ("cross_entropy", "focal", "generalized_cross_entropy", "multi_margin")
KERAS_RTOL, KERAS_ATOL = 1e-6, 1e-8  # Keras computes its means in float32 (module docstring)
OPTAX_SOURCE = "google-deepmind/optax@2edbcbe optax/losses/_classification.py"


@dataclass(frozen=True)
class Targets:
    """The targets of one batch as the references take them (module docstring)."""

    rows: Array  # (N, D): one-hot rows for index targets, ignored samples all zero
    index: Array | None  # (N,) class indices as sent; None for same-shape targets
    ignored: Array  # (N,) bool
    # the extra inputs as leaf tensors of their own shapes (module docstring)
    inputs: dict[str, Tensor] = field(default_factory=dict)

    @property
    def tensor(self) -> Tensor:
        return torch.tensor(self.rows, dtype=torch.float64)

    def input_rows(self, name: str) -> Tensor:
        """An extra input as (N, D') rows (a view of its leaf tensor)."""
        leaf = self.inputs[name]
        return leaf.reshape(leaf.shape[0], -1)


def targets_of(
    pred: Array,
    targ: Array | None,
    params: dict[str, Any],
    inputs: dict[str, Array] | None = None,
    per_sample: bool = False,
) -> Targets:
    """The targets (``per_sample``: one label per sample, (N,) next to (N, D) predictions) and
    extra inputs of one batch as the references take them."""
    n = pred.shape[0]
    leaves = {
        name: torch.tensor(a, dtype=torch.float64, requires_grad=True)
        for name, a in (inputs or {}).items()
    }
    if targ is None:
        return Targets(np.zeros((n, 0)), None, np.zeros(n, dtype=bool), leaves)
    if targ.ndim == 1 and pred.ndim == 2 and not per_sample:
        ignore = params.get("ignore_index")
        rows = one_hot(targ, pred.shape[1], ignore)
        ignored = targ == ignore if ignore is not None else np.zeros(n, dtype=bool)
        return Targets(rows, targ, ignored, leaves)
    rows = targ.reshape(n, -1).astype(np.float64)
    return Targets(rows, None, np.zeros(n, dtype=bool), leaves)


@dataclass(frozen=True)
class Reference:
    """One loss's library reference on one batch (module docstring)."""

    label: str
    per_sample: PerSample  # (N, D) float64 tensor -> (N,)
    kappa: Array  # (N,)
    # the extra inputs' leaf tensors ``per_sample`` reads (autograd: their gradients)
    inputs: dict[str, Tensor] = field(default_factory=dict)
    coupled: bool = False  # l_i depends on other rows (``gradient_and_hessian``)


def rows_of(pred: Array) -> Tensor:
    """The predictions as an (N, D) float64 leaf tensor that records gradients."""
    return torch.tensor(pred.reshape(pred.shape[0], -1), dtype=torch.float64, requires_grad=True)


# --- building blocks -----------------------------------------------------------------------------


def _cw(targets: Targets, class_weight: object) -> Tensor:
    return torch.tensor(class_weights(targets.rows, class_weight), dtype=torch.float64)


def _kappa(name: str, targets: Targets, params: dict[str, Any]) -> Array:
    if name not in CLASS_WEIGHTED:
        return np.ones(targets.rows.shape[0])
    return np.asarray(targets.rows @ class_weights(targets.rows, params.get("class_weight")))


def _smoothed(targets: Targets, s: float) -> Tensor:
    """y' = (1 − s)·y + s/C for every sample that is not ignored, whatever its row sums to
    (torch's ``cross_entropy``, Keras' ``categorical_crossentropy``, optax); ignored samples
    stay all-zero rows."""
    y = targets.tensor
    c = y.shape[1]
    kept = torch.tensor(~targets.ignored, dtype=torch.float64)[:, None]
    return ((1 - s) * y + s / c) * kept


def _keras_probabilities(p: Tensor, epsilon: float) -> Tensor:
    """Keras' categorical probabilities: rows renormalised, then clipped to [ε, 1 − ε]."""
    return torch.clamp(p / p.sum(-1, keepdim=True), epsilon, 1 - epsilon)


def _softmax_log(z: Tensor) -> tuple[Tensor, Tensor]:
    logp = F.log_softmax(z, dim=-1)
    return logp, logp.exp()


def _hinge_labels(t: Tensor) -> Tensor:
    """keras ``convert_binary_labels_to_hinge``: a batch of {0, 1} labels becomes 2y − 1."""
    binary = bool(((t == 0) | (t == 1)).all())
    return 2 * t - 1 if binary else t


def _rel_entr(x: Tensor, m: Tensor) -> Tensor:
    """scipy.special.rel_entr(x, m) = x·log(x/m), 0 where x = 0, with a gradient that is 0 there."""
    positive = x > 0
    safe_x = torch.where(positive, x, torch.ones_like(x))
    safe_m = torch.where(positive, m, torch.ones_like(m))
    return torch.where(positive, safe_x * (torch.log(safe_x) - torch.log(safe_m)), 0.0)


def optax_log_one_minus_p_t(z: Tensor, y: Tensor) -> Tensor:
    """log(1 − p_t) of ``optax.sigmoid_focal_loss``, in log space as optax computes it."""
    y_prime = torch.where(y >= 0.5, y, 1.0 - y)
    x_prime = torch.where(y >= 0.5, -z, z)
    return (
        F.logsigmoid(x_prime)
        + torch.log(y_prime)
        + F.softplus(-x_prime + torch.log1p(-y_prime) - torch.log(y_prime))
    )


def optax_sigmoid_focal(z: Tensor, y: Tensor, alpha: float | None, gamma: float) -> Tensor:
    """``optax.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma)``, elementwise."""
    ce = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
    loss = ce * torch.exp(gamma * optax_log_one_minus_p_t(z, y))
    if alpha is None:
        return loss
    return (alpha * y + (1 - alpha) * (1 - y)) * loss


def optax_poly1(z: Tensor, y: Tensor, epsilon: float) -> Tensor:
    """``optax.poly_loss_cross_entropy(z, y, epsilon=epsilon)``, per row."""
    logp, p = _softmax_log(z)
    return -(y * logp).sum(-1) + epsilon * (y * (1 - p)).sum(-1)


def tweedie_deviance(mu: Tensor, y: Tensor, power: float) -> Tensor:
    """``sklearn.metrics._regression._mean_tweedie_deviance``, elementwise."""
    if power == 0:
        return (y - mu) ** 2
    if power == 1:
        safe = torch.where(y > 0, y, torch.ones_like(y))
        return 2 * (torch.where(y > 0, safe * torch.log(safe / mu), 0.0) - y + mu)
    if power == 2:
        return 2 * (torch.log(mu / y) + y / mu - 1)
    return 2 * (
        torch.clamp(y, min=0) ** (2 - power) / ((1 - power) * (2 - power))
        - y * mu ** (1 - power) / (1 - power)
        + mu ** (2 - power) / (2 - power)
    )


# torch's cosine_embedding_loss adds this to each squared norm (aten Loss.cpp, EPSILON: 1e-12
# as a float32; torch's answers on a zero row fit it, not 1e-12 itself)
TORCH_COSINE_EPSILON = float(np.float32(1e-12))


def cosine_embedding_formula(
    x1: Tensor, x2: Tensor, y: Tensor, margin: float, epsilon: float
) -> Tensor:
    """``torch.nn.functional.cosine_embedding_loss`` per pair, written out as aten's
    ``cosine_embedding_loss`` computes it, with ``epsilon`` for its fixed EPSILON."""
    prod = (x1 * x2).sum(-1)
    mag1 = (x1 * x1).sum(-1) + epsilon
    mag2 = (x2 * x2).sum(-1) + epsilon
    cos = prod / torch.sqrt(mag1 * mag2)
    zeros = torch.zeros_like(cos)
    return torch.where(y == 1, 1 - cos, zeros) + torch.where(
        y == -1, torch.clamp_min(cos - margin, 0), zeros
    )


def multi_margin_formula(x: Tensor, y: Tensor, cw: Tensor, power: int, margin: float) -> Tensor:
    """``torch.nn.functional.multi_margin_loss(x, k, p, margin, weight)`` per row, written out
    (torch has no double backward for it), target-weighted over the classes k of a soft row:
    Σ_k y_k·cw_k·Σ_{c≠k} max(0, margin − x_k + x_c)^p / C."""
    n, c = x.shape
    total = torch.zeros(n, dtype=torch.float64)
    for k in range(c):
        terms = torch.relu(margin - x[:, k : k + 1] + x) ** power
        others = torch.cat([terms[:, :k], terms[:, k + 1 :]], dim=1).sum(-1)
        total = total + y[:, k] * cw[k] * others / c
    return total


def sparsemax(z: Tensor) -> Tensor:
    """sparsemax of each row (the Euclidean projection onto the simplex), by sorting, with
    autograd: the threshold is a mean of the sorted scores in the support."""
    s, _ = torch.sort(z, dim=-1, descending=True)
    cumulative = s.cumsum(-1)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    size = (1 + k * s > cumulative).sum(-1, keepdim=True)
    tau = (cumulative.gather(-1, size - 1) - 1) / size
    return torch.clamp(z - tau, min=0.0)


def optax_multiclass_sparsemax(z: Tensor, y: Tensor) -> Tensor:
    """``optax.multiclass_sparsemax_loss(z, labels)`` per row, ``y`` the one-hot rows of the
    labels: Σ_j p_j·(z_j − z_y) over p_j ≠ 0, plus (1 − Σ_j p_j²)/2."""
    p = sparsemax(z)
    scores = z - (z * y).sum(-1, keepdim=True)
    return (p * torch.where(p != 0, scores, 0.0)).sum(-1) + 0.5 * (1 - (p * p).sum(-1))


def insightface_arcface_logits(x: Tensor, y: Tensor, s: float, m: float) -> Tensor:
    """insightface's ``ArcFace.forward`` (recognition/arcface_torch/losses.py, easy_margin
    false) on cosines ``x`` and one-hot rows ``y``, line by line: the target cosine c becomes
    c·cos m − sin θ·sin m where c > cos(π − m), else c − sin(π − m)·m; every logit times s."""
    c = (x * y).sum(-1)
    sin_theta = torch.sqrt(1.0 - torch.pow(c, 2))
    cos_theta_m = c * math.cos(m) - sin_theta * math.sin(m)
    final = torch.where(c > math.cos(math.pi - m), cos_theta_m, c - math.sin(math.pi - m) * m)
    return s * (x * (1 - y) + final[:, None] * y)


def label_counts(rows: Array) -> Tensor:
    """torch's multilabel targets (rows of class indices ended by −1) as (N, C) counts of each
    class before the row's first −1."""
    counts = np.zeros(rows.shape)
    for i, row in enumerate(rows):
        for v in row:
            if v < 0:
                break
            counts[i, int(v)] += 1
    return torch.tensor(counts, dtype=torch.float64)


def multilabel_margin_formula(x: Tensor, counts: Tensor) -> Tensor:
    """``torch.nn.functional.multilabel_margin_loss(x, y)`` per row, written out (torch has no
    double backward for it): Σ_j n_j Σ_{c: n_c = 0} max(0, 1 − x_j + x_c) / C, n the counts of
    ``label_counts``, as torch's loop over the list (a class listed twice counts twice)."""
    pairs = torch.relu(1 - x[:, :, None] + x[:, None, :])  # [i, j, c]
    weights = counts[:, :, None] * (counts == 0).to(x.dtype)[:, None, :]
    return (weights * pairs).sum((1, 2)) / x.shape[1]


def _sigmoid_if(p: Tensor, from_logits: bool) -> Tensor:
    return torch.sigmoid(p) if from_logits else p


def _one_minus_ratio(num: Tensor, den: Tensor) -> Tensor:
    """1 − num/den, and 0 for a row whose denominator is 0 (the empty-mask rule)."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, 1 - num / safe, 0.0)


# --- the references, one per loss ---------------------------------------------------------------

Builder = Callable[[Targets, dict[str, Any]], tuple[str, PerSample]]


def _regression(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        t = tg.tensor
        if name == "mse":
            return "torch F.mse_loss", lambda p: F.mse_loss(p, t, reduction="none").mean(-1)
        if name == "mae":
            return "torch F.l1_loss", lambda p: F.l1_loss(p, t, reduction="none").mean(-1)
        if name == "huber":
            d = prm.get("delta", 1.0)
            return "torch F.huber_loss", lambda p: F.huber_loss(
                p, t, reduction="none", delta=d
            ).mean(-1)
        if name == "smooth_l1":
            b = prm.get("beta", 1.0)
            return "torch F.smooth_l1_loss", lambda p: F.smooth_l1_loss(
                p, t, reduction="none", beta=b
            ).mean(-1)
        if name == "pseudo_huber":
            d = prm.get("delta", 1.0)
            return "closed form (XGBoost reg:pseudohubererror)", lambda p: (
                d**2 * (torch.sqrt(1 + ((p - t) / d) ** 2) - 1)
            ).mean(-1)
        if name == "log_cosh":
            # keras.losses.log_cosh: x + softplus(−2x) − log 2
            return "keras log_cosh in torch float64", lambda p: (
                (p - t) + F.softplus(-2.0 * (p - t)) - math.log(2.0)
            ).mean(-1)
        if name == "mape":
            eps = torch.tensor(prm.get("epsilon", 1e-7), dtype=torch.float64)
            return "keras mean_absolute_percentage_error in torch float64", lambda p: (
                100.0 * torch.abs((t - p) / torch.maximum(torch.abs(t), eps))
            ).mean(-1)
        if name == "msle":
            eps = prm.get("epsilon", 1e-7)
            return "keras mean_squared_logarithmic_error in torch float64", lambda p: (
                (
                    torch.log(torch.clamp(p, min=eps) + 1.0)
                    - torch.log(torch.clamp(t, min=eps) + 1.0)
                )
                ** 2
            ).mean(-1)
        if name == "pinball":
            a = prm.get("quantile", 0.5)
            return "sklearn mean_pinball_loss's formula in torch", lambda p: (
                a * torch.relu(t - p) + (1 - a) * torch.relu(p - t)
            ).mean(-1)
        if name == "poisson":
            kw = {
                "log_input": prm.get("log_input", False),
                "full": prm.get("full", False),
                "eps": prm.get("epsilon", 1e-7),
            }
            return "torch F.poisson_nll_loss", lambda p: F.poisson_nll_loss(
                p, t, reduction="none", **kw
            ).mean(-1)
        if name == "tweedie":
            pw = prm.get("power", 1.5)
            return "sklearn mean_tweedie_deviance's formula in torch", lambda p: tweedie_deviance(
                p, t, pw
            ).mean(-1)
        if name == "gamma":
            return "XGBoost reg:gamma (gamma-nloglik at mu = e^x) in torch", lambda p: (
                t * torch.exp(-p) + p
            ).mean(-1)
        if name == "cosine_similarity":
            eps = prm.get("epsilon", 1e-7)

            def cosine(p: Tensor) -> Tensor:
                u = p / torch.clamp(torch.linalg.vector_norm(p, dim=-1, keepdim=True), min=eps)
                v = t / torch.clamp(torch.linalg.vector_norm(t, dim=-1, keepdim=True), min=eps)
                return -(u * v).sum(-1)

            return "keras cosine_similarity in torch float64", cosine
        if name == "gaussian_nll":
            var = tg.input_rows("var")
            full, eps = prm.get("full", False), prm.get("eps", 1e-6)
            return "torch F.gaussian_nll_loss", lambda p: F.gaussian_nll_loss(
                p, t, var, full=full, eps=eps, reduction="none"
            ).mean(-1)
        if name == "triplet_margin":
            positive, negative = tg.input_rows("positive"), tg.input_rows("negative")
            kw = {k: prm[k] for k in ("margin", "p", "eps", "swap") if k in prm}
            return "torch F.triplet_margin_loss", lambda a: F.triplet_margin_loss(
                a, positive, negative, reduction="none", **kw
            )
        raise KeyError(name)

    return build


def _binary(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        t = tg.tensor
        logits = prm.get("from_logits", False)
        s = prm.get("label_smoothing", 0.0)
        y = t * (1 - s) + s / 2
        eps = prm.get("epsilon", 1e-7)
        if name == "binary_cross_entropy":
            pw = prm.get("pos_weight")
            pos = None if pw is None else torch.tensor(pw, dtype=torch.float64)
            if logits:
                return "torch F.binary_cross_entropy_with_logits", lambda z: (
                    F.binary_cross_entropy_with_logits(z, y, pos_weight=pos, reduction="none")
                ).mean(-1)
            weight = 1.0 if pos is None else pos

            def bce(p: Tensor) -> Tensor:
                c = torch.clamp(p, eps, 1 - eps)
                return (-(weight * y * torch.log(c) + (1 - y) * torch.log(1 - c))).mean(-1)

            return "keras binary_crossentropy in torch float64", bce
        if name == "binary_focal":
            gamma, alpha = prm.get("gamma", 2.0), prm.get("alpha")
            if logits:
                return "optax sigmoid_focal_loss in torch float64", lambda z: optax_sigmoid_focal(
                    z, y, alpha, gamma
                ).mean(-1)

            def focal(p: Tensor) -> Tensor:
                # keras binary_focal_crossentropy: bce of the clipped p, focal factor of p
                c = torch.clamp(p, eps, 1 - eps)
                bce = -(y * torch.log(c) + (1 - y) * torch.log(1 - c))
                p_t = y * p + (1 - y) * (1 - p)
                out = (1 - p_t) ** gamma * bce
                if alpha is not None:
                    out = (y * alpha + (1 - y) * (1 - alpha)) * out
                return out.mean(-1)

            return "keras binary_focal_crossentropy in torch float64", focal
        labels = _hinge_labels(t)
        if name == "hinge":
            return "keras hinge in torch float64", lambda p: torch.relu(1 - labels * p).mean(-1)
        if name == "squared_hinge":
            return "keras squared_hinge in torch float64", lambda p: (
                torch.relu(1 - labels * p) ** 2
            ).mean(-1)
        if name == "multilabel_soft_margin":
            cw = prm.get("weight")
            weight = None if cw is None else torch.tensor(cw, dtype=torch.float64)
            return "torch F.multilabel_soft_margin_loss", lambda z: F.multilabel_soft_margin_loss(
                z, t, weight=weight, reduction="none"
            )
        if name == "hinge_embedding":
            m = prm.get("margin", 1.0)
            return "torch F.hinge_embedding_loss", lambda p: F.hinge_embedding_loss(
                p, labels, margin=m, reduction="none"
            ).mean(-1)
        if name == "soft_margin":
            return "torch F.soft_margin_loss", lambda p: F.soft_margin_loss(
                p, labels, reduction="none"
            ).mean(-1)
        if name == "margin_ranking":
            second, m = tg.input_rows("input2"), prm.get("margin", 0.0)
            return "torch F.margin_ranking_loss", lambda p: F.margin_ranking_loss(
                p, second, t, margin=m, reduction="none"
            ).mean(-1)
        if name == "cosine_embedding":
            second, m = tg.input_rows("input2"), prm.get("margin", 0.0)
            epsilon = prm.get("epsilon", TORCH_COSINE_EPSILON)
            if epsilon == TORCH_COSINE_EPSILON:
                return "torch F.cosine_embedding_loss", lambda p: F.cosine_embedding_loss(
                    p, second, t[:, 0], margin=m, reduction="none"
                )
            return "torch's cosine_embedding_loss with another epsilon, in torch", (
                lambda p: cosine_embedding_formula(p, second, t[:, 0], m, epsilon)
            )
        raise KeyError(name)

    return build


def _multiclass(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        logits = prm.get("from_logits", name == "poly1_cross_entropy")
        eps = prm.get("epsilon", 1e-7)
        cw = _cw(tg, prm.get("class_weight"))
        s = prm.get("label_smoothing", 0.0)
        y = tg.tensor
        if name == "cross_entropy":
            if logits and tg.index is not None:
                kw = {
                    "weight": cw if prm.get("class_weight") is not None else None,
                    "ignore_index": prm.get("ignore_index")
                    if prm.get("ignore_index") is not None
                    else -100,
                    "label_smoothing": s,
                    "reduction": "none",
                }
                idx = torch.tensor(tg.index, dtype=torch.long)
                return "torch F.cross_entropy (index targets)", lambda z: F.cross_entropy(
                    z, idx, **kw
                )
            if logits:
                weight = cw if prm.get("class_weight") is not None else None
                return "torch F.cross_entropy (probability targets)", lambda z: F.cross_entropy(
                    z, y, weight=weight, label_smoothing=s, reduction="none"
                )
            ys = _smoothed(tg, s)
            return (
                "keras categorical_crossentropy in torch float64",
                lambda p: -(cw * ys * torch.log(_keras_probabilities(p, eps))).sum(-1),
            )
        if name == "focal":
            gamma, alpha = prm.get("gamma", 2.0), prm.get("alpha")
            a = 1.0 if alpha is None else alpha
            ys = _smoothed(tg, s)

            def focal(p: Tensor) -> Tensor:
                if logits:
                    logq, q = _softmax_log(p)
                else:
                    q = _keras_probabilities(p, eps)
                    logq = torch.log(q)
                return -(a * cw * ys * (1 - q) ** gamma * logq).sum(-1)

            return "keras categorical_focal_crossentropy in torch float64", focal
        if name == "generalized_cross_entropy":
            q = prm.get("q", 0.7)

            def gce(p: Tensor) -> Tensor:
                prob = torch.softmax(p, -1) if logits else torch.clamp(p, min=eps)
                return (cw * y * (1 - prob**q) / q).sum(-1)

            return "keras categorical_generalized_cross_entropy in torch float64", gce
        if name == "poly1_cross_entropy":
            ep = prm.get("epsilon_poly", 2.0)
            ys = _smoothed(tg, s)
            if logits:
                return "optax poly_loss_cross_entropy in torch float64", lambda z: optax_poly1(
                    z, ys, ep
                )

            def poly(p: Tensor) -> Tensor:
                c = _keras_probabilities(p, eps)
                return -(ys * torch.log(c)).sum(-1) + ep * (ys * (1 - c)).sum(-1)

            return "optax poly_loss_cross_entropy's formula on probabilities", poly
        if name == "simloss":
            c = tg.rows.shape[1]
            if prm.get("similarity") is not None:
                sim = torch.tensor(prm["similarity"], dtype=torch.float64)
            else:
                r = prm["ordinal_base"]
                sim = torch.tensor(
                    [[r ** abs(i - j) for j in range(c)] for i in range(c)], dtype=torch.float64
                )
            e = prm.get("epsilon", 1e-8)

            def simloss(p: Tensor) -> Tensor:
                prob = torch.softmax(p, -1) if logits else p
                return -(y * torch.log(prob @ sim.T + e)).sum(-1)

            return "SimLoss (Kobs et al. 2020) in torch float64", simloss
        if name == "categorical_hinge":
            return "keras categorical_hinge in torch float64", lambda p: torch.relu(
                ((1 - y) * p).max(-1).values - (y * p).sum(-1) + 1
            )
        if name in ("additive_margin_softmax", "additive_angular_margin_softmax"):
            angular = name == "additive_angular_margin_softmax"
            sc, m = (
                prm.get("scale", 64.0 if angular else 30.0),
                prm.get("margin", 0.5 if angular else 0.35),
            )
            label = tg.index if tg.index is not None else tg.rows.argmax(-1)
            idx = torch.tensor(label, dtype=torch.long)
            if angular:
                return (
                    "insightface ArcFace logits, torch F.cross_entropy",
                    lambda x: F.cross_entropy(
                        insightface_arcface_logits(x, y, sc, m), idx, reduction="none"
                    ),
                )
            return "torch F.cross_entropy(s·(cos − m·onehot(y)))", lambda x: F.cross_entropy(
                sc * (x - m * y), idx, reduction="none"
            )
        if name == "sparsemax":
            return (
                "optax multiclass_sparsemax_loss in torch float64",
                lambda z: optax_multiclass_sparsemax(z, y),
            )
        if name == "multilabel_margin":
            counts = label_counts(tg.rows)
            return "torch F.multilabel_margin_loss's formula", lambda x: multilabel_margin_formula(
                x, counts
            )
        if name == "multi_margin":
            power, margin = prm.get("p", 1), prm.get("margin", 1.0)
            return "torch F.multi_margin_loss's formula", lambda x: multi_margin_formula(
                x, y, cw, power, margin
            )
        raise KeyError(name)

    return build


def _distribution(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        logits = prm.get("from_logits", False)
        y = tg.tensor
        if name == "kl_divergence":
            if prm.get("log_target", False):
                y = torch.exp(y)  # torch's log_target: the targets are log P
            if prm.get("log_input", False):
                return "torch F.kl_div(x, P) (log-probabilities as given)", lambda x: F.kl_div(
                    x, y, reduction="none"
                ).sum(-1)
            if logits:
                return "torch F.kl_div(log_softmax(z), P)", lambda z: F.kl_div(
                    F.log_softmax(z, -1), y, reduction="none"
                ).sum(-1)
            eps = prm.get("epsilon", 1e-7)
            yc = torch.clamp(y, eps, 1.0)
            return "keras kl_divergence in torch float64", lambda p: (
                yc * torch.log(yc / torch.clamp(p, eps, 1.0))
            ).sum(-1)
        if name == "generalized_kl_divergence":
            log_y = torch.where(y == 0, 0.0, torch.log(torch.where(y == 0, 1.0, y)))
            return (
                "optax generalized_kl_divergence in torch float64",
                lambda x: (y * (log_y - x)).sum(-1) + (torch.exp(x) - y).sum(-1),
            )
        if name == "cauchy_schwarz_divergence":

            def cauchy_schwarz(p: Tensor) -> Tensor:
                q = torch.softmax(p, -1) if logits else p
                return (
                    -torch.log((y * q).sum(-1))
                    + 0.5 * torch.log((y * y).sum(-1))
                    + 0.5 * torch.log((q * q).sum(-1))
                )

            return "the Cauchy-Schwarz divergence formula in torch", cauchy_schwarz
        if name == "js_divergence":
            pt = y / y.sum(-1, keepdim=True)

            def js(p: Tensor) -> Tensor:
                q = torch.softmax(p, -1) if logits else p / p.sum(-1, keepdim=True)
                m = (pt + q) / 2
                return 0.5 * (_rel_entr(pt, m).sum(-1) + _rel_entr(q, m).sum(-1))

            return "scipy jensenshannon(P, Q)**2's formula in torch", js
        raise KeyError(name)

    return build


def _overlap(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        t = tg.tensor
        smooth, logits = prm.get("smooth", 1.0), prm.get("from_logits", False)
        if name == "dice":

            def dice(p: Tensor) -> Tensor:
                q = _sigmoid_if(p, logits)
                inter = (q * t).sum(-1)
                return _one_minus_ratio(2 * inter + smooth, q.sum(-1) + t.sum(-1) + smooth)

            return "the dice formula in torch", dice
        if name == "tversky":
            a, b = prm.get("alpha", 0.5), prm.get("beta", 0.5)

            def tversky(p: Tensor) -> Tensor:
                q = _sigmoid_if(p, logits)
                inter = (q * t).sum(-1)
                fp = (q * (1 - t)).sum(-1)
                fn = ((1 - q) * t).sum(-1)
                return _one_minus_ratio(inter + smooth, inter + a * fp + b * fn + smooth)

            return "the tversky formula in torch", tversky
        raise KeyError(name)

    return build


def rax_pairs(s: Tensor, y: Tensor, pair: Callable[[Tensor], Tensor]) -> Tensor:
    """Rax's ``pairwise_loss`` summed over each list: ``pair(s_j − s_k)`` where y_j > y_k."""
    d = s[:, :, None] - s[:, None, :]
    valid = y[:, :, None] > y[:, None, :]
    return torch.where(valid, pair(d), torch.zeros_like(d)).sum(dim=(1, 2))


def _ranking(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        y = tg.tensor
        if name == "ranking_softmax":
            return (
                "optax ranking_softmax_loss in torch float64",
                lambda s: -(y * torch.log_softmax(s, dim=-1)).sum(-1),
            )
        if name == "pairwise_logistic":
            return "rax pairwise_logistic_loss in torch float64", lambda s: rax_pairs(
                s, y, lambda d: torch.relu(-d) + torch.log1p(torch.exp(-torch.abs(d)))
            )
        if name == "pairwise_hinge":
            return "rax pairwise_hinge_loss in torch float64", lambda s: rax_pairs(
                s, y, lambda d: torch.relu(1.0 - d)
            )
        if name == "pointwise_sigmoid":
            c = torch.clamp(y, 0.0, 1.0)
            return "rax pointwise_sigmoid_loss in torch float64", lambda s: (
                torch.relu(s) - s * c + torch.log1p(torch.exp(-torch.abs(s)))
            ).sum(-1)
        raise KeyError(name)

    return build


def xgboost_cox(eta: Tensor, y: Tensor) -> Tensor:
    """XGBoost's ``cox-nloglik`` terms (Breslow) per sample: log Σ_{|y_j| ≥ |y_i|} e^{η_j} − η_i
    for an event, 0 for a censored sample."""
    at_risk = torch.abs(y)[None, :] >= torch.abs(y)[:, None]
    masked = torch.where(at_risk, eta[None, :].expand_as(at_risk), -torch.inf)
    return torch.where(y > 0, torch.logsumexp(masked, dim=1) - eta, torch.zeros_like(eta))


def _aft_pdf_cdf(z: Tensor, distribution: str) -> tuple[Tensor, Tensor]:
    """PDF and CDF of ``src/common/probability_distribution.h``."""
    if distribution == "normal":
        return torch.exp(-z * z / 2) / math.sqrt(2 * math.pi), 0.5 * (
            1 + torch.erf(z / math.sqrt(2))
        )
    w = torch.exp(z)
    if distribution == "logistic":
        return w / (1 + w) ** 2, w / (1 + w)
    return w * torch.exp(-w), 1 - torch.exp(-w)


def xgboost_aft(pred: Tensor, rows: Tensor, distribution: str, sigma: float) -> Tensor:
    """XGBoost's ``AFTLoss::Loss`` per sample (a negative upper bound for +inf), unclipped."""
    lower, upper = rows[:, 0], rows[:, -1]
    z = (torch.log(torch.where(lower > 0, lower, 1.0)) - pred) / sigma
    pdf, cdf_l = _aft_pdf_cdf(z, distribution)
    z_u = (torch.log(torch.where(upper > 0, upper, 1.0)) - pred) / sigma
    _, cdf_u = _aft_pdf_cdf(z_u, distribution)
    observed = -torch.log(
        torch.clamp(pdf / (sigma * torch.where(lower > 0, lower, 1.0)), min=1e-12)
    )
    cdf_u = torch.where(upper < 0, 1.0, cdf_u)
    cdf_l = torch.where(lower <= 0, 0.0, cdf_l)
    censored = -torch.log(torch.clamp(cdf_u - cdf_l, min=1e-12))
    return torch.where(lower == upper, observed, censored)


def _survival(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        y = tg.tensor
        if name == "cox":
            return "XGBoost cox-nloglik terms in torch float64", lambda p: xgboost_cox(
                p[:, 0], y[:, 0]
            )
        if name == "aft":
            dist, sigma = prm.get("distribution", "normal"), prm.get("sigma", 1.0)
            return "XGBoost AFTLoss in torch float64", lambda p: xgboost_aft(
                p[:, 0], y, dist, sigma
            )
        raise KeyError(name)

    return build


def optax_ntxent_terms(x: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """``optax.ntxent``'s terms by anchor row, its code in torch: cosine similarities with the
    squared norms clipped at float64's epsilon, the rows shifted by their maximum."""
    norm2 = (x * x).sum(-1, keepdim=True)
    unit = x / torch.sqrt(torch.clamp(norm2, min=float(np.finfo(np.float64).eps)))
    xcs = (unit[None, :, :] * unit[:, None, :]).sum(-1) / temperature
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    matches, diffs = same & ~eye, ~same
    xcs_diffs = torch.where(diffs, xcs, -torch.inf)
    xcs_matches = torch.where(matches, xcs, -torch.inf)
    top = torch.cat([xcs_diffs, xcs_matches], dim=-1).max(dim=1, keepdim=True).values.detach()
    numer = xcs_matches - top
    denom = torch.exp(xcs_diffs - top).sum(dim=1, keepdim=True) + torch.exp(numer)
    log_softm = numer - torch.log(denom)
    return -torch.where(matches, log_softm, torch.zeros_like(log_softm)).sum(dim=1)


def keras_circle(
    x: Tensor, labels: Tensor, gamma: float, margin: float, remove_diagonal: bool
) -> Tensor:
    """``keras.losses.circle``'s code in torch float64."""
    dist = torch.clamp(1 - x @ x.T, min=0.0)
    pos = labels[:, None] == labels[None, :]
    neg = ~pos
    if remove_diagonal:
        pos = pos & ~torch.eye(len(labels), dtype=torch.bool)
    pos_w = torch.clamp((margin + dist) * pos, min=0.0)
    neg_w = torch.clamp((1 + margin - dist) * neg, min=0.0)
    pos_wd = -gamma * pos_w * (margin - dist)
    neg_wd = gamma * neg_w * ((1 - margin) - dist)
    p_loss = torch.logsumexp(torch.where(pos, pos_wd, -torch.inf), dim=1)
    n_loss = torch.logsumexp(torch.where(neg, neg_wd, -torch.inf), dim=1)
    z = p_loss + n_loss
    finite = torch.isfinite(z)
    return torch.where(finite, F.softplus(torch.where(finite, z, 0.0)), 0.0)


def _embedding(name: str) -> Builder:
    def build(tg: Targets, prm: dict[str, Any]) -> tuple[str, PerSample]:
        assert tg.index is not None
        labels = torch.tensor(tg.index, dtype=torch.int64)
        if name == "ntxent":
            tau = prm.get("temperature", 0.07)
            return "optax ntxent in torch float64", lambda x: optax_ntxent_terms(x, labels, tau)
        if name == "circle":
            kw = {
                "gamma": prm.get("gamma", 80.0),
                "margin": prm.get("margin", 0.4),
                "remove_diagonal": prm.get("remove_diagonal", True),
            }
            return "keras circle in torch float64", lambda x: keras_circle(x, labels, **kw)
        raise KeyError(name)

    return build


_FAMILY_BUILDERS = {
    "regression": _regression,
    "binary": _binary,
    "multiclass": _multiclass,
    "distribution": _distribution,
    "overlap": _overlap,
    "ranking": _ranking,
    "survival": _survival,
    "embedding": _embedding,
}


_SOFTMAX = {"from_logits", "epsilon", "normalize"}
# The parameters each reference reads: one it does not read would be ignored silently.
HANDLED: dict[str, set[str]] = {
    "mse": set(),
    "mae": set(),
    "huber": {"delta"},
    "smooth_l1": {"beta"},
    "pseudo_huber": {"delta"},
    "log_cosh": set(),
    "mape": {"epsilon"},
    "msle": {"epsilon"},
    "pinball": {"quantile"},
    "poisson": {"log_input", "full", "epsilon"},
    "tweedie": {"power"},
    "gamma": set(),
    "cosine_similarity": {"epsilon"},
    "binary_cross_entropy": {"from_logits", "label_smoothing", "pos_weight", "epsilon"},
    "binary_focal": {"gamma", "alpha", "from_logits", "label_smoothing", "epsilon"},
    "hinge": set(),
    "squared_hinge": set(),
    "soft_margin": set(),
    "hinge_embedding": {"margin"},
    "gaussian_nll": {"full", "eps"},
    "triplet_margin": {"margin", "p", "eps", "swap"},
    "margin_ranking": {"margin"},
    "cosine_embedding": {"margin", "epsilon"},
    "multilabel_soft_margin": {"weight"},
    "cross_entropy": _SOFTMAX | {"label_smoothing", "class_weight", "ignore_index"},
    "focal": _SOFTMAX | {"gamma", "alpha", "label_smoothing", "class_weight", "ignore_index"},
    "generalized_cross_entropy": _SOFTMAX | {"q", "class_weight", "ignore_index"},
    "poly1_cross_entropy": _SOFTMAX | {"epsilon_poly", "label_smoothing"},
    "simloss": _SOFTMAX | {"similarity", "ordinal_base"},
    "categorical_hinge": set(),
    "multi_margin": {"p", "margin", "class_weight"},
    "sparsemax": set(),
    "additive_margin_softmax": {"scale", "margin"},
    "additive_angular_margin_softmax": {"scale", "margin"},
    "multilabel_margin": set(),
    "kl_divergence": _SOFTMAX | {"log_input", "log_target"},
    "generalized_kl_divergence": set(),
    "js_divergence": {"from_logits", "normalize"},
    "cauchy_schwarz_divergence": {"from_logits"},
    "dice": {"smooth", "from_logits"},
    "tversky": {"alpha", "beta", "smooth", "from_logits"},
    "ranking_softmax": set(),
    "pairwise_logistic": set(),
    "pairwise_hinge": set(),
    "pointwise_sigmoid": set(),
    "cox": set(),
    "aft": {"distribution", "sigma"},
    "ntxent": {"temperature"},
    "circle": {"gamma", "margin", "remove_diagonal"},
}


def reference(
    name: str,
    family: str,
    params: dict[str, Any],
    pred: Array,
    targ: Array | None,
    inputs: dict[str, Array] | None = None,
) -> Reference:
    """The library reference of one loss and parameter set on one batch (with its extra
    ``inputs``, whose gradients autograd gives through ``Reference.inputs``)."""
    unread = set(params) - HANDLED[name]
    if unread:
        raise KeyError(f"the library reference of {name} does not read {sorted(unread)}")
    case = CASES[name]
    if case.targ == "groups":  # labels of embeddings, not class indices
        n = pred.shape[0]
        tg = Targets(targ.reshape(n, 1).astype(np.float64), targ, np.zeros(n, dtype=bool))
    else:
        per_sample = resolve(name).targets == ("per_sample",)
        tg = targets_of(pred, targ, params, inputs, per_sample)
    label, fn = _FAMILY_BUILDERS[family](name)(tg, params)
    kappa = _kappa(name, tg, params)
    if case.kappa is not None:
        kappa = np.asarray(
            case.kappa(
                pred.reshape(pred.shape[0], -1),
                tg.index if case.targ == "groups" else tg.rows,
                params,
            )
        )
    if params.get("normalize") and not params.get("from_logits") and not params.get("log_input"):
        # ``normalize: true``: each probability row divided by its sum first (Keras' silent
        # renormalisation, opted into)
        inner = fn

        def fn(p: Tensor) -> Tensor:
            return inner(p / p.sum(-1, keepdim=True))

        label += " on rows divided by their sums"
    return Reference(label, fn, kappa, tg.inputs, resolve(name).batch_coupled)


# --- reductions and derivatives of a reference ---------------------------------------------------


def reduced(
    per_sample: Tensor,
    weight: Array,
    kappa: Array,
    reduction: str,
    sum_factor: float = 1.0,
    count_factor: float = 1.0,
) -> Tensor:
    """SPEC section 4's reduction of a reference's per-sample losses: ``sum = Σ w_i l_i`` and
    ``mean = sum / Σ w_i κ_i`` (0 when that is 0). Over elements (``reduce_over``) the sum
    counts ``sum_factor`` terms per row and the normaliser ``count_factor``."""
    w = torch.tensor(weight, dtype=torch.float64)
    total = (w * per_sample).sum() * sum_factor
    if reduction == "sum":
        return total
    norm = float(np.sum(weight * kappa)) * count_factor
    return total / norm if norm > 0 else total * 0.0


def input_gradients(
    scalar: Callable[[Tensor], Tensor], p0: Tensor, leaves: dict[str, Tensor]
) -> dict[str, Array]:
    """The gradients of a scalar function of the predictions with respect to a reference's
    extra inputs (``Reference.inputs``, the leaf tensors it reads), by autograd."""
    if not leaves:
        return {}
    grads = torch.autograd.grad(scalar(p0.detach()), list(leaves.values()))
    return {name: g.numpy() for name, g in zip(leaves, grads, strict=True)}


def gradient_and_hessian(
    scalar: Callable[[Tensor], Tensor], p0: Tensor, coupled: bool = False
) -> tuple[Array, Array]:
    """The gradient of a scalar function of the (N, D) predictions and the diagonal of its
    Hessian, by autograd and double backward. Where rows are independent (l_i depends on row i
    alone) column j of the Hessian diagonal is the derivative of Σ_i g_ij in p_ij; for a
    batch-coupled loss (``coupled``) each element's is taken alone."""
    p = p0.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(scalar(p), p, create_graph=True)
    h = torch.zeros_like(p)
    if g.requires_grad and coupled:
        for i in range(p.shape[0]):
            for j in range(p.shape[1]):
                (row,) = torch.autograd.grad(g[i, j], p, retain_graph=True, allow_unused=True)
                if row is not None:
                    h[i, j] = row[i, j]
    elif g.requires_grad:
        for j in range(p.shape[1]):
            (col,) = torch.autograd.grad(g[:, j].sum(), p, retain_graph=True, allow_unused=True)
            if col is not None:
                h[:, j] = col[:, j]
    return g.detach().numpy(), h.detach().numpy()


# --- the libraries themselves ------------------------------------------------------------------


def direct_values(name: str, params: dict[str, Any], pred: Array, targ: Array) -> Array | None:
    """The per-sample losses of the library's own call, where the reference is its formula
    (no autograd, or no double backward): scikit-learn's ``mean_pinball_loss`` and
    ``mean_tweedie_deviance`` on each row, scipy's ``jensenshannon(P, Q) ** 2``, torch's
    ``multi_margin_loss`` (target-weighted over the classes of a soft row) and
    ``multilabel_margin_loss``."""
    n = pred.shape[0]
    p2 = pred.reshape(n, -1)
    if name == "pinball":
        q = params.get("quantile", 0.5)
        return np.array(
            [
                sklearn.metrics.mean_pinball_loss(t, p, alpha=q)
                for p, t in zip(p2, targ.reshape(n, -1), strict=True)
            ]
        )
    if name == "tweedie":
        pw = params.get("power", 1.5)
        return np.array(
            [
                sklearn.metrics.mean_tweedie_deviance(t, p, power=pw)
                for p, t in zip(p2, targ.reshape(n, -1), strict=True)
            ]
        )
    if name == "multi_margin":
        tg = targets_of(pred, targ, params)
        x = torch.tensor(pred, dtype=torch.float64)
        cw = params.get("class_weight")
        weight = None if cw is None else _cw(tg, cw)
        kw = {"p": params.get("p", 1), "margin": params.get("margin", 1.0), "weight": weight}
        out = torch.zeros(pred.shape[0], dtype=torch.float64)
        for k in range(pred.shape[1]):
            at_k = torch.full((pred.shape[0],), k, dtype=torch.long)
            out += torch.tensor(tg.rows[:, k]) * F.multi_margin_loss(
                x, at_k, reduction="none", **kw
            )
        return out.numpy()
    if name == "multilabel_margin":
        x = torch.tensor(pred, dtype=torch.float64)
        y = torch.tensor(targ, dtype=torch.long)
        return F.multilabel_margin_loss(x, y, reduction="none").numpy()
    if name == "js_divergence":
        rows = targets_of(pred, targ, params).rows
        q = pred
        if params.get("from_logits"):
            q = np.exp(pred - pred.max(axis=1, keepdims=True))
        return np.asarray(scipy.spatial.distance.jensenshannon(rows, q, axis=1)) ** 2
    return None


def keras_reference(
    name: str, params: dict[str, Any], pred: Array, targ: Array
) -> PerSample | None:
    """Keras itself on the torch backend, for the losses LOSSES.md refers to Keras, with the
    parameters Keras has (None where it has no equivalent: class weights, ``ignore_index``,
    ``pos_weight``, a non-default ``epsilon``); compared at ``KERAS_RTOL`` (module docstring)."""
    losses = keras.losses
    tg = targets_of(pred, targ, params)
    t = tg.tensor
    logits = bool(params.get("from_logits", False))
    s = params.get("label_smoothing", 0.0)
    keras_free = {
        "class_weight",
        "ignore_index",
        "pos_weight",
        "epsilon",
        "log_input",
        "log_target",
        "normalize",
    }
    if keras_free & {k for k, v in params.items() if v is not None}:
        return None
    if name == "log_cosh":
        return lambda p: losses.log_cosh(t, p)
    if name == "mape":
        return lambda p: losses.mean_absolute_percentage_error(t, p)
    if name == "msle":
        return lambda p: losses.mean_squared_logarithmic_error(t, p)
    if name == "cosine_similarity":
        return lambda p: losses.cosine_similarity(t, p)
    if name == "hinge":
        return lambda p: losses.hinge(t, p)
    if name == "squared_hinge":
        return lambda p: losses.squared_hinge(t, p)
    if name == "binary_cross_entropy" and not logits:
        return lambda p: losses.binary_crossentropy(t, p, label_smoothing=s)
    if name == "binary_focal" and not logits:
        alpha = params.get("alpha")
        return lambda p: losses.binary_focal_crossentropy(
            t,
            p,
            apply_class_balancing=alpha is not None,
            alpha=0.25 if alpha is None else alpha,
            gamma=params.get("gamma", 2.0),
            label_smoothing=s,
        )
    if name == "cross_entropy" and not logits:
        return lambda p: losses.categorical_crossentropy(t, p, label_smoothing=s)
    if name == "focal" and not logits:
        alpha = params.get("alpha")
        return lambda p: losses.categorical_focal_crossentropy(
            t,
            p,
            alpha=1.0 if alpha is None else alpha,
            gamma=params.get("gamma", 2.0),
            label_smoothing=s,
        )
    if name == "generalized_cross_entropy" and not logits and tg.index is not None:
        idx = torch.tensor(tg.index, dtype=torch.long)
        q = params.get("q", 0.7)
        return lambda p: losses.categorical_generalized_cross_entropy(idx, p, q=q)
    if name == "categorical_hinge":
        return lambda p: losses.categorical_hinge(t, p)
    if name == "kl_divergence" and not logits:
        return lambda p: losses.kl_divergence(t, p)
    return None


def keras_result_dtype() -> str:
    """The dtype Keras promotes a float64 tensor to in its reductions (``ops.mean``)."""
    from keras.src.backend.common import dtypes

    return str(dtypes.result_type("float64", "float32"))


def xgboost_derivatives(
    name: str, params: dict[str, Any], pred: Array, targ: Array
) -> tuple[Array | None, Array | None] | None:
    """Gradient and Hessian of XGBoost's objective for the loss, per element, unweighted:
    ``reg:pseudohubererror`` (src/objective/regression_loss.h: z = ŷ − y,
    g = z/√(1 + (z/δ)²), h = δ²/((δ² + z²)·√(1 + (z/δ)²))), ``binary:logistic``
    (g = σ(z) − y, h = σ(1 − σ)), ``reg:gamma`` (src/objective/regression_obj.cu:
    g = 1 − y/e^ŷ, h = y/e^ŷ) and ``multi:softprob`` (g = p − y; its Hessian 2p(1 − p) is
    XGBoost's approximation, not the loss's, and is not compared)."""
    if name == "pseudo_huber":
        d = params.get("delta", 1.0)
        z = pred - targ
        root = np.sqrt(1 + (z / d) ** 2)
        return z / root, d**2 / ((d**2 + z**2) * root)
    if name == "gamma":
        r = targ * np.exp(-pred)
        return 1 - r, r
    if name == "binary_cross_entropy" and params == {"from_logits": True}:
        sig = 1 / (1 + np.exp(-pred))
        return sig - targ, sig * (1 - sig)
    if name == "cross_entropy" and params == {"from_logits": True}:
        e = np.exp(pred - pred.max(axis=1, keepdims=True))
        prob = e / e.sum(axis=1, keepdims=True)
        return prob - targets_of(pred, targ, params).rows, None
    return None


def quiet_torch_mean(fn: Callable[[], Tensor]) -> Tensor:
    """Call a torch loss whose ``reduction="mean"`` warns (``kl_div``: it divides by N·C)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn()
