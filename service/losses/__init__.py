"""THE REGISTRY: every loss lossd serves, in the order of ``catalogue.toml``.

Adding a loss is one file in this folder (its parameters, kernels and ``KERNEL``), one table in
``catalogue.toml`` (its name, aliases, family, summary, formula and reference) and one reference
function (with its case) in ``tests/support/references/<family>.py``; the registry-wide tests
then cover it.
"""

from __future__ import annotations

import difflib
import importlib
import tomllib
from importlib import resources

from ..errors import UnknownLoss, shown
from ._spec import CatalogueEntry, LossParams, LossSpec

__all__ = ["REGISTRY", "LossParams", "LossSpec", "resolve"]


def _registry() -> tuple[LossSpec, ...]:
    """Every table of ``catalogue.toml``, in its order, with the module of the same name."""
    text = resources.files(__name__).joinpath("catalogue.toml").read_text(encoding="utf-8")
    return tuple(
        LossSpec.of(
            name,
            importlib.import_module(f"{__name__}.{name}").KERNEL,
            CatalogueEntry.model_validate(entry),
        )
        for name, entry in tomllib.loads(text).items()
    )


REGISTRY: tuple[LossSpec, ...] = _registry()


def fold(name: str) -> str:
    """Names match case-insensitively with '-' and '_' interchangeable."""
    return name.lower().replace("-", "_")


_BY_NAME: dict[str, LossSpec] = {
    fold(alias): spec for spec in REGISTRY for alias in (spec.name, *spec.aliases)
}


def resolve(name: str) -> LossSpec:
    """The loss a name or alias stands for; ``UnknownLoss`` suggests the closest names."""
    spec = _BY_NAME.get(fold(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(fold(name)[:100], list(_BY_NAME), n=6, cutoff=0.5)
    names = list(dict.fromkeys(_BY_NAME[c].name for c in close))[:3]
    hint = f"; did you mean {', '.join(map(repr, names))}?" if names else ""
    raise UnknownLoss(f"unknown loss {shown(name, 100)!r}{hint} GET /losses lists every loss")
