"""The start-up warm-up reaches every kernel a request can reach, in-process."""

from __future__ import annotations

import itertools

import numpy as np

from service.codecs import oip
from service.codecs.base64 import Base64
from service.codecs.bodies import Framed
from service.codecs.jsontext import LIFT_MIN, dumps
from service.codecs.loss import evaluate_one
from service.losses import REGISTRY
from service.warmup import kernel_counts, warm_up


def test_warm_up_runs_every_loss_in_both_dtypes() -> None:
    """warm_up's inputs are in every loss's domain: a server whose warm-up raised would never
    turn ready (and now exits with 3), so a loss whose domain rule refuses them fails here."""
    warm_up(REGISTRY)
    counts = kernel_counts()
    assert counts.cached + counts.compiled > 0


def test_a_request_after_warm_up_compiles_and_loads_no_kernel() -> None:
    """Nothing is left to compile on a request: a kernel compiled there (the JSON number parser
    was, once) holds the GIL for up to half a second and stalls the event loop with it. Bodies
    of every array form: JSON lists of floats and of integers (rank 1 and 2), packed, strings,
    the binary framing, and /v2's JSON tensors."""
    warm_up(REGISTRY)
    before = kernel_counts()
    rows = LIFT_MIN  # every list long enough to be lifted out of the JSON text
    predictions, targets = np.linspace(0.1, 0.9, rows), np.arange(rows) % 2
    packed = {"dtype": "float64", "shape": [rows], "data": Base64(predictions)}
    for doc in (
        {"predictions": predictions.tolist(), "targets": targets.tolist()},
        {
            "predictions": predictions.reshape(-1, 2).tolist(),
            "targets": targets.reshape(-1, 2).tolist(),
        },
        {"predictions": packed, "targets": predictions.tolist(), "array_format": "packed"},
    ):
        evaluate_one("binary_cross_entropy", dumps(doc).tobytes(), rows)
    # the other wire formats: the binary framing on /loss (float16 predictions) and /v2 JSON
    header = dumps(
        {"predictions": {"dtype": "float16", "shape": [rows], "binary_data_size": 2 * rows},
         "targets": targets.tolist(), "array_format": "binary"}
    ).tobytes()  # fmt: skip
    body = np.frombuffer(header + predictions.astype("<f2").tobytes(), dtype=np.uint8)
    evaluate_one("binary_cross_entropy", body, rows, form=Framed(len(header)))
    inputs = [
        {"name": "predictions", "shape": [rows], "datatype": "FP64", "data": predictions.tolist()},
        {"name": "targets", "shape": [rows], "datatype": "FP64", "data": targets.tolist()},
    ]
    v2 = np.frombuffer(dumps({"inputs": inputs}).tobytes(), dtype=np.uint8)
    oip.infer("binary_cross_entropy", None, v2.copy(), rows)
    assert kernel_counts() == before


def test_class_index_targets_after_warm_up_compile_no_kernel() -> None:
    """The multiclass kernels read (N,) class indices as they are, a signature of their own:
    warm-up compiles it too, so indices sent as integers, integral floats or packed int32, with
    an ignored class inside [0, C) or an index outside it, class weights and sample weights, in
    both dtypes, compile nothing on a request."""
    warm_up(REGISTRY)
    before = kernel_counts()
    probabilities = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    index = np.array([2, 0, 1])
    int32 = {"dtype": "int32", "shape": [3], "data": Base64(index.astype("<i4"))}
    for spec in REGISTRY:
        if "class_index" not in spec.targets:
            continue
        fields = spec.params.model_fields
        extra: list[dict[str, object]] = [{}]
        if "ignore_index" in fields:
            extra += [{"ignore_index": 1}, {"ignore_index": -100}]
        if "class_weight" in fields:
            extra.append({"class_weight": "balanced"})
        for targets in (index.tolist(), index.astype(float).tolist(), int32):
            for more, dtype, weight in itertools.product(extra, ("float64", "float32"), (0, 1)):
                doc = {"predictions": probabilities.tolist(), "targets": targets,
                       "params": {**spec.params.warm_up, **more}, "dtype": dtype,
                       "gradient": True, "hessian": spec.hessian, "array_format": "packed"}  # fmt: skip
                if weight:
                    doc["sample_weight"] = [1.0, 0.5, 2.0]
                evaluate_one(spec.name, dumps(doc).tobytes(), 10)
    assert kernel_counts() == before
