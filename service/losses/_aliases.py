"""Aliases carry their library's defaults: a PyTorch user who writes ``CrossEntropyLoss`` gets
PyTorch's answer, not Keras'.

Every alias is listed in its loss's ``SPEC.aliases``; the ones below also carry their library's
conventions: parameter defaults (``CrossEntropyLoss`` takes logits), torch's reduction over every
element (``MSELoss`` with ``sum`` on (N, C) sums N·C terms), torch's parameter names (``weight``
for ``class_weight``), and scikit-learn's ``log_loss``, binary on (N,) and multiclass on (N, C).
Parameters and options a request sends always win; the response's ``params`` shows what was used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ReduceOver = Literal["samples", "elements"]

# torch.nn's names for lossd's parameters, where they mean the same thing
_TORCH_NAMES = {"weight": "class_weight"}
# How a loss reads its predictions (logits, log-probabilities, log-rates): a request that sets
# one of them has said how to read its predictions, and the alias's default reading yields.
_READINGS = frozenset({"from_logits", "log_input"})
# scikit-learn clips probabilities to [eps, 1 - eps] with float64's machine epsilon
_FLOAT64_EPS = 2.220446049250313e-16


@dataclass(frozen=True)
class Alias:
    """An alias's library conventions."""

    library: str
    params: Mapping[str, Any] = field(default_factory=dict)
    reduce_over: ReduceOver = "samples"
    names: Mapping[str, str] = field(default_factory=dict)  # the library's -> lossd's
    rows_loss: str | None = None  # the loss that (N, C) predictions go to instead

    def names_for(self, fields: Mapping[str, Any]) -> dict[str, str]:
        """The library's names for those of ``fields`` it names differently."""
        return {theirs: ours for theirs, ours in self.names.items() if ours in fields}

    def params_for(self, sent: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters in force: the library's defaults under what was sent, the library's
        names for lossd's parameters translated (``fields``: the loss's own parameters)."""
        renamed = {
            self.names[key] if key in self.names and self.names[key] in fields else key: value
            for key, value in sent.items()
        }
        defaults = {key: value for key, value in self.params.items() if key in fields}
        if _READINGS.intersection(renamed):  # the request says how to read its predictions
            defaults = {key: value for key, value in defaults.items() if key not in _READINGS}
        return {**defaults, **renamed}

    def entry(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The alias's conventions as ``GET /losses`` lists them, for a loss with the parameters
        ``fields``."""
        entry: dict[str, Any] = {"library": self.library, "params": dict(self.params)}
        entry["reduce_over"] = self.reduce_over
        names = self.names_for(fields)
        if names:
            entry["param_names"] = names
        if self.rows_loss:
            entry["rows_loss"] = self.rows_loss
        return entry


def _torch(**defaults: Any) -> Alias:
    return Alias("torch", defaults, "elements", _TORCH_NAMES)


def _optax(**defaults: Any) -> Alias:
    return Alias("optax", defaults)


CONVENTIONS: dict[str, Alias] = {
    # torch.nn: torch's defaults, reduction over elements, torch's parameter names
    "MSELoss": _torch(),
    "L1Loss": _torch(),
    "HuberLoss": _torch(),
    "SmoothL1Loss": _torch(),
    "PoissonNLLLoss": _torch(log_input=True),
    "BCELoss": _torch(),
    "BCEWithLogitsLoss": _torch(from_logits=True),
    "CrossEntropyLoss": _torch(from_logits=True),
    # log-probabilities are logits to a softmax: softmax(log p) = p
    "NLLLoss": _torch(from_logits=True),
    "nll": _torch(from_logits=True),
    "MultiMarginLoss": _torch(),
    "MultiLabelMarginLoss": _torch(),
    "SoftMarginLoss": _torch(),
    "HingeEmbeddingLoss": _torch(),
    "GaussianNLLLoss": _torch(),
    "MarginRankingLoss": _torch(),
    "CosineEmbeddingLoss": _torch(),
    "TripletMarginLoss": _torch(),
    # torch's CTC mean is its own (each loss over its target length), over samples
    "CTCLoss": Alias("torch", {}, "samples", _TORCH_NAMES),
    # torch's multilabel_soft_margin_loss averages each row over its classes first: its mean
    # and sum are over samples
    "MultiLabelSoftMarginLoss": Alias("torch", {}, "samples", _TORCH_NAMES),
    "KLDivLoss": _torch(log_input=True),
    # optax: logits
    "softmax_cross_entropy": _optax(from_logits=True),
    "sigmoid_binary_cross_entropy": _optax(from_logits=True),
    "sigmoid_focal": _optax(from_logits=True),
    # log-probabilities as given against log-probability targets
    "kl_divergence_with_log_targets": _optax(log_input=True, log_target=True),
    # XGBoost's names for the AFT distribution and its scale
    "survival:aft": Alias(
        "xgboost",
        names={"aft_loss_distribution": "distribution", "aft_loss_distribution_scale": "sigma"},
    ),
    # scikit-learn: binary on (N,), multiclass on (N, C), clipped at float64's epsilon
    "log_loss": Alias("scikit-learn", {"epsilon": _FLOAT64_EPS}, rows_loss="cross_entropy"),
}


def fold(name: str) -> str:
    """Names match case-insensitively with '-' and '_' interchangeable."""
    return name.lower().replace("-", "_")


_BY_FOLDED = {fold(name): alias for name, alias in CONVENTIONS.items()}


def alias_conventions(name: str) -> Alias | None:
    """The library conventions a name carries, if it is one of the aliases above."""
    return _BY_FOLDED.get(fold(name))
