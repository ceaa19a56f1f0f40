"""Losses against PyTorch and Keras (on the torch backend), values and autograd gradients.

A second opinion: ``pip install torch==2.13.0`` installs a local CPU build; without torch the
module skips and the suite still passes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from service.losses import LossSpec, resolve
from tests.support.harness import ATOL, RTOL, evaluate, sample, variant_id, variants

torch = pytest.importorskip("torch", reason="PyTorch is the optional second opinion")
F = torch.nn.functional
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
keras.config.set_floatx("float64")  # the contract is float64; keras defaults to float32

TorchLoss = Callable[..., Any]


def _torch_refs(params: dict[str, Any]) -> dict[str, TorchLoss]:
    """Per-element (or per-row for Keras) losses of the reference libraries, as torch calls."""
    return {
        "mse": lambda p, t: F.mse_loss(p, t, reduction="none").mean(-1),
        "mae": lambda p, t: F.l1_loss(p, t, reduction="none").mean(-1),
        "huber": lambda p, t: F.huber_loss(p, t, reduction="none", **params).mean(-1),
        "smooth_l1": lambda p, t: F.smooth_l1_loss(p, t, reduction="none", **params).mean(-1),
        "poisson": lambda p, t: F.poisson_nll_loss(
            p,
            t,
            log_input=params.get("log_input", False),
            full=params.get("full", False),
            eps=params.get("epsilon", 1e-7),
            reduction="none",
        ).mean(-1),
        "log_cosh": lambda p, t: keras.losses.log_cosh(t, p),
        "mape": lambda p, t: keras.losses.mean_absolute_percentage_error(t, p),
        "msle": lambda p, t: keras.losses.mean_squared_logarithmic_error(t, p),
        "cosine_similarity": lambda p, t: keras.losses.cosine_similarity(t, p),
    }


# the losses these libraries have (PyTorch's F.*, or Keras on the torch backend)
TORCH_NAMES = ("mse", "mae", "huber", "smooth_l1", "poisson", "log_cosh", "cosine_similarity")
KERAS_DEFAULT_ONLY = ("mape", "msle")  # keras fixes epsilon to backend.epsilon() = 1e-7
# Keras 3.15 on the torch backend rounds its inputs to float32 inside these losses even with
# floatx float64 (2.0000001 arrives as 2.0), so it can only confirm them to float32 precision; the
# float64 agreement is with the same formulas written out in tests/support/references.
KERAS_NAMES = ("log_cosh", "cosine_similarity", "mape", "msle")


LIBRARY_VARIANTS = [
    (spec, p)
    for spec, p in variants(*map(resolve, TORCH_NAMES))
    # keras.losses.cosine_similarity has no epsilon argument: only its default variant
    if not (spec.name == "cosine_similarity" and p)
] + [(resolve(name), {}) for name in KERAS_DEFAULT_ONLY]


@pytest.mark.parametrize(
    ("spec", "params"), LIBRARY_VARIANTS, ids=[variant_id(v) for v in LIBRARY_VARIANTS]
)
@pytest.mark.parametrize("shape", [(8, 1), (6, 4)])
def test_torch_and_keras_values_and_gradients(
    spec: LossSpec, params: dict[str, Any], shape: tuple[int, int]
) -> None:
    """Per-sample values and the weighted-sum gradient match the reference and its autograd."""
    name = spec.name
    pred, targ = sample(spec, shape, seed=23)
    w = np.random.default_rng(24).uniform(0.5, 2, size=shape[0])
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(targ, dtype=torch.float64)
    per_sample = _torch_refs(params)[name](p, t)
    (per_sample * torch.tensor(w)).sum().backward()
    out = evaluate(spec, pred, targ, w, params, reduction="sum", gradient=True)
    rtol, atol = (1e-6, 1e-7) if name in KERAS_NAMES else (RTOL, ATOL)
    np.testing.assert_allclose(out.per_sample, per_sample.detach().numpy(), rtol=rtol, atol=atol)
    assert p.grad is not None
    np.testing.assert_allclose(out.gradient, p.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.loss("cross_entropy")
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"class_weight": [0.3, 1.0, 2.0, 0.7]},
        {"ignore_index": 2},
        {"label_smoothing": 0.15},
        {"class_weight": [0.3, 1.0, 2.0, 0.7], "ignore_index": 2, "label_smoothing": 0.15},
    ],
)
def test_cross_entropy_matches_torch_including_its_mean(params: dict[str, Any]) -> None:
    """Index targets from logits: per-sample losses, the weighted mean and its gradient are
    torch.nn.functional.cross_entropy's, with weight, ignore_index and label_smoothing."""
    rng = np.random.default_rng(25)
    logits = rng.normal(scale=3, size=(40, 4))
    index = rng.integers(0, 4, size=40)
    weight = params.get("class_weight")
    kwargs: dict[str, Any] = {
        "weight": None if weight is None else torch.tensor(weight, dtype=torch.float64),
        "ignore_index": params.get("ignore_index", -100),
        "label_smoothing": params.get("label_smoothing", 0.0),
    }
    z = torch.tensor(logits, requires_grad=True)
    y = torch.tensor(index)
    per_sample = F.cross_entropy(z, y, reduction="none", **kwargs)
    mean = F.cross_entropy(z, y, reduction="mean", **kwargs)
    mean.backward()
    spec = resolve("cross_entropy")
    out = evaluate(spec, logits, index.astype(float), None, {"from_logits": True, **params},
                   gradient=True)  # fmt: skip
    np.testing.assert_allclose(out.per_sample, per_sample.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert out.value == pytest.approx(mean.item(), rel=RTOL, abs=ATOL)
    assert z.grad is not None
    np.testing.assert_allclose(out.gradient, z.grad.numpy(), rtol=RTOL, atol=ATOL)
