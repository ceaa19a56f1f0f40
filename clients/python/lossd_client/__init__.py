"""Python client of lossd: loss values, gradients and Hessians of numpy arrays over HTTP.

    from lossd_client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.evaluate("huber", predictions, targets, params={"delta": 1.0},
                                 gradient=True)
        result.value, result.per_sample, result.gradient

Arrays go as raw bytes (lossd's binary framing) and come back the same way; batches larger than
the server accepts are split into row pieces, sent concurrently and merged exactly.
"""

__version__ = "0.1.0"

from ._client import DEFAULT_URL, AsyncClient, Batch, Client, ClientOptions, Evaluation
from ._errors import (
    AnswerError,
    LossdError,
    NotFound,
    Overloaded,
    ProblemEntry,
    RequestError,
    ServerError,
    TooLarge,
    Unauthorized,
    UnknownLoss,
    ValidationError,
)
from ._jobs import Result
from .integrations import lightgbm_objective, sklearn_scorer, xgboost_objective

__all__ = [
    "DEFAULT_URL",
    "AnswerError",
    "AsyncClient",
    "Batch",
    "Client",
    "ClientOptions",
    "Evaluation",
    "LossdError",
    "NotFound",
    "Overloaded",
    "ProblemEntry",
    "RequestError",
    "Result",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "UnknownLoss",
    "ValidationError",
    "__version__",
    "lightgbm_objective",
    "sklearn_scorer",
    "xgboost_objective",
]
