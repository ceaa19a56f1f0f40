"""An MLServer runtime computing a loss and its gradient with NumPy, as a user of MLServer writes
one: MLServer's NumpyCodec decodes the inputs and encodes the outputs (``value``, the mean loss,
and ``gradient``, of the mean), so the request and response go through MLServer's own paths for
REST JSON, gRPC typed contents and gRPC raw contents.

Models: ``mse`` (predictions and targets of one shape) and ``cross_entropy`` (logits (N, C) and
class indices (N,)); each model's name picks its loss (model-settings.json beside this file).
Float32 and float16 inputs compute in float32, float64 in float64, as lossd does. It runs in its
own virtualenv (.bench/peers/mlserver, from benchmarks/peer_servers/mlserver.txt), started by benchmarks/peers.py.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


def _floats(array: np.ndarray) -> np.ndarray:
    return array if array.dtype == np.float64 else array.astype(np.float32, copy=False)


def mse(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of (p - t)^2 and its gradient 2 (p - t) / n."""
    p = _floats(predictions)
    diff = p - targets.astype(p.dtype, copy=False)
    value = np.mean(diff * diff, dtype=p.dtype)
    return np.array([value], dtype=p.dtype), diff * p.dtype.type(2 / diff.size)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of logsumexp(z) - z[t] over the rows, and its gradient (softmax(z) - onehot(t)) / n."""
    z = _floats(logits)
    rows = np.arange(z.shape[0])
    shifted = z - z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    losses = np.log(total[:, 0]) - shifted[rows, targets]
    gradient = exp / total
    gradient[rows, targets] -= 1
    gradient /= z.shape[0]
    return np.array([losses.mean()], dtype=z.dtype), gradient


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


class Loss(MLModel):
    async def load(self) -> bool:
        self._loss = LOSSES[self.name]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        value, gradient = self._loss(inputs["predictions"], inputs["targets"])
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output("value", value),
                NumpyCodec.encode_output("gradient", gradient),
            ],
        )
