"""The shipped Python client (clients/python, ``lossd_client``) against live servers: answers as
numpy, the binary and JSON transports, batches split around LOSSD_MAX_ELEMENTS and merged
exactly, typed errors and 503 retries, the async client, the gradient-boosting objectives and
the scorer trained against the built-ins they mirror, and the command line on files."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import lossd_client
import numpy as np
import pytest
from lossd_client import (
    AsyncClient,
    Client,
    Evaluation,
    Overloaded,
    Result,
    TooLarge,
    Unauthorized,
    UnknownLoss,
    ValidationError,
)
from lossd_client._wire import Options, binary_body

from service.losses import REGISTRY
from tests.support.servers import ROOT, Server, served

LIMIT = 100_000  # LOSSD_MAX_ELEMENTS of the limited server
N = 250_000  # rows of the split batches: three pieces there, one request at the defaults
KEY = "client-test-key"
MiB = 1 << 20
rng = np.random.default_rng(14)


@pytest.fixture(scope="module")
def limited() -> Iterator[Server]:
    """A server refusing arrays over LIMIT elements, and requests without the API key."""
    with served({"LOSSD_MAX_ELEMENTS": str(LIMIT), "LOSSD_API_KEYS": json.dumps([KEY])}) as srv:
        yield srv


@pytest.fixture
def lossd(server: Server) -> Iterator[Client]:
    """A client of the session's server (default limits: every batch here is one request)."""
    with Client(server.url) as c:
        yield c


@pytest.fixture
def split_client(limited: Server) -> Iterator[Client]:
    with Client(limited.url, KEY) as c:
        yield c


def _assert_same(got: Result, expected: Result, rtol: float = 1e-12) -> None:
    """Two results agree: the scalars to ``rtol``, the arrays elementwise."""
    assert got.loss == expected.loss and got.reduction == expected.reduction
    assert got.n == expected.n
    assert got.weight_sum == pytest.approx(expected.weight_sum, rel=rtol)
    if expected.value is None:
        assert got.value is None
    else:
        assert got.value == pytest.approx(expected.value, rel=rtol, abs=1e-300)
    for name in ("per_sample", "gradient", "hessian"):
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), name
        if b is not None:
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=name)


# --- the package ---------------------------------------------------------------------------------


def test_the_client_is_released_with_the_servers_version() -> None:
    """One release, one number: the client's version is the repository's pyproject.toml's."""
    server_version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert lossd_client.__version__ == server_version
    assert metadata.version("lossd-client") == server_version


def test_the_client_depends_on_httpx_and_numpy_only() -> None:
    """The integrations' libraries are extras, never requirements."""
    required = [r for r in metadata.requires("lossd-client") or [] if "extra ==" not in r]
    assert sorted(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in required) == [
        "httpx",
        "numpy",
    ]


def test_upload_slices_are_views_of_the_arrays() -> None:
    """The binary body is the JSON header, then slices of the arrays' own memory (no copy, no
    joined body); each slice at most the chunk size (httpcore's copy of an unsent tail is
    quadratic in the size of what it is handed)."""
    predictions, targets = rng.normal(size=300_000), rng.normal(size=300_000)
    body = binary_body(Options().document(), {"predictions": predictions, "targets": targets})
    chunks = list(body.chunks(MiB))
    assert sum(map(len, chunks)) == body.length == len(body.parts[0]) + 2 * predictions.nbytes
    assert max(map(len, chunks)) <= MiB
    shared = [np.frombuffer(c, np.uint8) for c in chunks[1:]]
    assert all(np.shares_memory(s, predictions) or np.shares_memory(s, targets) for s in shared)


# --- evaluating ----------------------------------------------------------------------------------


@pytest.mark.loss("huber")
def test_evaluate_answers_numbers_and_numpy_arrays(lossd: Client) -> None:
    """The README's huber request: value, weight_sum and n are numbers, the arrays numpy; what
    was not asked for is None."""
    result = lossd.evaluate(
        "huber",
        np.array([[0.5, 2.0], [1.0, -1.0]]),
        np.array([[0.0, 0.0], [1.0, 1.0]]),
        params={"delta": 1.0},
        gradient=True,
    )
    assert (result.value, result.weight_sum, result.n) == (0.78125, 2.0, 2)
    assert isinstance(result.value, float) and isinstance(result.n, int)
    assert isinstance(result.per_sample, np.ndarray) and isinstance(result.gradient, np.ndarray)
    np.testing.assert_array_equal(result.per_sample, [0.8125, 0.75])
    np.testing.assert_array_equal(result.gradient, [[0.125, 0.25], [0.0, -0.25]])
    assert result.hessian is None
    assert result.params == {"delta": 1.0} and result.requests == 1


# Cases for the transports and the splits: (loss, predictions, targets, weights, params).
def _cases(
    n: int,
) -> dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]]:
    logits = rng.normal(size=(n, 4))
    return {
        "mse": ("mse", rng.normal(size=n), rng.normal(size=n), None, {}),
        "mse weighted": (
            "mse",
            rng.normal(size=n),
            rng.normal(size=n),
            rng.uniform(0.0, 2.0, size=n),
            {},
        ),
        "cross_entropy (N, 4), class indices": (
            "cross_entropy",
            logits,
            rng.integers(0, 4, size=n),
            rng.uniform(0.5, 2.0, size=n),
            {"from_logits": True, "class_weight": [1.0, 2.0, 0.5, 1.0]},
        ),
        "MSELoss (N, 2), over elements": (
            "MSELoss",
            rng.normal(size=(n, 2)),
            rng.normal(size=(n, 2)),
            None,
            {},
        ),
    }


@pytest.mark.loss("mse", "cross_entropy")
@pytest.mark.parametrize("case", list(_cases(1)))
def test_the_json_transport_answers_what_the_binary_one_does(server: Server, case: str) -> None:
    """transport="json" (packed arrays both ways) and the default binary framing give the same
    numbers, which are the server's JSON-list answer's."""
    name, predictions, targets, weights, params = _cases(1000)[case]
    asked: dict[str, Any] = {"sample_weight": weights, "params": params, "gradient": True}
    with Client(server.url) as binary, Client(server.url, transport="json") as text:
        got = binary.evaluate(name, predictions, targets, hessian=True, **asked)
        _assert_same(text.evaluate(name, predictions, targets, hessian=True, **asked), got, 0)
    plain = httpx.post(
        f"{server.url}/loss/{name}",
        json={
            "predictions": predictions.tolist(),
            "targets": targets.tolist(),
            **({} if weights is None else {"sample_weight": weights.tolist()}),
            "params": params,
            "gradient": True,
        },
    ).json()
    assert got.value == plain["value"] and got.weight_sum == plain["weight_sum"]
    np.testing.assert_array_equal(got.gradient, plain["gradient"])  # type: ignore[arg-type]


@pytest.mark.loss("mse", "cross_entropy")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(_cases(1)))
def test_a_batch_over_the_limit_is_split_and_merged_exactly(
    server: Server, split_client: Client, case: str, reduction: str
) -> None:
    """250,000 rows against LOSSD_MAX_ELEMENTS = 100,000: the client learns the limit from the
    413, sends row pieces concurrently and merges them into what one request to a server with
    the default limit answers, to 1e-12: value, weight_sum, n, per-sample losses, and the
    gradient and Hessian (a split mean's rescaled by the pieces' over the total weight sum)."""
    name, predictions, targets, weights, params = _cases(N)[case]
    asked: dict[str, Any] = {
        "sample_weight": weights,
        "params": params,
        "reduction": reduction,
        "gradient": True,
        "hessian": True,
    }
    split = split_client.evaluate(name, predictions, targets, **asked)
    with Client(server.url) as whole:
        one = whole.evaluate(name, predictions, targets, **asked)
    assert one.requests == 1
    assert split.requests >= -(-predictions.size // LIMIT)
    _assert_same(split, one)


def _with_inputs(n: int) -> dict[str, tuple[str, np.ndarray, np.ndarray | None, dict[str, Any]]]:
    """Batches of the losses with extra inputs: (name, predictions, targets, inputs)."""
    return {
        "gaussian_nll-var-per-sample": (
            "gaussian_nll",
            rng.normal(size=(n, 2)),
            rng.normal(size=(n, 2)),
            {"var": rng.uniform(0.1, 2.0, size=n)},
        ),
        "triplet_margin": (
            "triplet_margin",
            rng.normal(size=(n, 2)),
            None,
            {"positive": rng.normal(size=(n, 2)), "negative": rng.normal(size=(n, 2))},
        ),
    }


@pytest.mark.loss("gaussian_nll", "triplet_margin")
@pytest.mark.parametrize("transport", ["binary", "json"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", list(_with_inputs(1)))
def test_inputs_are_split_with_their_rows_and_input_gradients_merged(
    server: Server, limited: Server, case: str, reduction: str, transport: str
) -> None:
    """``inputs={...}`` travels with the batch and ``input_gradients=True`` answers
    ``Result.input_gradients``; a batch over the limit is split with its extra inputs cut at
    the same rows, and the pieces' input gradients are concatenated (a split mean's rescaled
    like the gradient): what one request to a default server answers, to 1e-12; the same as
    the answer's own arrays (``evaluate_one`` through the JSON route)."""
    name, predictions, targets, inputs = _with_inputs(N // 2)[case]
    weights = rng.uniform(0.5, 2.0, size=predictions.shape[0])
    asked: dict[str, Any] = {"sample_weight": weights, "reduction": reduction, "gradient": True,
                             "inputs": inputs, "input_gradients": True}  # fmt: skip
    with Client(limited.url, KEY, transport=transport) as split_client:  # type: ignore[arg-type]
        split = split_client.evaluate(name, predictions, targets, **asked)
    with Client(server.url, transport=transport) as whole:  # type: ignore[arg-type]
        one = whole.evaluate(name, predictions, targets, **asked)
        without = whole.evaluate(name, predictions, targets, **{**asked, "input_gradients": False})
    assert one.requests == 1 and split.requests > 1
    _assert_same(split, one)
    assert one.input_gradients is not None and split.input_gradients is not None
    assert without.input_gradients is None
    assert set(one.input_gradients) == set(inputs) == set(split.input_gradients)
    for key, gradient in one.input_gradients.items():
        assert gradient.shape == inputs[key].shape
        np.testing.assert_allclose(split.input_gradients[key], gradient, rtol=1e-12, atol=1e-300)


@pytest.mark.loss("ctc")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_split_ctc_batch_is_one_requests_answer(
    server: Server, limited: Server, reduction: str
) -> None:
    """ctc's (N, T, C) batch over the limit is split by rows, its lengths cut with them; its
    mean divides each sample's loss by its target length (``mean_factor`` in the catalogue),
    so a split mean is asked of the pieces as means and merged as Σ_k mean_k·W_k / W, the
    gradient of piece k scaled by W_k / W: one request's answer to 1e-12."""
    n, t, c = 3000, 20, 5  # 300,000 elements: 3 pieces under the limited server's 100,000
    logits = rng.normal(size=(n, t, c))
    log_probs = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    targets = rng.integers(1, c, size=(n, 6))
    inputs = {"input_lengths": rng.integers(12, t + 1, size=n),
              "target_lengths": rng.integers(1, 7, size=n)}  # fmt: skip
    asked: dict[str, Any] = {"sample_weight": rng.uniform(0.5, 2.0, size=n),
                             "reduction": reduction, "gradient": True, "inputs": inputs}  # fmt: skip
    with Client(limited.url, KEY) as split_client, Client(server.url) as whole:
        split = split_client.evaluate("ctc", log_probs, targets, **asked)
        one = whole.evaluate("ctc", log_probs, targets, **asked)
    assert one.requests == 1 and split.requests == 3
    _assert_same(split, one)


@pytest.mark.loss("mse", "gaussian_nll")
def test_input_gradients_of_a_loss_without_inputs_are_empty(lossd: Client) -> None:
    """A loss without extra inputs answers input_gradients as an empty mapping; a missing
    input is the server's 422, raised as a ValidationError naming it."""
    p = np.array([0.5, 2.0, 1.0])
    assert lossd.evaluate("mse", p, p[::-1], input_gradients=True).input_gradients == {}
    with pytest.raises(ValidationError) as caught:
        lossd.evaluate("gaussian_nll", p, p)
    assert caught.value.errors[0].loc == ("inputs", "var")


@pytest.mark.loss("mse")
def test_a_split_weighted_mean_is_numpys(split_client: Client) -> None:
    """The split weighted mse against NumPy's formulas: Σw r² / Σw, 2 w r / Σw, 2 w / Σw."""
    p, t, w = rng.normal(size=N), rng.normal(size=N), rng.uniform(0.0, 2.0, size=N)
    result = split_client.evaluate("mse", p, t, sample_weight=w, gradient=True, hessian=True)
    r, total = p - t, w.sum()
    assert result.requests > 1
    assert result.value == pytest.approx(float(np.sum(w * r * r) / total), rel=1e-12)
    assert result.weight_sum == pytest.approx(float(total), rel=1e-12)
    np.testing.assert_allclose(result.per_sample, r * r, rtol=1e-12)  # type: ignore[arg-type]
    np.testing.assert_allclose(result.gradient, 2 * w * r / total, rtol=1e-12)  # type: ignore[arg-type]
    np.testing.assert_allclose(result.hessian, 2 * w / total, rtol=1e-12)  # type: ignore[arg-type]


@pytest.mark.loss("mse")
def test_a_float32_split_agrees_to_float32(server: Server, split_client: Client) -> None:
    """In float32 the pieces' sums are float32 numbers, so the merge agrees to float32."""
    p, t = rng.normal(size=N).astype(np.float32), rng.normal(size=N).astype(np.float32)
    asked: dict[str, Any] = {"dtype": "float32", "gradient": True}
    split = split_client.evaluate("mse", p, t, **asked)
    with Client(server.url) as whole:
        one = whole.evaluate("mse", p, t, **asked)
    assert split.gradient is not None and split.gradient.dtype == np.float32
    _assert_same(split, one, rtol=1e-6)


def _requests_with_status(srv: Server, status: int) -> float:
    text = httpx.get(f"{srv.url}/metrics", headers={"X-API-Key": KEY}).text
    found = re.findall(rf'lossd_requests_total{{[^}}]*status="{status}"[^}}]*}} (\S+)', text)
    return sum(map(float, found))


@pytest.mark.loss("mse")
def test_a_limit_given_to_the_constructor_splits_before_any_refusal(limited: Server) -> None:
    """With max_elements the client never sends what the server would refuse: no 413."""
    refused = _requests_with_status(limited, 413)
    with Client(limited.url, KEY, max_elements=LIMIT) as c:
        result = c.evaluate("mse", rng.normal(size=N), rng.normal(size=N))
    assert result.requests == 3
    assert _requests_with_status(limited, 413) == refused


@pytest.fixture(scope="module")
def body_limited() -> Iterator[Server]:
    """A server refusing bodies over 1 MiB, before reading them, and closing the connection."""
    with served({"LOSSD_MAX_BODY_BYTES": str(MiB)}) as srv:
        yield srv


@pytest.mark.loss("mse")
def test_a_body_over_the_limit_is_split_even_when_the_413_is_lost(body_limited: Server) -> None:
    """A 413 payload_too_large comes before the body is read, then the connection closes: the
    client may read the 413 (and learn the limit) or lose it with the connection (asyncio always
    does); either way the batch is split until its bodies fit, and merged exactly."""
    p, t = rng.normal(size=N), rng.normal(size=N)

    async def through_asyncio() -> Result:
        async with AsyncClient(body_limited.url) as c:
            return await c.evaluate("mse", p, t, gradient=True)

    with Client(body_limited.url) as c:
        results = [c.evaluate("mse", p, t, gradient=True), asyncio.run(through_asyncio())]
    for result in results:
        assert result.requests >= 4  # 4 MB in bodies of at most 1 MiB
        assert result.value == pytest.approx(float(np.mean((p - t) ** 2)), rel=1e-12)
        np.testing.assert_allclose(result.gradient, 2 * (p - t) / N, rtol=1e-12)  # type: ignore[arg-type]


@pytest.mark.loss("mse")
def test_a_row_wider_than_the_limit_is_too_large(split_client: Client) -> None:
    """One row over the limit cannot be split: the 413 reaches the caller, typed."""
    with pytest.raises(TooLarge) as refused:
        split_client.evaluate("mse", np.zeros((1, LIMIT + 1)), np.zeros((1, LIMIT + 1)))
    assert refused.value.status == 413 and refused.value.code == "too_many_elements"


@pytest.mark.loss("cox", "ntxent")
def test_a_batch_coupled_loss_is_sent_whole(server: Server) -> None:
    """A batch-coupled loss (Cox's risk sets, ntxent's pairs) is never split: with limits that
    would split any other batch, the client learns from the catalogue that it may not and sends
    the batch whole, which a server with the default limits answers as one request."""
    margins, times = rng.normal(size=5000), rng.uniform(0.5, 5.0, size=5000)
    embeddings, labels = rng.normal(size=(400, 8)), rng.integers(0, 20, size=400)
    with Client(server.url) as whole, Client(server.url, max_elements=1000) as small:
        for name, p, t in (("cox", margins, times), ("survival:cox", margins, times),
                           ("ntxent", embeddings, labels)):  # fmt: skip
            got = small.evaluate(name, p, t, gradient=True)
            assert got.requests == 1
            _assert_same(got, whole.evaluate(name, p, t, gradient=True), rtol=0)
        assert small.evaluate("mse", margins, times).requests == 5  # split, as ever


@pytest.mark.loss("cox")
def test_a_batch_coupled_loss_over_the_limit_is_too_large(
    split_client: Client, limited: Server
) -> None:
    """A batch-coupled loss's batch over the server's limit is a TooLarge that says it cannot
    be split, whether the client learnt the limit from a 413 or was given it."""
    margins, times = rng.normal(size=N), rng.uniform(0.5, 5.0, size=N)
    with Client(limited.url, KEY, max_elements=LIMIT) as given:
        for client in (split_client, given):
            with pytest.raises(TooLarge) as refused:
                client.evaluate("cox", margins, times)
            assert refused.value.code == "too_many_elements"
            assert "batch-coupled" in refused.value.detail and str(N) in refused.value.detail


@pytest.mark.loss("cross_entropy", "mse")
def test_problems_become_typed_exceptions(lossd: Client, limited: Server) -> None:
    """404 unknown_loss, 422 with its errors' locations, 401 without the key."""
    with pytest.raises(UnknownLoss) as unknown:
        lossd.evaluate("no-such-loss", [1.0], [1.0])
    assert unknown.value.status == 404 and unknown.value.code == "unknown_loss"
    with pytest.raises(ValidationError) as invalid:
        lossd.evaluate("cross_entropy", np.array([[0.5, 1.5]]), np.array([1]))
    assert invalid.value.code == "out_of_domain"
    assert invalid.value.errors[0].loc == ("predictions", 0, 1)
    assert "from_logits" in invalid.value.detail
    with pytest.raises(ValidationError) as mismatched:  # sent as given, never cut to fit
        lossd.evaluate("mse", np.zeros(3), np.zeros(4))
    assert mismatched.value.code == "shape_mismatch"
    with Client(limited.url) as keyless, pytest.raises(Unauthorized) as denied:
        keyless.evaluate("mse", [1.0], [1.0])
    assert denied.value.status == 401 and denied.value.code == "unauthorized"


@pytest.fixture(scope="module")
def memory_server() -> Iterator[Server]:
    """A server whose whole process may hold 8 MiB, a request waiting 0.2 s for it."""
    env = {"LOSSD_MAX_PROCESS_BYTES": str(8 * MiB), "LOSSD_MEMORY_WAIT": "0.2"}
    with served(env) as srv:
        yield srv


def _hold_memory(srv: Server, size: int) -> socket.socket:
    """A connection whose upload of ``size`` bytes is all sent but its last byte: the server
    holds the body's bytes in its memory account until the connection goes."""
    host, port = srv.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        "POST /loss/mse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    sock.sendall(head + b" " * (size - 1))
    time.sleep(0.2)
    return sock


@pytest.mark.loss("mse")
def test_503_is_retried_after_retry_after(memory_server: Server) -> None:
    """503 overloaded (the memory is taken) is retried after its Retry-After; without retries
    it reaches the caller as Overloaded with retry_after."""
    p, t = rng.normal(size=LIMIT), rng.normal(size=LIMIT)
    held = _hold_memory(memory_server, 7 * MiB)
    try:
        with Client(memory_server.url, retries=0) as impatient, pytest.raises(Overloaded) as busy:
            impatient.evaluate("mse", p, t)
        assert busy.value.status == 503 and busy.value.code == "overloaded"
        assert busy.value.retry_after == 1.0
        threading.Timer(0.5, held.close).start()
        started = time.monotonic()
        with Client(memory_server.url, retries=3) as patient:
            result = patient.evaluate("mse", p, t)
        assert time.monotonic() - started >= 1.0  # it waited Retry-After at least once
        assert result.value == pytest.approx(float(np.mean((p - t) ** 2)), rel=1e-12)
    finally:
        held.close()


@pytest.mark.loss("mse", "huber", "cross_entropy")
def test_evaluate_many_keeps_the_order(lossd: Client) -> None:
    """Several evaluations at once come back in order, each what evaluate gives."""
    p, t = rng.normal(size=5000), rng.normal(size=5000)
    logits, labels = rng.normal(size=(5000, 3)), rng.integers(0, 3, size=5000)
    evaluations = [
        Evaluation("mse", p, t, gradient=True),
        Evaluation("huber", p, t, params={"delta": 0.5}, reduction="sum"),
        Evaluation("cross_entropy", logits, labels, params={"from_logits": True}),
        Evaluation("mse", t, p, per_sample=False),
    ]
    results = lossd.evaluate_many(evaluations)
    for evaluation, result in zip(evaluations, results, strict=True):
        alone = lossd.evaluate(
            evaluation.name,
            evaluation.predictions,
            evaluation.targets,
            reduction=evaluation.reduction,
            params=evaluation.params,
            per_sample=evaluation.per_sample,
            gradient=evaluation.gradient,
        )
        _assert_same(result, alone, 0)


@pytest.mark.loss("mse")
def test_evaluate_stream_is_one_request_over_the_batches(lossd: Client) -> None:
    """A stream of batches gives the value, weight_sum and n of one request over all rows."""
    p, t, w = rng.normal(size=50_000), rng.normal(size=50_000), rng.uniform(size=50_000)
    whole = lossd.evaluate("mse", p, t, sample_weight=w)
    seen: list[int] = []
    batches = ((p[s : s + 8192], t[s : s + 8192], w[s : s + 8192]) for s in range(0, 50_000, 8192))
    streamed = lossd.evaluate_stream("mse", batches, progress=seen.append)
    assert streamed.value == pytest.approx(whole.value, rel=1e-12)
    assert (streamed.weight_sum, streamed.n, sum(seen)) == (
        pytest.approx(whole.weight_sum),
        50_000,
        50_000,
    )
    assert streamed.per_sample is None and streamed.requests == 7


@pytest.mark.loss("mse", "huber")
def test_the_async_client_answers_what_the_sync_one_does(server: Server, limited: Server) -> None:
    """AsyncClient: the same split and merge, evaluate_many, evaluate_stream and losses()."""
    p, t = rng.normal(size=N), rng.normal(size=N)

    async def scenario() -> tuple[Result, list[Result], Result, int]:
        async with AsyncClient(limited.url, KEY) as split, AsyncClient(server.url) as whole:
            one = await split.evaluate("mse", p, t, gradient=True)
            many = await whole.evaluate_many(
                [Evaluation("mse", p, t, gradient=True), Evaluation("huber", p, t)]
            )

            async def batches() -> Any:
                for s in range(0, N, 65536):
                    yield p[s : s + 65536], t[s : s + 65536]

            streamed = await split.evaluate_stream("mse", batches())
            return one, many, streamed, len(await whole.losses())

    one, many, streamed, count = asyncio.run(scenario())
    with Client(server.url) as sync:
        expected = sync.evaluate("mse", p, t, gradient=True)
        _assert_same(many[1], sync.evaluate("huber", p, t), 0)
    assert one.requests > 1
    _assert_same(one, expected)
    _assert_same(many[0], expected, 0)
    assert streamed.value == pytest.approx(expected.value, rel=1e-12) and streamed.n == N
    assert count == len(REGISTRY)


def test_losses_is_the_catalogue(lossd: Client) -> None:
    losses = lossd.losses()
    assert {"mse", "huber", "cross_entropy"} <= {entry["name"] for entry in losses}
    assert all({"name", "aliases", "family"} <= set(entry) for entry in losses)


# --- gradient boosting and scikit-learn ----------------------------------------------------------


def _classification(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 5))
    logit = x @ rng.normal(size=5)
    return x, (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.float64)


XGB = {"max_depth": 3, "eta": 0.3, "tree_method": "hist", "nthread": 1}


@pytest.mark.loss("binary_cross_entropy")
def test_the_xgboost_objective_trains_binary_logistic(lossd: Client) -> None:
    """15 rounds with lossd's BCE from logits give binary:logistic's margins (its base_score
    0.5 is a probability: margin 0, the custom run's base_score), weights applied alike."""
    xgb = pytest.importorskip("xgboost")
    x, y = _classification()
    train = xgb.DMatrix(x, label=y, weight=rng.uniform(0.5, 2.0, size=len(y)))
    builtin = xgb.train({**XGB, "objective": "binary:logistic", "base_score": 0.5}, train, 15)
    objective = lossd_client.xgboost_objective(
        lossd, "binary_cross_entropy", params={"from_logits": True}
    )
    custom = xgb.train({**XGB, "base_score": 0.0}, train, 15, obj=objective)
    expected = builtin.predict(train, output_margin=True)
    np.testing.assert_allclose(custom.predict(train, output_margin=True), expected, atol=1e-4)


@pytest.mark.loss("pseudo_huber")
def test_the_xgboost_objective_trains_pseudohubererror(lossd: Client) -> None:
    """pseudo_huber(delta) has reg:pseudohubererror(huber_slope)'s gradient and Hessian."""
    xgb = pytest.importorskip("xgboost")
    x = rng.normal(size=(2000, 5))
    train = xgb.DMatrix(x, label=x @ rng.normal(size=5) + rng.normal(size=2000))
    params = {**XGB, "base_score": 0.0}
    builtin = xgb.train(
        {**params, "objective": "reg:pseudohubererror", "huber_slope": 1.5}, train, 15
    )
    objective = lossd_client.xgboost_objective(lossd, "pseudo_huber", params={"delta": 1.5})
    custom = xgb.train(params, train, 15, obj=objective)
    np.testing.assert_allclose(custom.predict(train), builtin.predict(train), atol=1e-4)


@pytest.mark.loss("binary_cross_entropy")
def test_the_lightgbm_objective_trains_binary(lossd: Client) -> None:
    """LightGBM's binary objective (not boosted from the average: a custom objective starts
    from raw score 0) and lossd's BCE from logits grow the same trees."""
    lgb = pytest.importorskip("lightgbm")
    x, y = _classification()
    params = {"num_leaves": 8, "learning_rate": 0.3, "num_threads": 1, "verbose": -1}
    params |= {"deterministic": True, "force_col_wise": True}
    train = lgb.Dataset(x, label=y, free_raw_data=False)
    builtin = lgb.train({**params, "objective": "binary", "boost_from_average": False}, train, 15)
    objective = lossd_client.lightgbm_objective(
        lossd, "binary_cross_entropy", params={"from_logits": True}
    )
    custom = lgb.train({**params, "objective": objective}, train, 15)
    np.testing.assert_allclose(
        custom.predict(x, raw_score=True), builtin.predict(x, raw_score=True), atol=1e-4
    )


@pytest.mark.loss("mse", "binary_cross_entropy")
def test_the_sklearn_scorer_is_the_negated_metric(lossd: Client) -> None:
    """sklearn_scorer scores as neg_mean_squared_error and neg_log_loss do."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import get_scorer

    x, y = _classification()
    regression = LinearRegression().fit(x, y)
    mse = lossd_client.sklearn_scorer(lossd, "mse")
    expected = get_scorer("neg_mean_squared_error")(regression, x, y)
    assert mse(regression, x, y) == pytest.approx(expected, rel=1e-12)
    classifier = LogisticRegression().fit(x, y)
    bce = lossd_client.sklearn_scorer(
        lossd, "binary_cross_entropy", response_method="predict_proba"
    )
    expected = get_scorer("neg_log_loss")(classifier, x, y)
    assert bce(classifier, x, y) == pytest.approx(expected, rel=1e-9)


# --- the command line ----------------------------------------------------------------------------


def _write(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".csv":
        columns = array.shape[1] if array.ndim == 2 else 1
        header = ",".join(f"c{k}" for k in range(columns))
        np.savetxt(path, array, delimiter=",", header=header, comments="", fmt="%.17g")
    else:
        pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the parquet extra) absent")
        pa = pytest.importorskip("pyarrow")
        columns = array.reshape(len(array), -1).T
        table = pa.table({f"c{k}": c for k, c in enumerate(columns)})
        pq.write_table(table, path, row_group_size=30_000)  # row groups unlike the batches
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lossd_client", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.loss("mse")
@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_the_cli_evaluates_files_in_batches(limited: Server, tmp_path: Path, suffix: str) -> None:
    """``python -m lossd_client eval`` streams the files in batches (and the batches in pieces,
    against the limited server) and prints NumPy's weighted mean; --json one object."""
    p, t, w = rng.normal(size=(N, 2)), rng.normal(size=(N, 2)), rng.uniform(size=N)
    files = [_write(tmp_path / f"{name}{suffix}", a) for name, a in (("p", p), ("t", t), ("w", w))]
    done = _cli(
        "eval", "--url", limited.url, "--api-key", KEY, "--loss", "mse",
        str(files[0]), str(files[1]), "--weights", str(files[2]), "--batch-rows", "65536", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar on a pipe
    answer = json.loads(done.stdout)
    expected = float(np.sum(w * np.mean((p - t) ** 2, axis=1)) / w.sum())
    assert answer["value"] == pytest.approx(expected, rel=1e-12)
    assert answer["n"] == N and answer["weight_sum"] == pytest.approx(float(w.sum()), rel=1e-12)


def _read_pty(fd: int) -> bytes:
    """What the terminal got next; b"" once the other side is closed (EIO on Linux)."""
    try:
        return os.read(fd, 65536) if select.select([fd], [], [], 60)[0] else b""
    except OSError:
        return b""


@pytest.mark.loss("huber")
def test_the_cli_draws_a_progress_bar_on_a_terminal(server: Server, tmp_path: Path) -> None:
    """On a terminal stderr gets a progress bar ending at 100%; stdout gets the result."""
    p, t = rng.normal(size=100_000), rng.normal(size=100_000)
    files = [_write(tmp_path / f"{name}.npy", a) for name, a in (("p", p), ("t", t))]
    leader, follower = pty.openpty()
    args = ["--url", server.url, "--loss", "huber", "--params", '{"delta": 0.5}']
    command = [sys.executable, "-m", "lossd_client", "eval", *args, *map(str, files)]
    with subprocess.Popen(
        [*command, "--batch-rows", "8192"], stdout=subprocess.PIPE, stderr=follower, text=True
    ) as process:
        os.close(follower)
        drawn = b""
        while chunk := _read_pty(leader):  # read as it is drawn: a full pty would block it
            drawn += chunk
        out = process.stdout.read() if process.stdout else ""
    os.close(leader)
    assert process.returncode == 0
    assert b"100.0%" in drawn and b"100,000/100,000 rows" in drawn
    assert out.startswith("huber (mean): ")


@pytest.mark.loss("mae")
def test_the_cli_refuses_files_of_different_lengths(server: Server, tmp_path: Path) -> None:
    p = _write(tmp_path / "p.npy", np.zeros(10))
    t = _write(tmp_path / "t.csv", np.zeros(12))
    done = _cli("eval", "--url", server.url, "--loss", "mae", str(p), str(t))
    assert done.returncode == 2
    assert "do not have the same number of rows" in done.stderr
