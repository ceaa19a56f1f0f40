"""The seam between a loss's parameters and its driver, and the one shape every driver has.

Kernel parameters are bound by name (``Prepared.kernel_params`` keyed by the driver's own
parameter names, ordered by ``LossSpec.kernel_args``), so the order a Params class declares its
fields in cannot change a result; and all drivers are one written-out shape, checked here so that
the copies cannot drift apart.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

from service import jit
from service.core import validate_params
from service.losses import REGISTRY, LossParams, LossSpec, _elementwise
from service.losses._spec import DRIVER_ARRAYS, KernelBindingError, Prepared, as_compute
from tests.support.harness import HARNESSED, VARIANT_IDS, VARIANTS, sample, shapes_for, spec_id
from tests.support.references import Sample, sequence

DTYPES = (np.float64, np.float32)


def prepared_for(
    spec: LossSpec, params: LossParams, drawn: Sample, dtype: Any
) -> tuple[Prepared, dict[str, np.ndarray]]:
    """``params.prepare`` as the core calls it, with the extra inputs and the outputs of their
    gradients bound (``bind_inputs``): the prepared batch, and those outputs by input name."""
    targ = np.empty((0, 0), dtype) if drawn.targ is None else drawn.targ
    memo: dict[Any, Any] = {}  # one request's, as the core shares it (ctc's labels)
    prepared = params.prepare(spec.name, drawn.pred, targ, dtype, memo)
    extra = params.prepare_inputs(drawn.pred, drawn.inputs, dtype, memo)
    gradients = {name: np.empty_like(a) for name, a in extra.items()}
    return params.bind_inputs(prepared, extra, gradients), gradients


def prepared_run(
    spec: LossSpec, params: LossParams, drawn: Sample, dtype: Any
) -> tuple[Prepared, list[np.ndarray]]:
    """``params.prepare`` and ``spec.run`` as the core calls them, weighted, every output asked
    for: the prepared batch and the driver's loss, gradient, Hessian and input gradients."""
    compute = as_compute(drawn.pred, dtype, "predictions")
    prepared, gradients = prepared_for(spec, params, drawn, dtype)
    weights = np.random.default_rng(5).uniform(0.5, 2.0, size=compute.shape[0]).astype(dtype)
    weights.flags.writeable = False
    loss = np.empty(compute.shape[0], dtype=dtype)
    grad, hess = np.empty_like(compute), np.empty_like(compute)
    spec.run(compute, prepared.targets, weights, 0.5, loss, grad, hess, prepared)
    return prepared, [loss, grad, hess, *gradients.values()]


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
    """``prepare`` (with the extra inputs bound) names every parameter the driver takes after
    its seven arrays and nothing else, each a plain float or bool or a read-only array of the
    compute dtype, or, for the gradients of the extra inputs, a writable one."""
    names = list(inspect.signature(spec.driver.py_func).parameters)
    assert tuple(names[: len(DRIVER_ARRAYS)]) == DRIVER_ARRAYS
    assert spec.kernel_names == spec.driver.py_func.kernel_names
    loss_params = validate_params(spec, params)
    outputs = spec.params.outputs()
    for shape in shapes_for(spec):
        drawn = sample(spec, shape, seed=3, params=params)
        for dtype in DTYPES:
            prepared, _ = prepared_for(spec, loss_params, drawn, dtype)
            assert sorted(prepared.kernel_params) == sorted(spec.kernel_names)
            for name, value in prepared.kernel_params.items():
                if isinstance(value, np.ndarray):
                    assert value.dtype == dtype, name
                    assert value.flags.writeable == (name in outputs), name
                else:
                    assert type(value) in (bool, float), name
            assert len(spec.kernel_args(prepared)) == len(spec.kernel_names)


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_a_missing_unknown_or_odd_kernel_param_is_an_internal_error(spec: LossSpec) -> None:
    """A kernel parameter left out, one the driver does not take, or one that is not a plain
    float, bool or read-only array (a writable one, for an input's gradient) raises instead of
    reaching the driver."""
    params = spec.params.model_validate(spec.params.warm_up)
    drawn = (
        sample(spec, shapes_for(spec)[-1], seed=4, params=params.model_dump())
        if spec in HARNESSED
        else sequence.sample(4)  # ctc's rank-3 batch
    )
    prepared, _ = prepared_for(spec, params, drawn, np.float64)
    kernel = dict(prepared.kernel_params)
    wrong: list[dict[str, Any]] = [{**kernel, "not_a_parameter": 1.0}]
    for name in spec.kernel_names:
        wrong.append({k: v for k, v in kernel.items() if k != name})
        wrong.append({**kernel, name: None})
        wrong.append({**kernel, name: 1})  # an int: a second compiled signature
        odd = np.zeros(3)  # writable, or read-only where the driver writes it
        odd.flags.writeable = name not in spec.params.outputs()
        wrong.append({**kernel, name: odd})
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
        drawn = sample(spec, shape, seed=6, params=params)
        for dtype in DTYPES:
            one, expected = prepared_run(spec, forward, drawn, dtype)
            two, got = prepared_run(spec, backward, drawn, dtype)
            assert one.shown == two.shown
            for a, b in zip(expected, got, strict=True):
                assert a.tobytes() == b.tobytes()


# Every row function's parameters: block ``k`` of ``rows`` rows, the arrays, the packed tuple.
# the block, the driver's seven arrays as one tuple (jit.RowArrays), and the packed params
ROW_PARAMETERS = ("k", "rows", "io", "params")


# --- one driver shape -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_every_driver_is_the_one_written_driver(spec: LossSpec) -> None:
    """Each driver is ``<name>_batch``, made by ``jit.driver`` from the one written-out driver
    (the same code object, so no copy can drift), calling its own module's ``<name>_rows``;
    drivers run in parallel, row functions do not, and a batch-coupled loss's driver (one call
    of its row function over the whole batch) runs serial."""
    python = spec.driver.py_func
    assert python.__name__ == python.__qualname__ == f"{spec.name}_batch"
    assert python.__code__ is jit._driver.__code__
    module = sys.modules[python.__module__]
    assert getattr(module, f"{spec.name}_batch") is spec.driver
    rows = getattr(module, f"{spec.name}_rows")
    assert python.__globals__["_rows"] is rows
    assert rows.py_func.__module__ == python.__module__
    assert not rows.targetoptions.get("parallel")
    assert spec.driver.targetoptions.get("parallel", False) is not spec.batch_coupled
    assert python.__globals__["_COUPLED"] is spec.batch_coupled
    assert spec.kernel_names == python.kernel_names


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_every_row_function_takes_the_one_canonical_signature(spec: LossSpec) -> None:
    """``<name>_rows`` takes the block, the arrays as one ``io`` tuple and the packed ``params``,
    plainly, and an
    elementwise loss's ``<name>_point`` takes one element of each input and ``params``, its row
    function being the one written in ``_elementwise``: a loss's arity shows only in its
    ``driver`` call."""
    module = sys.modules[spec.driver.py_func.__module__]
    rows = getattr(module, f"{spec.name}_rows")
    parameters = inspect.signature(rows.py_func).parameters.values()
    assert tuple(p.name for p in parameters) == ROW_PARAMETERS
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in parameters)
    point = getattr(module, f"{spec.name}_point", None)
    if point is not None:
        assert len(inspect.signature(point.py_func).parameters) == 3
        assert list(inspect.signature(point.py_func).parameters)[-1] == "params"
        assert rows.py_func.__code__ is _elementwise._rows.__code__
        assert rows.py_func.__globals__["_point"] is point
        assert rows.py_func.__qualname__ == f"{spec.name}_rows"


def test_a_made_kernel_is_cached_under_its_own_name() -> None:
    """Made kernels are cached per loss like written ones: each driver and row function has its
    own cache index, named after the loss, so two losses made from one template
    never share one."""
    kernels = [spec.driver for spec in REGISTRY]
    kernels += [
        getattr(sys.modules[k.py_func.__module__], k.py_func.__name__.replace("_batch", "_rows"))
        for k in kernels
    ]
    names = [kernel._cache._cache_file._index_name for kernel in kernels]
    assert len(set(names)) == len(kernels)
    for kernel, name in zip(kernels, names, strict=True):
        python = kernel.py_func
        # numba names the index after the source file and the function's own name
        source = Path(inspect.getfile(python)).stem
        assert name.startswith(f"{source}.{python.__qualname__}-"), name
