"""A catalogue of malformed requests: each must get the right problem+json answer (SPEC section 5).

Every case of ``BAD_REQUESTS`` (tests/support/problems.py) is sent to a real server (the
``client`` fixture of conftest.py), and so are the malformed requests below.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

from tests.support.problems import (
    BAD_REQUESTS,
    BIG,
    JSON,
    MSE,
    assert_problem,
    big_list,
    body,
    packed,
)
from tests.support.servers import Server, http_client, served


def test_catalogue_has_enough_distinct_cases() -> None:
    """The catalogue holds at least 150 cases with distinct ids and distinct requests."""
    assert len(BAD_REQUESTS) >= 150
    assert len({case[0] for case in BAD_REQUESTS}) == len(BAD_REQUESTS)
    requests = {
        (m, path, tuple(sorted(h.items())), content)
        for _, m, path, h, content, _, _ in BAD_REQUESTS
    }
    assert len(requests) == len(BAD_REQUESTS)


@pytest.mark.parametrize(
    ("case_id", "method", "path", "headers", "content", "status", "code"),
    BAD_REQUESTS,
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_problem_json(
    client: httpx.Client,
    case_id: str,
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes,
    status: int,
    code: str,
) -> None:
    """A malformed request gets the exact status and code as a short problem+json document."""
    response = client.request(method, path, headers=headers, content=content)
    assert_problem(response, status, code)


def test_unknown_loss_suggests_the_closest_name(client: httpx.Client) -> None:
    """A misspelt loss name is a 404 whose detail suggests the loss meant (SPEC section 1)."""
    response = client.post("/loss/hubr", headers=JSON, content=body())
    doc = assert_problem(response, 404, "unknown_loss")
    assert "huber" in doc["detail"]


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (body(predictions=big_list("x", BIG - 1), targets=[0.5] * BIG), ["predictions", BIG - 1]),
        (body(targets=[None, 2.0]), ["targets", 0]),
        (body(predictions=[[1, 2], [True, 4]], targets=[[1, 2], [3, 4]]), ["predictions", 1, 0]),
        (body(predictions=[[1, 2], [3]], targets=[[1, 2], [3, 4]]), ["predictions", 1]),
        (body(sample_weight=packed([1.0, np.nan])), ["sample_weight", 1]),
        (body(sample_weight=[1.0, -1.0]), ["sample_weight", 1]),
    ],
    ids=["string_at_end", "null_at_0", "bool_in_row_1", "ragged_row_1", "packed_nan", "negative"],
)
def test_array_error_names_field_and_first_bad_index(
    client: httpx.Client, content: bytes, loc: list[str | int]
) -> None:
    """A 422 on an array names the field and the first bad index in ``errors`` (SPEC section 2)."""
    doc = assert_problem(client.post(MSE, headers=JSON, content=content), 422, "invalid_array")
    assert doc["errors"][0]["loc"] == loc
    assert str(loc[0]) in doc["detail"]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"predictions": [1.0, 2.0], "targets": [1.0, NaN]}', "targets"),
        (b'{"predictions": [Infinity, 2.0], "targets": [1.0, 2.0]}', "predictions"),
        (
            b'{"predictions": [1, 2], "targets": [1, 2], "sample_weight": [1e400, 1]}',
            "sample_weight",
        ),
    ],
    ids=["nan_in_targets", "infinity_in_predictions", "1e400_in_sample_weight"],
)
def test_non_finite_token_error_names_the_field(
    client: httpx.Client, content: bytes, field: str
) -> None:
    """A NaN/Infinity token is a 422 that names the field it is in (SPEC section 2)."""
    doc = assert_problem(client.post(MSE, headers=JSON, content=content), 422, "invalid_request")
    locs = [part for err in doc.get("errors", []) for part in err["loc"]]
    assert field in doc["detail"] or field in locs, doc


@pytest.mark.parametrize(
    "content",
    [
        b'{"predictions": [9223372036854775808], "targets": [1]}',
        b'{"predictions": [9223372036854775808, 2], "targets": [1, 2]}',
        b'{"predictions": [18446744073709551616, 2], "targets": [1, 2]}',
    ],
    ids=["2**63_alone", "2**63_beside_2", "2**64_beside_2"],
)
def test_integers_past_int64_are_read_as_float64(client: httpx.Client, content: bytes) -> None:
    """Integers past int64 are numbers too: read as float64, as orjson reads those past uint64."""
    response = client.post(MSE, headers=JSON, content=content)
    assert response.status_code == 200, response.text
    expected = [
        (float(v) - t) ** 2
        for v, t in zip(
            orjson.loads(content)["predictions"], orjson.loads(content)["targets"], strict=True
        )
    ]
    assert response.json()["per_sample"] == expected


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (b'{"predictions": "x", "targets": [1, 2], "predictions": [1, 3]}', 0.5),
        (
            b'{"predictions": [1, 3], "targets": [1, 2], "reduction": "none", "reduction": "sum"}',
            1.0,
        ),
        (b'{"predictions": [1, 3], "targets": [1, 2], "params": {}, "params": {}}', 0.5),
    ],
    ids=["array", "reduction", "params"],
)
def test_duplicated_keys_the_last_one_wins(
    client: httpx.Client, content: bytes, value: float
) -> None:
    """A key given twice takes its last value (Python's json, JavaScript's JSON.parse, orjson)."""
    response = client.post(MSE, headers=JSON, content=content)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == value  # ((1-1)**2 + (3-2)**2), mean 0.5 or sum 1.0


def test_error_lists_at_most_a_few_of_many_problems(client: httpx.Client) -> None:
    """10 000 unknown parameters: only the first 32 are read (a flood costs what a few do), the
    problem names five and says how many keys were sent and read."""
    content = body(params={f"k{i}": i for i in range(10_000)})
    doc = assert_problem(client.post("/loss/huber", headers=JSON, content=content), 422,
                         "invalid_params")  # fmt: skip
    assert [err["loc"] for err in doc["errors"]] == [["params", f"k{i}"] for i in range(5)]
    assert "params has 10000 keys, of which the first 32 were read" in doc["detail"]
    assert doc["detail"].endswith("and 27 more")


def test_server_still_answers_after_the_catalogue(client: httpx.Client) -> None:
    """After every bad request above, a good request still gets the right answer."""
    response = client.post(MSE, json={"predictions": [1, 2], "targets": [1, 4]})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["value"] == 2.0  # ((1-1)**2 + (2-4)**2) / 2
    assert doc["per_sample"] == [0.0, 4.0]
    assert client.get("/healthz").status_code == 200


# --- a second server with small limits ---------------------------------------------------------

SMALL_BYTES = 1000  # LOSSD_MAX_BODY_BYTES of the small server
SMALL_ELEMENTS = 100  # LOSSD_MAX_ELEMENTS of the small server
# 2 x 90 numbers of 12 characters: over 1000 bytes, under 100 elements per array
OVER_BYTES = body(predictions=[0.123456789] * 90, targets=[0.123456789] * 90)


@pytest.fixture(scope="module")
def small_server() -> Iterator[Server]:
    """A server with a 1000-byte body limit and a 100-element array limit."""
    env = {"LOSSD_MAX_BODY_BYTES": str(SMALL_BYTES), "LOSSD_MAX_ELEMENTS": str(SMALL_ELEMENTS)}
    with served(env) as srv:
        yield srv


@pytest.fixture(scope="module")
def small_client(small_server: Server) -> Iterator[httpx.Client]:
    """An HTTP client of the small server."""
    with http_client(small_server) as http:
        yield http


def test_small_server_accepts_a_request_within_limits(small_client: httpx.Client) -> None:
    """100 elements in a body under 1000 bytes is within both limits."""
    content = body(predictions=[1] * SMALL_ELEMENTS, targets=[1] * SMALL_ELEMENTS)
    assert len(content) <= SMALL_BYTES
    response = small_client.post(MSE, headers=JSON, content=content)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 0.0


def test_body_over_limit_with_content_length(small_client: httpx.Client) -> None:
    """A body over LOSSD_MAX_BODY_BYTES with a correct Content-Length is a 413."""
    content = OVER_BYTES
    assert len(content) > SMALL_BYTES
    response = small_client.post(MSE, headers=JSON, content=content)
    assert response.request.headers["content-length"] == str(len(content))
    assert_problem(response, 413, "payload_too_large")


def test_chunked_body_over_limit(small_client: httpx.Client) -> None:
    """A chunked body (no Content-Length) that grows past the limit is a 413."""
    content = OVER_BYTES
    assert len(content) > SMALL_BYTES

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 100):
            yield content[start : start + 100]

    response = small_client.post(MSE, headers=JSON, content=chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "payload_too_large")


def test_list_over_element_limit(small_client: httpx.Client) -> None:
    """A list of 101 elements in a body under the byte limit is 413 too_many_elements."""
    content = body(predictions=[1] * (SMALL_ELEMENTS + 1), targets=[1] * (SMALL_ELEMENTS + 1))
    assert len(content) <= SMALL_BYTES
    response = small_client.post(MSE, headers=JSON, content=content)
    assert_problem(response, 413, "too_many_elements")


def test_packed_array_declaring_too_many_elements(small_client: httpx.Client) -> None:
    """A packed array whose shape declares 101 elements is 413 too_many_elements."""
    content = body(
        predictions=packed([], shape=[SMALL_ELEMENTS + 1], data=""),
        targets=packed([], shape=[SMALL_ELEMENTS + 1], data=""),
    )
    assert len(content) <= SMALL_BYTES
    response = small_client.post(MSE, headers=JSON, content=content)
    assert_problem(response, 413, "too_many_elements")
