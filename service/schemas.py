"""The HTTP contract: request, response, catalogue entry and problem models.

The routes decode request bodies with orjson and ``arrays.decode_array`` (FastAPI's body parsing is
several times slower on large arrays); these models describe the same contract for the OpenAPI
spec, and ``LossOptions`` validates the small non-array fields of every request.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .dtypes import CANONICAL_DTYPES, PACKED_DTYPES
from .losses._spec import Family, TargetForm


def _packed_dtype_schema(schema: dict[str, Any]) -> None:
    """The canonical names as an enum (a generated client's type), or one of numpy's other
    spellings of them by an exact pattern (an enum of those would give a generated client
    colliding names: ``<f8``, ``=f8``, ``|f8``); both from ``dtypes.PACKED_DTYPES``."""
    spellings = [name for name in PACKED_DTYPES if name not in CANONICAL_DTYPES]
    pattern = "^(" + "|".join(re.escape(name) for name in spellings) + ")$"
    schema.pop("type", None)
    schema["anyOf"] = [
        {"type": "string", "enum": list(CANONICAL_DTYPES)},
        {"type": "string", "pattern": pattern},
    ]


class PackedArray(BaseModel):
    """An array as base64 of its little-endian, C-ordered bytes: the fast path for large batches."""

    model_config = ConfigDict(extra="forbid")

    dtype: str = Field(
        description=(
            "float64, float32, float16, bfloat16, int64 or int32, or any name numpy.dtype reads "
            "as one of them (`<f8`, `f8`, `double`, `f4`, `single`, `f2`, `half`, `<i8`, `i4`, "
            "...; little-endian or native: a big-endian name such as `>f8` is a 422). float16 "
            "and bfloat16 compute in float32 unless the request sends `dtype: float64`; "
            "answers are never half precision"
        ),
        json_schema_extra=_packed_dtype_schema,
    )
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)]
    data: str = Field(description="standard base64 of the little-endian, C-ordered bytes")


class PackedResult(BaseModel):
    """A response array packed (``array_format: packed``), in the compute dtype."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["float32", "float64"]
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=3)]
    data: str = Field(description="standard base64 of the little-endian, C-ordered bytes")


class PackedPredictions(PackedArray):
    """Packed predictions: rank 1 or 2, or rank 3 (N, T, C) for ctc."""

    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=3)]


class PackedVector(PackedArray):
    """A packed array of rank 1."""

    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=1)]


Row = Annotated[list[float], Field(min_length=1)]
ArrayIn = Annotated[
    list[float] | list[Row] | PackedArray,
    Field(description="a JSON list (nested for rank 2, rows of at least one number) or packed"),
]
PredictionsIn = Annotated[
    list[float] | list[Row] | list[Annotated[list[Row], Field(min_length=1)]] | PackedPredictions,
    Field(
        description="a JSON list (nested for rank 2, rows of at least one number) or packed; "
        "rank 3 (N, T, C) only for ctc's log-probabilities"
    ),
]
VectorIn = Annotated[
    list[float] | PackedVector, Field(description="(N,): a JSON list or a packed array of rank 1")
]
ArrayOut = Annotated[
    list[float] | list[list[float]] | list[list[list[float]]] | PackedResult,
    Field(description="a JSON list or, with `array_format: packed`, a packed array"),
]

Reduction = Literal["mean", "sum", "none"]
ReduceOver = Literal["samples", "elements"]
ComputeDtype = Literal["float64", "float32"]
ArrayFormat = Literal["list", "packed", "binary"]


class EvaluationOptions(BaseModel):
    """The non-array fields every evaluation shares; arrays are decoded separately."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reduction: Reduction = Field("mean", description="how per-sample losses become one value")
    reduce_over: ReduceOver = Field(
        "samples",
        description=(
            "`samples`: sum and mean over the N per-sample losses (row means, as Keras); "
            "`elements`: over all N·D elements of an elementwise loss (as PyTorch); "
            "per_sample stays one value per row either way"
        ),
    )
    per_sample: bool = Field(True, description="include the per-sample losses")
    gradient: bool = Field(False, description="include the gradient of the reduced value")
    hessian: bool = Field(False, description="include the diagonal of the Hessian")
    input_gradients: bool = Field(
        False,
        description=(
            "include `input_gradients`: the gradient with respect to each differentiable array "
            "of `inputs`, scaled as `gradient` is (empty for a loss without extra inputs)"
        ),
    )
    dtype: ComputeDtype = Field(
        "float64",
        description=(
            "precision of computation and output; when not sent, float64, or float32 when a "
            "packed, binary or .npy array is float16 or bfloat16"
        ),
    )
    array_format: ArrayFormat = Field(
        "list",
        description=(
            "how response arrays are written: JSON lists, packed base64, or `binary`: the "
            "answer in the binary framing (application/octet-stream, a JSON header of "
            "Inference-Header-Content-Length bytes whose arrays are {dtype, shape, "
            "binary_data_size}, their raw little-endian bytes after it in that order)"
        ),
    )


class LossOptions(EvaluationOptions):
    """The non-array fields of ``POST /loss/{name}``."""

    params: dict[str, Any] = Field(
        default_factory=dict, description="the loss's own parameters (see GET /losses/{name})"
    )


class LossSelection(BaseModel):
    """One loss of ``POST /loss``: a name or alias and its parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="canonical name or alias")
    params: dict[str, Any] = Field(default_factory=dict, description="the loss's own parameters")


class MultiLossOptions(EvaluationOptions):
    """The non-array fields of ``POST /loss``."""

    losses: list[LossSelection] = Field(
        min_length=1, max_length=64, description="the losses to evaluate, results in this order"
    )


ARRAY_FIELDS = ("predictions", "targets", "sample_weight")
# The member holding the extra named arrays of the losses that take them (``inputs.var``); in a
# multipart body each is a part named ``inputs.<name>``.
INPUTS = "inputs"


class BatchArrays(BaseModel):
    """The arrays of a request (decoded by ``arrays.decode_array``, documented here)."""

    predictions: PredictionsIn
    # not sent: None (for a loss that takes none); sent, an array (null is refused like any
    # other non-array), so the schema is not nullable
    targets: ArrayIn = Field(  # type: ignore[assignment]
        None,
        description=(
            "required by every loss that takes targets (GET /losses/{name}: `targets`); a loss "
            "that takes none (triplet_margin) is sent none"
        ),
    )
    sample_weight: VectorIn | None = Field(
        None, description="(N,) finite non-negative weights; they enter only the reductions"
    )
    inputs: dict[str, ArrayIn] | None = Field(
        None,
        description=(
            "the extra named arrays of the losses that take them (GET /losses/{name}: "
            "`inputs`), each a list or packed array like `predictions`: gaussian_nll's `var`, "
            "margin_ranking's and cosine_embedding's `input2`, triplet_margin's `positive` and "
            "`negative`, ctc's `input_lengths` and `target_lengths`. Every array a loss takes is required; a name no loss of the request "
            "takes is a 422"
        ),
        examples=[{"var": [0.5, 1.0, 2.0]}],
    )


class LossRequest(LossOptions, BatchArrays):
    """One loss on one batch."""


class MultiLossRequest(MultiLossOptions, BatchArrays):
    """Several losses on one batch; the arrays are decoded once."""


class LossResult(BaseModel):
    """The result of one loss on one batch."""

    loss: str = Field(description="canonical name")
    reduction: Reduction
    reduce_over: ReduceOver
    value: float | None = Field(description="the reduced loss; null for reduction `none`")
    weight_sum: float = Field(description="the normaliser of the mean")
    n: int = Field(description="the batch size N")
    per_sample: ArrayOut | None = None
    gradient: ArrayOut | None = None
    hessian: ArrayOut | None = None
    input_gradients: dict[str, ArrayOut] | None = Field(
        None,
        description=(
            "with `input_gradients: true`: the gradient with respect to each differentiable "
            "array of `inputs`, by its name, of that array's shape"
        ),
    )
    params: dict[str, Any] = Field(description="the parameters in force, defaults filled in")


class MultiLossResult(BaseModel):
    """One result per requested loss, in request order."""

    results: list[LossResult]


class AliasConventions(BaseModel):
    """What an alias brings from its library: parameter defaults, the reduction, its names for
    lossd's parameters, and the loss (N, C) predictions go to instead (scikit-learn's log_loss)."""

    library: str
    params: dict[str, Any] = Field(description="defaults under the parameters a request sends")
    reduce_over: ReduceOver
    param_names: dict[str, str] | None = Field(None, description="the library's name -> lossd's")
    rows_loss: str | None = None


class ExtraInputInfo(BaseModel):
    """An extra named array a loss takes under `inputs` (on /v2: an input tensor of the name)."""

    name: str
    shapes: list[Literal["same", "rows", "column"]] = Field(
        description=(
            "its shapes next to (N, D) predictions: `same` (N, D), `rows` (N,), `column` (N, 1)"
        )
    )
    differentiable: bool = Field(description="`input_gradients: true` returns its gradient")
    description: str


class LossInfo(BaseModel):
    """One catalogue entry."""

    name: str
    aliases: list[str]
    family: Family
    summary: str
    formula: str = Field(description="per-sample loss in LaTeX")
    targets: list[TargetForm] = Field(
        description=(
            "the forms of targets it takes: of the predictions' shape, (N,) class indices, "
            "(N,) one label per sample, (N,) group labels, (N, 2) intervals, or (N, S) padded "
            "label sequences of (N, T, C) predictions; none for a loss that takes no targets"
        )
    )
    inputs: list[ExtraInputInfo] = Field(
        description="the extra named arrays it takes under `inputs`, each required"
    )
    params: dict[str, Any] = Field(description="JSON schema of the parameters")
    gradient: bool
    hessian: bool
    hessian_note: str | None = None
    batch_coupled: bool = Field(
        description="a sample's loss depends on other rows of the batch (a risk set, the other "
        "embeddings): the batch is evaluated whole and must not be split across requests"
    )
    mean_factor: bool = Field(
        description="its `mean` weighs each sample's loss by a factor of the sample's own "
        "(ctc: 1 / its target length, as torch's), so the mean is Σ w_i·m_i·l_i / Σ w_i·κ_i, not "
        "the sum over the weight sum: pieces of a split batch merge as their means times their "
        "weight sums"
    )
    reference: str
    alias_conventions: dict[str, AliasConventions] = Field(
        description="the aliases that carry their library's conventions"
    )


class Catalogue(BaseModel):
    """Every loss lossd serves."""

    losses: list[LossInfo]


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem document with lossd's stable ``code``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemError] | None = None


class Health(BaseModel):
    """Liveness (`ok`) or readiness (`ready`, with how the kernels got ready)."""

    status: Literal["ok", "ready"]
    kernels_from_cache: int | None = Field(
        None, description="kernel signatures loaded from numba's on-disk cache at start-up"
    )
    kernels_compiled: int | None = Field(
        None, description="kernel signatures compiled at start-up: 0 when the cache was warm"
    )
