"""``docs/losses.md``, the loss catalogue for readers, generated from the registry.

``render()`` writes every loss's formula, parameters, aliases, derivatives and reference, grouped
by family, after the conventions all losses share; ``lossd docs`` prints it and ``make docs``
writes the file. ``tests/test_losses_doc.py`` fails when the committed file drifts.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import orjson

from .losses import REGISTRY, LossSpec
from .losses._aliases import alias_conventions
from .losses._spec import Family

# What each family's losses take and how their derivatives read; the headings are the anchors
# the README links to.
FAMILIES: dict[Family, tuple[str, str]] = {
    "regression": (
        "Regression",
        """\
Predictions and targets have the same shape, `(N,)` or `(N, D)`. Except for
`cosine_similarity` and `triplet_margin`, each loss is an elementwise function ℓ(ŷ, y) of one
prediction and its target, usually of the residual r = ŷ − y, and l_i is its mean over the D
columns of row i. The derivatives given below are ℓ's own, per element; the returned gradient
and Hessian are them divided by D and scaled for the reduction (see
[Gradient and Hessian](#gradient-and-hessian)). `gaussian_nll` also takes the variances under
`inputs.var`, and `triplet_margin` takes anchors with `inputs.positive` and `inputs.negative`
rows and no targets (see [Extra named arrays](#extra-named-arrays)).""",
    ),
    "binary": (
        "Binary and multilabel",
        """\
Predictions and targets have the same shape: `(N,)` for one binary label per sample, `(N, D)` for
D independent labels (multilabel), and l_i is the mean over the D columns.

- `binary_cross_entropy` and `binary_focal` take targets in [0, 1] (soft labels allowed) and
  predictions that are probabilities, or logits with `from_logits: true`, where p = σ(z). Label
  smoothing replaces each target by y′ = y(1 − s) + s/2. `binary_cross_entropy`'s `pos_weight`
  P multiplies the positive term: one number for every column, or one per column.
- `hinge`, `squared_hinge`, `soft_margin` and `hinge_embedding` take raw scores (distances for
  `hinge_embedding`) and labels t in {−1, 1}, or in {0, 1} with 0 meaning −1; a batch holding
  both 0 and −1 is a 422 because it is ambiguous.
- `multilabel_soft_margin` always takes logits, and targets in [0, 1]; its `weight` w_c
  multiplies each column's term: one number for every column, or one per column.
- `margin_ranking` and `cosine_embedding` compare pairs: the predictions x₁ with a second array
  x₂ under `inputs.input2`, labels exactly ±1 (elementwise for `margin_ranking`; one per row,
  `(N,)`, for `cosine_embedding`).""",
    ),
    "multiclass": (
        "Multiclass",
        """\
Predictions are `(N, C)`: probabilities, or logits with `from_logits: true` (p = softmax(z),
computed with log-sum-exp). Targets are `(N, C)` one-hot or soft rows (non-negative), or `(N,)`
class indices: integers (integral floats accepted) in [0, C). Index targets stay indices (no
one-hot rows are made): the kernels read 1 for a sample's class and 0 for the others, the values
of its one-hot row, so the two forms give the same response to the last bit.

- **Probabilities** (`from_logits: false`) are checked to lie in [0, 1]; `cross_entropy`, `focal` and
  `poly1_cross_entropy` renormalise each row to sum 1 and then clip it to [ε, 1 − ε];
  `generalized_cross_entropy` and `simloss` take the rows as given (the former floors them at ε,
  because p^q has an infinite slope at 0). `categorical_hinge` and `multi_margin` take scores:
  any real numbers.
- **Label smoothing** is y′ = (1 − s)·y + s·(Σ_k y_k)/C: the usual s/C for one-hot and soft rows,
  which sum to 1.
- **`ignore_index`**: a sample whose index target equals it becomes an all-zero row, so it has
  loss 0, gradient 0 and normaliser κ_i = 0, exactly as PyTorch ignores it.
- **`class_weight`** is a list of C non-negative weights cw_c, or `"balanced"`:
  cw_c = n / (C·n_c) from the batch itself, where n_c is the (fractional, for soft targets) count
  of class c among the samples not ignored and n = Σ_c n_c; a class absent from the batch gets 0.
  The response's `params` shows the weights used. With class weights the mean divides by
  Σ_i w_i·κ_i with κ_i = Σ_c cw_c·y_ic (see [Reductions](#sample-weights-and-reductions)).
- **`sparsemax`**, **`additive_margin_softmax`** and **`additive_angular_margin_softmax`**
  take scores (cosine similarities for the last two) and one target class a row: class indices
  or one-hot rows (soft rows are a 422).
- **`multilabel_margin`** takes scores and PyTorch's multilabel targets instead: an `(N, C)`
  array whose row i lists sample i's classes as integers in [0, C), ended by the first −1. The
  entries after it are ignored but, as PyTorch checks, must also lie in [−1, C); a class listed
  twice counts twice.""",
    ),
    "distribution": (
        "Distribution",
        """\
Divergences between a target distribution P (the targets, one row per sample) and the predicted
distribution Q (the predictions): `(N, C)` rows, targets as soft rows or `(N,)` class indices.
l_i is a sum over the C classes. `generalized_kl_divergence` compares unnormalised measures: its
predictions are log Q as given (any real numbers) and its targets any non-negative P, whatever
each row sums to. `cauchy_schwarz_divergence` is unchanged when P or Q is scaled, so it too takes
rows of any sum (probabilities in [0, 1], or logits with `from_logits: true`).""",
    ),
    "sequence": (
        "Sequence",
        """\
Predictions are `(N, T, C)`, batch first: T steps of C log-probabilities (or logits with
`from_logits: true`) per sample, the only rank-3 arrays lossd takes (every other loss answers a
rank-3 batch with a 422). Targets are `(N, S)` label rows padded past each sample's length, and
the lengths come under `inputs`: `input_lengths` (N,) steps of the T and `target_lengths` (N,)
labels of the S, integers (integral floats accepted), not differentiable. The gradient and
Hessian have the predictions' shape, 0 past each sample's steps. The kernel holds
T × (2S + 1) forward variables per sample while it runs (per compute thread), counted in the
request's memory budget.""",
    ),
    "overlap": (
        "Overlap",
        """\
Soft-mask overlap losses for segmentation, computed over the last axis: each row of an `(N, D)`
batch is one mask of D elements, and a rank-1 batch is N one-element masks. Targets are in
[0, 1]; with `from_logits: true` the sigmoid is applied elementwise (binary masks). A row whose
denominator is 0 (two empty masks with `smooth` 0) has loss, gradient and Hessian 0.""",
    ),
    "ranking": (
        "Ranking",
        """Learning-to-rank losses of optax and Rax. A **sample is one list**: row i of the `(N, L)`
predictions holds the scores of a list's L items, row i of the `(N, L)` targets their relevance
labels (any real numbers for `ranking_softmax`, graded relevance for the pairwise losses, clipped
to [0, 1] by `pointwise_sigmoid`). `per_sample` is the library's loss of that one list, a sum
over its items or its ordered pairs (j, k) with y_j > y_k, so `sum` is the library's
`reduce_fn=jnp.sum` over the batch. `mean` is its default `reduce_fn=jnp.mean`: it divides by
Σ_i w_i·κ_i with κ_i = 1 for `ranking_softmax` (a mean over lists), L for `pointwise_sigmoid` (over
items) and the number of ordered pairs of list i for the pairwise losses (over pairs; a list
whose labels are all equal has none, and a batch without pairs has mean 0). `sample_weight` weighs
lists; the gradient and Hessian are per item, of the reduced value. Lists are independent of each
other, so a batch of lists may be split across requests like any other.""",
    ),
    "survival": (
        "Survival",
        """XGBoost's survival objectives, on margins: predictions are `(N,)`, one margin ŷ a sample (a log
hazard ratio for `cox`, a predicted log time for `aft`). `cox` takes `(N,)` times, negative for a
right-censored sample (XGBoost's labels); `aft` takes `(N, 2)` rows [lower, upper] of each time's
interval, or `(N,)` observed times, where a right-censored time (upper bound +∞, which JSON cannot
write and no wire format accepts) is sent with a **negative upper bound** (−1). `cox` is
**batch-coupled** (see [Batch-coupled losses](#batch-coupled-losses)): a sample is one event with
its risk set, the whole batch.""",
    ),
    "embedding": (
        "Embedding",
        """Contrastive and metric-learning losses of a batch of embeddings: predictions are `(N, D)`, one
embedding a row, and targets `(N,)` group labels (integers; integral floats accepted): two rows
of one label are a positive pair, of two labels a negative pair, and a row is never paired with
itself. A sample is one row as the anchor of its pairs, so these losses are **batch-coupled**
(see [Batch-coupled losses](#batch-coupled-losses)); their cost grows as N²·D.""",
    ),
}

# Derivatives and rules a user needs that the registry entries do not carry; keys are loss names
# (a test checks each names a registered loss).
DETAILS: dict[str, str] = {
    "mse": "∂ℓ/∂ŷ = 2r, ∂²ℓ/∂ŷ² = 2.",
    "mae": "∂ℓ/∂ŷ = sign(r) (0 at r = 0), ∂²ℓ/∂ŷ² = 0.",
    "huber": "∂ℓ/∂ŷ = r for |r| ≤ δ, else δ·sign(r); ∂²ℓ/∂ŷ² = 1 for |r| ≤ δ, else 0.",
    "smooth_l1": (
        "∂ℓ/∂ŷ = r/β for |r| < β, else sign(r); ∂²ℓ/∂ŷ² = 1/β for |r| < β, else 0. "
        "With β = 0 the loss is |r|."
    ),
    "pseudo_huber": (
        "With q = √(1 + (r/δ)²): ∂ℓ/∂ŷ = r/q, ∂²ℓ/∂ŷ² = q^(−3), XGBoost's "
        "`reg:pseudohubererror` gradient and Hessian."
    ),
    "log_cosh": (
        "∂ℓ/∂ŷ = tanh r, ∂²ℓ/∂ŷ² = 1 − tanh² r; computed without overflow for any finite r."
    ),
    "mape": "∂ℓ/∂ŷ = 100·sign(r)/max(|y|, ε), ∂²ℓ/∂ŷ² = 0.",
    "msle": (
        "With u = log(1 + max(ŷ, ε)) − log(1 + max(y, ε)): ∂ℓ/∂ŷ = 2u/(1 + ŷ), "
        "∂²ℓ/∂ŷ² = 2(1 − u)/(1 + ŷ)² for ŷ > ε, and both 0 where the floor is active (the "
        "derivative of the clipped expression, as Keras)."
    ),
    "pinball": (
        "∂ℓ/∂ŷ = 1 − α for r > 0, −α for r < 0, 0 at r = 0; ∂²ℓ/∂ŷ² = 0 (α is `quantile`)."
    ),
    "poisson": (
        "Rates: ∂ℓ/∂ŷ = 1 − y/(ŷ + ε), ∂²ℓ/∂ŷ² = y/(ŷ + ε)². Log-rates (`log_input`): "
        "∂ℓ/∂ŷ = e^ŷ − y, ∂²ℓ/∂ŷ² = e^ŷ. The `full` term does not depend on ŷ. Targets must be "
        "non-negative counts and, without `log_input`, predictions non-negative rates (PyTorch "
        "computes NaN there); a violation is a 422 `out_of_domain`."
    ),
    "tweedie": (
        "ŷ is the mean μ; p = 0 is the squared error, p = 1 Poisson, p = 2 gamma, with their "
        "limits of the formula. scikit-learn's domain checks are a 422 `out_of_domain`: "
        "predictions > 0 unless p = 0, targets ≥ 0 for 1 ≤ p < 2, targets > 0 for p ≥ 2."
    ),
    "gamma": (
        "ŷ is a margin, the log of the mean μ = e^ŷ, as XGBoost hands it to a custom objective; "
        "targets must be positive (a 422 otherwise, as XGBoost refuses them). "
        "∂ℓ/∂ŷ = 1 − y·e^(−ŷ) and ∂²ℓ/∂ŷ² = y·e^(−ŷ) > 0 are `reg:gamma`'s gradient and "
        "Hessian. ℓ is `gamma-nloglik` (dispersion 1) without that metric's floor μ ≥ 1e-6; the "
        "gamma deviance 2(y/μ − log(y/μ) − 1) = 2(ℓ − 1 − log y) has twice these derivatives."
    ),
    "gaussian_nll": (
        "With v = max(σ², eps): ∂ℓ/∂ŷ = r/v, ∂²ℓ/∂ŷ² = 1/v; `input_gradients.var` is "
        "½(1/v − r²/v²), summed over a row's outputs when they share one variance, and passes "
        "the clamp as in PyTorch (below eps it is the derivative at eps: PyTorch clamps a copy "
        "under `no_grad`). A negative variance is a 422 (PyTorch raises). r²/v is formed as "
        "(r/v)·r, so residuals past 1e154 are answered where the quotient is finite."
    ),
    "cosine_similarity": "l_i sums over the row rather than averaging, and lies in [−1, 1].",
    "triplet_margin": (
        "A request sends no `targets` (sending them is a 422). With v = a − p + ε (ε added to "
        "every difference, as PyTorch's `pairwise_distance`): ∂‖v‖_p/∂a_j = "
        "sign(v_j)|v_j|^(p−1)/‖v‖^(p−1), 0 for a zero row (PyTorch's); the anchor's gradient is "
        "∇d(a, p) − ∇d(a, n) where the hinge is active, the positive's −∇d(a, p) and the "
        "negative's ∇d(a, n) in `input_gradients`. With `swap`, where d(p, n) < d(a, n) it "
        "replaces it (its gradient goes to the positive and negative), and at a tie the two "
        "share the gradient half and half, as PyTorch's `minimum`. Distances are computed from "
        "the differences divided by their row's max, so rows up to the float range are "
        "answered (PyTorch's p = 2 norm overflows from about 1e154)."
    ),
    "binary_cross_entropy": (
        "From logits z, with P = `pos_weight`: ∂l/∂z = (1 + (P − 1)y′)σ(z) − P·y′ and "
        "∂²l/∂z² = (1 + (P − 1)y′)σ(z)(1 − σ(z)), divided by D. From probabilities: "
        "∂l/∂p = −P·y′/p + (1 − y′)/(1 − p), ∂²l/∂p² = P·y′/p² + (1 − y′)/(1 − p)², divided by D, "
        "and 0 where clipping to [ε, 1 − ε] is active."
    ),
    "binary_focal": (
        "With soft labels (label smoothing) the loss is α_t(1 − p_t)^γ·BCE(y′, p), as both "
        "references compute it, which is −α_t(1 − p_t)^γ log p_t for hard labels; on "
        "probabilities only the cross-entropy uses the clipped p, as in Keras."
    ),
    "hinge": "∂ℓ/∂ŷ = −t where 1 − t·ŷ > 0, else 0 (also at the margin); ∂²ℓ/∂ŷ² = 0.",
    "squared_hinge": (
        "With m = 1 − t·ŷ: ∂ℓ/∂ŷ = −2t·m and ∂²ℓ/∂ŷ² = 2t² where m > 0, else both 0."
    ),
    "soft_margin": (
        "∂ℓ/∂ŷ = −t·σ(−t·ŷ), ∂²ℓ/∂ŷ² = σ(t·ŷ)σ(−t·ŷ); finite for any finite score (PyTorch's "
        "log1p(exp(−t·ŷ)) overflows past t·ŷ ≈ −709). Labels {0, 1} are read as 2y − 1, as "
        "for the hinges, where PyTorch would take a label 0 as it is (log 2): send ±1 for "
        "PyTorch's answer to those."
    ),
    "hinge_embedding": (
        "∂ℓ/∂ŷ = 1 for t = 1; for t = −1, −1 where m − ŷ > 0, else 0 (also at the margin); "
        "∂²ℓ/∂ŷ² = 0. The predictions are usually distances (PyTorch's use: a pairwise "
        "distance and whether the pair is similar); any real number is accepted, and for t = 1 "
        "the loss is ŷ itself, negative where ŷ is, as in PyTorch."
    ),
    "margin_ranking": (
        "∂ℓ/∂x₁ = −t and `input_gradients.input2` ∂ℓ/∂x₂ = t where −t(x₁ − x₂) + m > 0, else "
        "both 0 (also at the margin: ties with m = 0, where PyTorch's clamp passes −t); "
        "∂²ℓ/∂x₁² = 0. Labels must be exactly ±1 (PyTorch reads any other value as it is)."
    ),
    "cosine_embedding": (
        "With n_k = √(‖x_k‖² + ε), u = x₁/n₁, v = x₂/n₂: ∂cos/∂x₁ = (v − cos·u)/n₁, "
        "∂²cos/∂x₁_j² = (3cos·u_j² − 2u_j v_j − cos)/n₁², and `input_gradients.input2` "
        "∂cos/∂x₂ = (u − cos·v)/n₂; the loss's derivatives are their negatives for t = 1 and "
        "themselves for t = −1 where cos > m (0 at and below the margin). ε is PyTorch's EPSILON "
        "as PyTorch adds it, 1e-12 rounded to float32. A row whose squared norm reaches 1e290 is "
        "divided by its max first, so rows up to the float range are answered (PyTorch's "
        "product of the two squared norms overflows from about 1e77)."
    ),
    "multilabel_soft_margin": (
        "∂l/∂z_c = w_c((1 − y)σ(z) − y·σ(−z))/C, ∂²l/∂z_c² = w_c·σ(z)σ(−z)/C. "
        "`binary_cross_entropy` with `from_logits` and no weights is the same loss. Rank-1 "
        "predictions are N samples of one class each, as for the whole family, where PyTorch "
        "reads a 1-D input as one sample of C classes: send it as (1, C) for PyTorch's answer."
    ),
    "cross_entropy": (
        "From logits, with W = Σ_c cw_c·y′_c: ∂l/∂z_j = W·p_j − cw_j·y′_j and "
        "∂²l/∂z_j² = W·p_j(1 − p_j). With index targets and logits this is PyTorch's "
        "`cross_entropy`, its weighted `mean` included."
    ),
    "focal": (
        "From logits the log-softmax is not clipped (Keras also clips the softmax to "
        "[ε, 1 − ε]; the two agree wherever p is inside)."
    ),
    "simloss": (
        "Give exactly one of `similarity` and `ordinal_base`: neither or both is a 422 that "
        "says which to give."
    ),
    "categorical_hinge": "At a tied maximum the gradient is the subgradient of smallest norm.",
    "ranking_softmax": (
        "With Y = Σ_j y_j and p = softmax(s): ∂l/∂s_j = Y·p_j − y_j, ∂²l/∂s_j² = Y·p_j(1 − p_j). "
        "optax's `where` and `weights` arguments (masks and item weights) are not taken."
    ),
    "pairwise_logistic": (
        "Each pair (j, k) with y_j > y_k and d = s_j − s_k adds −σ(−d) to item j's derivative, "
        "σ(−d) to item k's and σ(d)σ(−d) to both curvatures; O(L²) a list."
    ),
    "pairwise_hinge": (
        "Each pair with 1 − (s_j − s_k) > 0 adds −1 to item j's derivative and 1 to item k's; at "
        "the kink, 0 (jax's relu)."
    ),
    "pointwise_sigmoid": "∂l/∂s_j = σ(s_j) − ȳ_j, ∂²l/∂s_j² = σ(s_j)σ(−s_j).",
    "cox": (
        "Send times as XGBoost takes them: positive for an event, negative for a censored "
        "sample. Computed in logs (log-sum-exp risk sums, never subtracted), so any finite "
        "margins, ±1e300 in one batch, have exact answers; XGBoost's loop subtracts."
    ),
    "aft": (
        "Right-censored: a negative upper bound (XGBoost's +∞); left-censored: lower bound 0; "
        "observed: lower = upper > 0; [0, negative] carries no information (loss 0). Lower "
        "bounds must be ≥ 0 and upper bounds ≥ lower (or negative); an observed time 0 is a "
        "422. `survival:aft` also takes XGBoost's names `aft_loss_distribution` and "
        "`aft_loss_distribution_scale`."
    ),
    "ntxent": (
        "optax's value is lossd's `mean`; its `sum` is Σ_i l_i. A row without positives has loss "
        "0 and κ 0; a row without negatives, loss 0 (each term is log e^s − s)."
    ),
    "circle": (
        "The embeddings are taken as sent (Keras expects them L2-normalised and does not "
        "normalise them either). Keras masks the rows whose loss is 0 in its mean; κ_i is 1 for "
        "a row with a positive and a negative, the same rows wherever softplus does not "
        "underflow."
    ),
    "multi_margin": (
        "Its `mean` divides by Σ_i w_i·cw_{y_i}, the sum of the targets' class weights, not by "
        "N as PyTorch's does."
    ),
    "sparsemax": (
        "sparsemax(z) = max(z − τ, 0), τ making it sum to 1 (the Euclidean projection of z onto "
        "the simplex); computed as optax does, Σ_{j∈S} p_j(z_j − z_y) + ½(1 − Σ_j p_j²), which "
        "is the formula above without squares of the scores. ∂l/∂z = sparsemax(z) − onehot(y); "
        "the loss is 0 once sparsemax is onehot(y). optax's `sparsemax_loss` is the binary one, "
        "not this."
    ),
    "additive_margin_softmax": (
        "With p = softmax(s·(cos θ − m·onehot(y))): ∂l/∂cos θ_j = s(p_j − 1[j = y]), "
        "∂²l/∂cos θ_j² = s²p_j(1 − p_j) >= 0. The predictions are cosines but are not required "
        "to lie in [−1, 1]; the margin is applied to differences from the row's largest cosine, "
        "so that it is not rounded away next to large scores."
    ),
    "additive_angular_margin_softmax": (
        "insightface's ArcFace with easy_margin false: the target logit is "
        "cos(θ_y + m) = c·cos m − √(1 − c²)·sin m while θ_y + m ≤ π (c = cos θ_y > cos(π − m)), "
        "and c − m·sin m beyond, which keeps it decreasing in θ_y; the target logit jumps at "
        "the threshold, the second branch lying cos m + m·sin m − 1 below the first there "
        "(0.117 at m = 0.5), as in insightface. Predictions are "
        "cosines in [−1, 1] (a 422 otherwise). Off the target the derivatives are "
        "AM-softmax's; on it, with φ' = cos m + c·sin m/√(1 − c²), ∂l/∂c = −s(1 − p_y)φ' and "
        "∂²l/∂c² = s²p_y(1 − p_y)φ'² − s(1 − p_y)·sin m/(1 − c²)^(3/2). At c = 1 the slope is "
        "infinite: the value is answered, a gradient or Hessian asked for there is a 422."
    ),
    "multilabel_margin": (
        "Each active term max(0, 1 − ŷ_j + ŷ_c) (j listed, c not) adds n_j/C to ∂l/∂ŷ_c and "
        "takes it from ∂l/∂ŷ_j, n_j being how many times j is listed; a term exactly at its "
        "margin adds nothing, as in PyTorch's gradient; the Hessian is 0. A row listing "
        "no class, or every class, has loss 0. Each row costs O(C²) steps at most."
    ),
    "kl_divergence": (
        "From probabilities P and Q are both clipped to [ε, 1] as Keras does (a target of 0 "
        "counts as ε); from logits it is PyTorch's `kl_div(log_softmax(z), P)` per row, with "
        "0·log 0 = 0."
    ),
    "generalized_kl_divergence": (
        "∂l/∂x_c = e^(x_c) − P_c, ∂²l/∂x_c² = e^(x_c) > 0. Each class's term is non-negative "
        "(the Bregman divergence of u log u − u) and 0 where Q_c = P_c. optax called it "
        "`convex_kl_divergence` before renaming it; the old name is an alias."
    ),
    "cauchy_schwarz_divergence": (
        "−log of the cosine of the angle between P and Q: 0 where Q is proportional to P. With "
        "g_j = −P_j/⟨P, Q⟩ + Q_j/‖Q‖², ∂l/∂Q_j = g_j and "
        "∂²l/∂Q_j² = P_j²/⟨P, Q⟩² + 1/‖Q‖² − 2Q_j²/‖Q‖⁴; from logits Q_j·g_j and "
        "Q_j·g_j + Q_j²·∂²l/∂Q_j². Rows with no positive entry in common have an infinite "
        "divergence, and a target row of zeros none: both are 422s. The formula is Jenssen et "
        "al. (2006)'s for discrete densities; no library has it, so it is its own reference."
    ),
    "js_divergence": (
        "Both rows are renormalised to sum 1 first, as SciPy's `jensenshannon` does; a row "
        "summing to 0 is a 422."
    ),
    "ctc": (
        "Batch first: send torch's time-first `log_probs` as `log_probs.transpose(0, 1)`. "
        "Labels within a target length must be class indices other than the blank, and a "
        "sample whose L labels (r of them repeating the one before) need more than its "
        "input length (L + r steps) cannot be aligned: both are 422s naming the sample; with "
        "`zero_infinity: true` the latter has loss 0 and gradient 0, as in PyTorch. `sum` is "
        "Σ w_i·l_i; `mean` is PyTorch's, Σ w_i·l_i/max(L_i, 1) / Σ w_i, each loss divided by "
        "its target length first (`mean_by_target_length: false`: the plain mean, Keras'). "
        "The gradient is PyTorch's, e^x − γ with γ_t(c) the posterior probability that the "
        "alignment emits c at step t: with each step's log-probabilities summing to 1 it is "
        "the exact gradient of the logits beneath them (−γ alone is the derivative with "
        "respect to free log-probabilities). With `from_logits` the gradient p − γ and the "
        "Hessian p(1 − p) − γ(1 − γ) are exact in the logits. Keras' `CTC` is this loss with "
        "`from_logits: true`, `mean_by_target_length: false`, `input_lengths` T and "
        "`target_lengths` the count of non-zero labels (its name folds to `ctc`, so it "
        "carries no defaults of its own)."
    ),
}

CONVENTIONS = """\
## Conventions

These hold for every loss below.

### Notation

ŷ is a prediction, y a target, r = ŷ − y the residual; z a logit, σ the sigmoid, p a
probability (σ(z) or softmax(z) from logits, the prediction itself otherwise); i indexes the N
samples (axis 0), j or c the D columns or C classes of a row (the last axis); ε is the loss's
`epsilon` parameter and s its `label_smoothing`.

### Shapes and the per-sample loss

Predictions are `(N,)` or `(N, C)`; targets have the same shape, or are `(N,)` class indices
for the losses that accept them. N = 0 is allowed and gives an empty result with `value` 0 and
`weight_sum` 0.

The per-sample loss l_i is the loss of row i, which is what `per_sample` returns. For a rank-1
batch it is the loss of one element. For a rank-2 batch of an elementwise loss (regression with
D outputs, multilabel binary cross-entropy) it is the **mean** over the last axis, the 1/D in the
formulas; for the multiclass, distribution and cosine losses it is the **sum** over the class
axis, as their formulas show. Weights that belong to the loss itself (`class_weight`,
`pos_weight`) are part of l_i.

### Sample weights and reductions

`sample_weight` w_i (default 1, finite and non-negative) enters only the reductions: `per_sample`
is never multiplied by it.

- `none`: no reduced value (`value` is null); `per_sample` holds every l_i.
- `sum`: Σ_i w_i·l_i.
- `mean`: the sum divided by the normaliser `weight_sum` = Σ_i w_i·κ_i, and 0 when that is 0.

κ_i is 1, except for the losses with a `class_weight` parameter (`cross_entropy`, `focal`,
`generalized_cross_entropy`, `multi_margin`), where κ_i = Σ_c cw_c·y_ic: the class weight of the
sample's target (for soft targets the target-weighted sum; with no `class_weight` every cw_c is
1), and 0 for an ignored sample; and for the losses whose library averages over something other
than samples: the items or ordered pairs of a list (`pointwise_sigmoid`, the pairwise ranking
losses), the events (`cox`: 1 for an event, 0 for a censored sample), the positive pairs of an
anchor (`ntxent`), the rows with a positive and a negative (`circle`). With index targets this is PyTorch's weighted `mean`, and
one-hot targets give exactly the result of the equivalent indices. The response carries
`weight_sum`, so a client can combine the means of several batches exactly.

Reductions add in a fixed order, so the same request gives the same bits whatever the number of
compute threads.

### Gradient and Hessian

Both are taken with respect to the predictions as sent (the logits when `from_logits` is true)
and have their shape. For `mean` and `sum` they are the derivatives of the reduced `value`; for
`none`, of each l_i with respect to its own row. With `sum`, the gradient is therefore the
w_i-weighted per-sample derivative that a gradient-boosting custom objective expects; with `mean`
it is that divided by `weight_sum`.

The Hessian is the **diagonal** of the second-derivative matrix, exact (not an approximation).
Where it is zero or negative it is returned as it is; the entries below say where
(**Hessian**), and the client decides on a floor.

Where a loss is not differentiable the gradient is the subgradient of smallest magnitude:
sign(0) = 0, a hinge exactly at its margin contributes 0, the pinball loss at r = 0 gives 0.

### Batch-coupled losses

For most losses l_i depends on row i alone. For a **batch-coupled** loss (`batch_coupled: true`
in `GET /losses`: `cox`, `ntxent`, `circle`) it depends on other rows of the batch too: Cox's
risk set of an event is every sample of the batch still at risk, and a contrastive loss pairs each
embedding with the others. Such a batch is evaluated whole (never cut into blocks of rows, so on
one compute thread) and must not be split across requests: the Python client sends it whole, and
says so when it exceeds the server's limits. `per_sample` and `sample_weight` keep their meaning
(w_i weighs l_i, the term of sample i with its risk set or pairs; the risk sets and pairs
themselves are not weighted), and the gradient and Hessian diagonal are those of the reduced
value, Σ_i w_i·l_i (or of Σ_i l_i for `none`), with respect to every row: row k's gradient
collects k's part in every l_i, not only in l_k.

### Extra named arrays

`gaussian_nll`, `margin_ranking`, `cosine_embedding` and `triplet_margin` take arrays besides the
predictions and targets, under `inputs` by name (each entry's **Inputs** says which, and the
shapes it takes relative to the predictions), in any of the request's array forms; on `/v2` they
are input tensors of those names. Each is required; a missing one, an unknown name, a shape that
does not fit or a non-finite element is a 422 naming `inputs.<name>`. `gradient` and `hessian`
stay the derivatives with respect to the predictions; `input_gradients: true` adds the gradient
with respect to each input under `input_gradients`, of that input's shape, scaled for the
reduction as `gradient` is.

### Probabilities and logits

With `from_logits` false, predictions that must be probabilities are checked to lie in [0, 1];
a violation is a 422 whose detail suggests `from_logits: true`. They are then clipped to
[ε, 1 − ε] before any logarithm, and the derivatives are those of the clipped expression (0 where
clipping is active), as Keras computes them. With `from_logits` true every formula is evaluated
in a numerically stable form (log-sigmoid, log-sum-exp): any finite logit, up to ±1e300, gives a
finite loss and gradient.

A loss or derivative that is not finite in the requested dtype (for example `mse` of 1e200
against −1e200) is a 422 `out_of_domain`, never a null or `Infinity` in the response.

### Names, precision and references

A loss is named by its canonical name or any alias, case-insensitively, with `-` and `_`
interchangeable (`MSELoss`, `mean-squared-error` and `mse` are one loss); an unknown name is a 404
that suggests the closest ones. An alias taken from a library carries that library's conventions,
listed beside it below: its parameter defaults (`CrossEntropyLoss` reads logits), PyTorch's
reduction over every element (`reduce_over: "elements"`: `MSELoss` with `sum` on an (N, D) batch
adds N·D squares, `mse` adds N row means; the mean is the same), PyTorch's parameter names
(`weight` for `class_weight`), and scikit-learn's `log_loss`, binary on (N,) predictions and
multiclass on (N, C). Any request can set `reduce_over` itself; parameters and options a request
sends always win, and the response's `params` and `reduce_over` say what was used. `GET /losses` serves the same entries as this page, with each
parameter's JSON schema.

Computation is in float64 unless the request asks for `dtype: float32`. Each entry's
**Reference** is the library function (or the published formula) the loss agrees with in float64,
to a relative error of 1e-9 or an absolute error of 1e-12, values and gradients alike; the
reference decides the edge cases a formula leaves open. The tests check every loss against it,
and every gradient and Hessian against finite differences.
"""

# Cross-references in registry text to documents outside the repository, and what stands for
# them here.
_OUTSIDE = (
    (re.compile(r"\s*\(SPEC section 4\)"), " (see [Conventions](#sample-weights-and-reductions))"),
    (re.compile(r"\s*\(LOSSES\.md\)"), ""),
)

_TARGET_FORMS = {
    "same_shape": "of the predictions' shape",
    "class_index": "`(N,)` class indices",
    "labels": "`(N,)` group labels",
    "interval": "`(N, 2)` intervals [lower, upper]",
    "per_sample": "`(N,)`, one label per sample",
    "sequence": "`(N, S)` label rows padded past each target length",
}
_INPUT_SHAPES = {
    "same": "the predictions' shape",
    "rows": "`(N,)` (one per sample)",
    "column": "`(N, 1)`",
}


def _prose(text: str, cell: bool = False) -> str:
    """Registry text as Markdown that renders as written (``cell``: inside a table row), its
    references to documents outside the repository replaced."""
    text = re.sub(r"([\\*\[\]])", r"\\\1", " ".join(text.split()))
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)
    text = re.sub(r"(?<!\w)_|_(?!\w)", r"\_", text)
    for pattern, replacement in _OUTSIDE:
        text = pattern.sub(replacement, text)
    return text.replace("|", r"\|") if cell else text


def _number(value: Any) -> str:
    """A JSON value as the API writes it; exponents without padding (1e-7, not 1e-07)."""
    text = json.dumps(value, ensure_ascii=False)
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], text)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a local ``$ref`` followed."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = root.get("$defs", {})[ref.removeprefix("#/$defs/")]
        return resolved
    return schema


def _type(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """The JSON type of one schema branch in words: number, list of numbers, "balanced", null."""
    schema = _resolve(schema, root)
    if "const" in schema:
        return _number(schema["const"])
    kind = schema.get("type")
    if kind == "array":
        items = _type(schema.get("items", {}), root)
        if items.isalpha():
            return f"list of {items}s"
        if items.startswith("list of "):
            return f"lists of {items.removeprefix('list of ')}"
        return f"list of ({items})"
    if isinstance(kind, str):
        return kind
    if "anyOf" in schema:
        kinds = [_type(branch, root) for branch in schema["anyOf"]]
        return " or ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 2 else kinds)
    return "any"


def _bounds(schema: dict[str, Any]) -> str:
    """A number's bounds: ``> 0``, ``≥ 0``, ``in (0, 1]``."""
    low = (
        ("(", schema["exclusiveMinimum"])
        if "exclusiveMinimum" in schema
        else ("[", schema["minimum"])
        if "minimum" in schema
        else None
    )
    high = (
        (")", schema["exclusiveMaximum"])
        if "exclusiveMaximum" in schema
        else ("]", schema["maximum"])
        if "maximum" in schema
        else None
    )
    if low and high:
        return f"in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '≥'} {_number(low[1])}"
    if high:
        return f"{'<' if high[0] == ')' else '≤'} {_number(high[1])}"
    return ""


def _entries(count: int) -> str:
    return "entry" if count == 1 else "entries"


def _constraint(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """What one schema branch allows beyond its type."""
    schema = _resolve(schema, root)
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(_number(v) for v in schema["enum"]))
    if bounds := _bounds(schema):
        parts.append(bounds)
    if schema.get("type") == "array":
        leaf = _resolve(schema.get("items", {}), root)
        while leaf.get("type") == "array":  # a matrix: its entries' constraint
            leaf = _resolve(leaf.get("items", {}), root)
        if inner := _constraint(leaf, root):
            parts.append(f"each {inner}")
        if "minItems" in schema:
            parts.append(f"at least {schema['minItems']} {_entries(schema['minItems'])}")
        if "maxItems" in schema:
            parts.append(f"at most {schema['maxItems']} {_entries(schema['maxItems'])}")
    return ", ".join(parts)


def _allowed(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """The constraints of a field; each named by its branch's type when several branches have
    some (``number: ≥ 0; list of numbers: each ≥ 0``)."""
    found = [(_type(b, root), _constraint(b, root)) for b in schema.get("anyOf", [schema])]
    found = [(kind, text) for kind, text in found if text]
    if len(found) == 1:
        return found[0][1]
    return "; ".join(f"{kind}: {text}" for kind, text in found)


def _params(spec: LossSpec) -> list[str]:
    """The parameter table of one loss (or the sentence that it has none)."""
    root = spec.params.model_json_schema()
    properties: dict[str, dict[str, Any]] = root.get("properties", {})
    required = set(root.get("required", []))
    lines = []
    if description := root.get("description"):
        lines += [_prose(description), ""]
    if not properties:
        return lines or ["No parameters.", ""]
    lines += [
        "| parameter | type | default | allowed | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, field in properties.items():
        default = "required" if name in required else f"`{_number(field.get('default'))}`"
        lines.append(
            f"| `{name}` | {_prose(_type(field, root), cell=True)} | {default} "
            f"| {_prose(_allowed(field, root), cell=True)} "
            f"| {_prose(field.get('description', ''), cell=True)} |"
        )
    return [*lines, ""]


def _alias(name: str, spec: LossSpec) -> str:
    """An alias, with the library conventions it carries (``losses._aliases``)."""
    alias = alias_conventions(name)
    if alias is None:
        return f"`{name}`"
    brings = [f"`{key}: {orjson.dumps(value).decode()}`" for key, value in alias.params.items()]
    if alias.reduce_over == "elements":
        brings.append('`reduce_over: "elements"`')
    names = alias.names_for(spec.params.model_fields)
    brings += [f"`{theirs}` for `{ours}`" for theirs, ours in names.items()]
    if alias.rows_loss:
        brings.append(f"(N, C) predictions go to `{alias.rows_loss}`")
    return f"`{name}` ({alias.library}: {', '.join(brings)})"


def _entry(spec: LossSpec) -> list[str]:
    """One loss: summary, formula, parameters, targets, derivatives and reference."""
    aliases = ", ".join(_alias(name, spec) for name in spec.aliases) or "none"
    forms = " or ".join(_TARGET_FORMS[form] for form in spec.targets)
    targets = f"targets {forms}" if spec.targets else "no targets (send none)"
    for x in spec.params.inputs:
        shapes = " or ".join(_INPUT_SHAPES[form] for form in x.shapes)
        gradient = ", its gradient in `input_gradients`" if x.differentiable else ""
        targets += f"; `inputs.{x.name}`: {_prose(x.description)}, of {shapes}{gradient}"
    rank = {1: "of rank 1 or 2", 2: "of rank 2 only", 3: "of rank 3 `(N, T, C)` only"}[
        spec.params.min_rank
    ]
    if spec.params.max_rank == 1:
        rank = "`(N,)`, one value a sample"
    if not spec.hessian:
        hessian = "not available; asking for it is a 422."
    elif spec.hessian_note:
        hessian = _prose(spec.hessian_note).rstrip(".") + "."
    else:
        hessian = "the exact diagonal."
    lines = [
        f"### `{spec.name}`",
        "",
        _prose(spec.summary),
        "",
        "```math",
        spec.formula,
        "```",
        "",
        *_params(spec),
        f"- **Aliases:** {aliases}",
        f"- **Inputs:** predictions {rank}; {targets}.",
    ]
    if spec.batch_coupled:
        lines.append(
            "- **Batch-coupled:** a sample's loss depends on other rows of the batch; the batch "
            "is evaluated whole and is never split across requests."
        )
    if spec.name in DETAILS:
        lines.append(f"- **Notes:** {DETAILS[spec.name]}")
    return [
        *lines,
        f"- **Hessian:** {hessian}",
        f"- **Reference:** {_prose(spec.reference)}",
        "",
    ]


def _families() -> list[tuple[Family, list[LossSpec]]]:
    """The registry grouped by family, families in their declared order, losses in the
    registry's."""
    grouped = [(family, [s for s in REGISTRY if s.family == family]) for family in get_args(Family)]
    return [(family, specs) for family, specs in grouped if specs]


def render() -> str:
    """The whole of ``docs/losses.md``."""
    families = _families()
    lines = [
        "<!-- Generated from the registry (service/losses/) by `make docs` (service/catalogue_doc.py);",
        "     edit those, not this file. tests/test_losses_doc.py fails when it is out of date. -->",
        "",
        "# The loss catalogue",
        "",
        f"lossd serves {len(REGISTRY)} losses. For each: what it computes (the per-sample loss "
        "l_i, in LaTeX), its aliases, its parameters with defaults and allowed values, the "
        "predictions and targets it takes, what its gradient and Hessian are, and the reference "
        "it is tested against. [Conventions](#conventions) says what every loss shares: the "
        "per-sample loss of a rank-2 row, sample weights and reductions, and which derivative "
        "the gradient and Hessian are.",
        "",
        "## Contents",
        "",
        "| loss | family | aliases | summary |",
        "| --- | --- | --- | --- |",
    ]
    for family, specs in families:
        title = FAMILIES[family][0]
        anchor = _slug(title)
        for spec in specs:
            aliases = ", ".join(f"`{alias}`" for alias in spec.aliases) or "—"
            lines.append(
                f"| [`{spec.name}`](#{_slug(spec.name)}) | [{title}](#{anchor}) | {aliases} "
                f"| {_prose(spec.summary, cell=True)} |"
            )
    lines += ["", CONVENTIONS]
    for family, specs in families:
        title, intro = FAMILIES[family]
        lines += [f"## {title}", "", intro, ""]
        for spec in specs:
            lines += _entry(spec)
    return "\n".join(lines).rstrip("\n") + "\n"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
