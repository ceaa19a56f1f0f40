"""The seam between a loss's parameters and its driver, and the one shape every driver has.

Kernel parameters are bound by name (``Prepared.kernel_params`` keyed by the driver's own
parameter names, ordered by ``LossSpec.kernel_args``), so the order a Params class declares its
fields in cannot change a result; and all drivers are one written-out shape, checked here so that
the copies cannot drift apart.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import replace
from typing import Any

import numpy as np
import pydantic
import pytest

from service.core import validate_params
from service.losses import REGISTRY, LossParams, LossSpec
from service.losses._spec import DRIVER_ARRAYS, KernelBindingError, Prepared, as_compute
from tests.support.harness import VARIANT_IDS, VARIANTS, sample, shapes_for, spec_id

DTYPES = (np.float64, np.float32)


def prepared_run(
    spec: LossSpec, params: LossParams, pred: np.ndarray, targ: np.ndarray, dtype: Any
) -> tuple[Prepared, list[np.ndarray]]:
    """``params.prepare`` and ``spec.run`` as the core calls them, weighted, every output asked
    for: the prepared batch and the driver's loss, gradient and Hessian."""
    compute = as_compute(pred, dtype, "predictions")
    prepared = params.prepare(spec.name, pred, targ, dtype, {})
    weights = np.random.default_rng(5).uniform(0.5, 2.0, size=compute.shape[0]).astype(dtype)
    weights.flags.writeable = False
    loss = np.empty(compute.shape[0], dtype=dtype)
    grad, hess = np.empty_like(compute), np.empty_like(compute)
    spec.run(compute, prepared.targets, weights, 0.5, loss, grad, hess, prepared)
    return prepared, [loss, grad, hess]


def fields_reversed(cls: type[LossParams]) -> type[LossParams]:
    """A copy of a Params class, with its methods and validators, whose fields are declared in
    the reverse order (a subclass whose field table is rebuilt reversed)."""
    copy = pydantic.create_model(f"Reversed{cls.__name__}", __base__=cls, __module__=cls.__module__)
    copy.__pydantic_fields__ = dict(reversed(cls.__pydantic_fields__.items()))
    copy.model_rebuild(force=True)
    assert list(copy.model_fields) == list(reversed(cls.model_fields))
    return copy


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
def test_kernel_params_name_exactly_the_driver_parameters(
    spec: LossSpec, params: dict[str, Any]
) -> None:
    """``prepare`` names every parameter the driver takes after its seven arrays and nothing
    else, each a plain float or bool or a read-only array of the compute dtype."""
    names = list(inspect.signature(spec.driver.py_func).parameters)
    assert tuple(names[: len(DRIVER_ARRAYS)]) == DRIVER_ARRAYS
    assert spec.kernel_names == tuple(names[len(DRIVER_ARRAYS) :])
    loss_params = validate_params(spec, params)
    for shape in shapes_for(spec):
        pred, targ = sample(spec, shape, seed=3, params=params)
        for dtype in DTYPES:
            prepared = loss_params.prepare(spec.name, pred, targ, dtype, {})
            assert sorted(prepared.kernel_params) == sorted(spec.kernel_names)
            for name, value in prepared.kernel_params.items():
                if isinstance(value, np.ndarray):
                    assert value.dtype == dtype and not value.flags.writeable, name
                else:
                    assert type(value) in (bool, float), name
            assert len(spec.kernel_args(prepared)) == len(spec.kernel_names)


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_a_missing_unknown_or_odd_kernel_param_is_an_internal_error(spec: LossSpec) -> None:
    """A kernel parameter left out, one the driver does not take, or one that is not a plain
    float, bool or read-only array raises instead of reaching the driver."""
    params = spec.params.model_validate(spec.params.warm_up)
    pred, targ = sample(spec, shapes_for(spec)[-1], seed=4, params=params.model_dump())
    prepared = params.prepare(spec.name, pred, targ, np.float64, {})
    kernel = dict(prepared.kernel_params)
    wrong: list[dict[str, Any]] = [{**kernel, "not_a_parameter": 1.0}]
    for name in spec.kernel_names:
        wrong.append({k: v for k, v in kernel.items() if k != name})
        wrong.append({**kernel, name: None})
        wrong.append({**kernel, name: 1})  # an int: a second compiled signature
        wrong.append({**kernel, name: np.zeros(3)})  # writable
    for params_ in wrong:
        with pytest.raises(KernelBindingError, match=spec.name):
            spec.kernel_args(replace(prepared, kernel_params=params_))


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
def test_reversing_the_fields_of_a_params_class_changes_no_result(
    spec: LossSpec, params: dict[str, Any]
) -> None:
    """A Params class with its fields declared in reverse order gives the same bytes of loss,
    gradient and Hessian, and shows the same parameters."""
    forward = validate_params(spec, params)
    backward = fields_reversed(spec.params).model_validate(params)
    for shape in shapes_for(spec):
        pred, targ = sample(spec, shape, seed=6, params=params)
        for dtype in DTYPES:
            one, expected = prepared_run(spec, forward, pred, targ, dtype)
            two, got = prepared_run(spec, backward, pred, targ, dtype)
            assert one.shown == two.shown
            for a, b in zip(expected, got, strict=True):
                assert a.tobytes() == b.tobytes()


# --- one driver shape -------------------------------------------------------------------------

# The shape of every driver, up to names: it takes the loss's parameters by name (here one,
# ``quantile``), packs them into ``params`` on its first line, and from there on every driver is
# the same: the row function takes ``params`` as one tuple, whatever the loss's arity.
CANONICAL = '''
@batch
def loss_batch(pred, targ, w, scale, loss, grad, hess, quantile):
    """The formula, its derivatives and the reference."""
    params = (quantile,)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            loss_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        loss_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
'''
# Names that mean the same in every driver: the house helpers and builtins it calls, and the
# packed tuple.
GLOBALS = frozenset({"batch", "block_rows", "SERIAL_ELEMENTS", "prange", "range", "params"})
# Every row function's parameters: block ``k`` of ``rows`` rows, the arrays, the packed tuple.
ROW_PARAMETERS = ("k", "rows", *DRIVER_ARRAYS, "params")


class _Canonical(ast.NodeTransformer):
    """Names replaced by their order of first appearance and the row function by ``ROWS``; a use
    of one of the loss's own parameters (which past the packing line no driver needs) is kept
    apart as ``param <name>``."""

    def __init__(self, rows: str, params: list[str]) -> None:
        self.rows = rows
        self.params = params
        self.names: dict[str, str] = {}

    def rename(self, name: str) -> str:
        if name in GLOBALS:
            return name
        if name == self.rows:
            return "ROWS"
        if name in self.params:
            return f"param {name}"
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Name(self.rename(node.id), node.ctx)


def packs(statement: ast.stmt, params: list[str]) -> bool:
    """Whether ``statement`` is ``params = (<the driver's parameters, in its order>)``."""
    return (
        isinstance(statement, ast.Assign)
        and [ast.unparse(t) for t in statement.targets] == ["params"]
        and isinstance(statement.value, ast.Tuple)
        and [ast.unparse(e) for e in statement.value.elts] == params
    )


def canonical(source: str) -> str:
    """A driver's source made canonical: its parameters must be the arrays and then the loss's
    own, plainly, and its first statement after the docstring must pack the loss's into
    ``params``; the statements after that are dumped with canonical names (``_Canonical``),
    the docstring and annotations dropped. A driver that breaks one of the first two rules comes
    out as a line that says so."""
    (node,) = ast.parse(textwrap.dedent(source)).body
    assert isinstance(node, ast.FunctionDef) and node.name.endswith("_batch")
    args = node.args
    names = [a.arg for a in args.args]
    params = names[len(DRIVER_ARRAYS) :]
    odd = args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg or args.defaults
    if tuple(names[: len(DRIVER_ARRAYS)]) != DRIVER_ARRAYS or odd:
        return f"signature ({ast.unparse(args)})"
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if not body or not packs(body[0], params):
        first = ast.unparse(body[0]) if body else None
        return f"first statement {first!r} does not pack {params}"
    visitor = _Canonical(node.name.removesuffix("_batch") + "_rows", params)
    decorators = [visitor.visit(d) for d in node.decorator_list]
    rest = [visitor.visit(s) for s in body[1:]]
    return ast.dump(ast.Module([*decorators, *rest], []))


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_every_driver_has_the_one_canonical_shape(spec: LossSpec) -> None:
    """Each driver is ``<name>_batch``, written out in the shape of ``CANONICAL`` up to names: its
    parameters packed into ``params``, then blocks of ``block_rows`` rows, on the calling thread
    up to ``SERIAL_ELEMENTS`` elements and in ``prange`` beyond, each handed to ``<name>_rows``
    with ``params``."""
    python = spec.driver.py_func
    assert python.__name__ == f"{spec.name}_batch"
    assert canonical(inspect.getsource(python)) == canonical(CANONICAL)
    rows = python.__globals__[f"{spec.name}_rows"]
    assert rows.py_func.__module__ == python.__module__
    assert not rows.targetoptions.get("parallel") and spec.driver.targetoptions["parallel"]


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_every_row_function_takes_the_one_canonical_signature(spec: LossSpec) -> None:
    """``<name>_rows`` takes the block, the arrays and the packed ``params``, plainly, and an
    elementwise loss's ``<name>_point`` takes one element of each input and ``params``: a loss's
    arity shows only in its driver's signature."""
    module = spec.driver.py_func.__globals__
    rows = inspect.signature(module[f"{spec.name}_rows"].py_func).parameters.values()
    assert tuple(p.name for p in rows) == ROW_PARAMETERS
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in rows)
    point = module.get(f"{spec.name}_point")
    if point is not None:
        parameters = list(inspect.signature(point.py_func).parameters)
        assert len(parameters) == 3 and parameters[-1] == "params"


def test_the_canonical_check_sees_a_drifted_driver() -> None:
    """Parameters packed in another order or not at all, a parameter passed beside the tuple, a
    changed threshold or a missing serial path make a driver differ from the canonical shape;
    other names for the same driver, and another number of parameters, do not."""
    two = CANONICAL.replace("quantile):", "a, b):")
    drifted = [
        two.replace("params = (quantile,)", "params = (b, a)"),
        two.replace("params = (quantile,)", "params = (a,)"),
        CANONICAL.replace("    params = (quantile,)\n", ""),
        CANONICAL.replace("hess, params)\n        return", "hess, (quantile,))\n        return"),
        CANONICAL.replace("quantile):", "*quantile):"),
        CANONICAL.replace("<= SERIAL_ELEMENTS", "< SERIAL_ELEMENTS"),
        CANONICAL.replace("for k in range(", "for k in prange("),
    ]
    for source in drifted:
        assert source != CANONICAL
        assert canonical(source) != canonical(CANONICAL), source
    renamed = re.sub(r"\bd\b", "c", re.sub(r"\bn\b", "m", CANONICAL.replace("loss_", "huber_")))
    assert canonical(renamed.replace("quantile", "delta")) == canonical(CANONICAL)
    none = CANONICAL.replace(", quantile):", "):").replace("(quantile,)", "()")
    three = two.replace("a, b):", "a, b, c):").replace("(quantile,)", "(a, b, c)")
    assert canonical(none) == canonical(three) == canonical(CANONICAL)
