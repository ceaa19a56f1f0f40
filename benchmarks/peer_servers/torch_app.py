"""The service a user would write with FastAPI and PyTorch: JSON lists in, the loss and its
gradient (by autograd) out, pydantic models both ways (FastAPI serializes a declared return type
straight to JSON in pydantic's Rust core, its fast path).

It runs in its own virtualenv (.bench/peers/torch, from torch.txt beside it), started by
benchmarks/peers.py; it imports nothing of lossd.

    python torch_app.py PORT
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Regression(BaseModel):
    predictions: list[float]
    targets: list[float]


class Classification(BaseModel):
    predictions: list[list[float]]  # logits, (N, C)
    targets: list[int]  # class indices, (N,)


class Answer(BaseModel):
    value: float
    gradient: list[float]


class Answer2D(BaseModel):
    value: float
    gradient: list[list[float]]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/mse")
def mse(request: Regression) -> Answer:
    predictions = torch.tensor(request.predictions, dtype=torch.float64, requires_grad=True)
    loss = F.mse_loss(predictions, torch.tensor(request.targets, dtype=torch.float64))
    loss.backward()
    assert predictions.grad is not None
    return Answer(value=loss.item(), gradient=predictions.grad.tolist())


@app.post("/cross_entropy")
def cross_entropy(request: Classification) -> Answer2D:
    logits = torch.tensor(request.predictions, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(logits, torch.tensor(request.targets, dtype=torch.int64))
    loss.backward()
    assert logits.grad is not None
    return Answer2D(value=loss.item(), gradient=logits.grad.tolist())


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
