"""Large requests over HTTP: POST /loss/mse with gradient as JSON lists and as packed arrays.

.venv/bin/python -m benchmarks.run --only http_large [--quick]
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import orjson

from benchmarks import _server
from benchmarks._common import Section, Table, Target, Timing, measure, plot_path
from service.codecs.loss import evaluate_one

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
JSON_MAX = 1_000_000  # a 1e7 JSON body is ~390 MB: over LOSSD_MAX_BODY_BYTES (268 MB)
RESULT = {"loss": "mse", "reduction": "mean", "weight_sum": None, "n": None}


def inputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return rng.normal(size=n), rng.normal(size=n)


def packed(array: np.ndarray) -> dict[str, object]:
    data = base64.b64encode(array.astype("<f8").tobytes()).decode()
    return {"dtype": "float64", "shape": list(array.shape), "data": data}


def json_body(pred: np.ndarray, targ: np.ndarray) -> bytes:
    doc = {"predictions": pred, "targets": targ, "gradient": True}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def packed_body(pred: np.ndarray, targ: np.ndarray) -> bytes:
    doc = {
        "predictions": packed(pred),
        "targets": packed(targ),
        "gradient": True,
        "array_format": "packed",
    }
    return orjson.dumps(doc)


def _mse(pred: np.ndarray, targ: np.ndarray) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    n = pred.shape[0]
    diff = pred - targ
    loss = diff * diff
    grad = diff * (2.0 / n)
    meta = {**RESULT, "value": float(loss.sum()) / n, "weight_sum": float(n), "n": n}
    return meta, loss, grad


def json_floor(body: bytes) -> Callable[[], object]:
    """The same work in-process, JSON: orjson -> numpy, loss and gradient, numpy -> orjson."""

    def work() -> bytes:
        doc = orjson.loads(body)
        meta, loss, grad = _mse(np.array(doc["predictions"]), np.array(doc["targets"]))
        out = {**meta, "per_sample": loss, "gradient": grad, "params": {}}
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    return work


def packed_floor(pred: np.ndarray, targ: np.ndarray) -> Callable[[], object]:
    """The same work in-process, packed: base64 -> numpy, loss and gradient, numpy -> base64.

    It starts from the two base64 payloads as bytes (no JSON parse of them) and leaves the
    response as pieces (JSON head, two base64 buffers), as the service streams it.
    """
    data = [base64.b64encode(a.astype("<f8").tobytes()) for a in (pred, targ)]

    def work() -> list[bytes]:
        p, t = (np.frombuffer(base64.b64decode(d), dtype="<f8") for d in data)
        meta, loss, grad = _mse(p, t)
        return [orjson.dumps(meta), base64.b64encode(loss.data), base64.b64encode(grad.data)]

    return work


def _slices(body: bytes, size: int = 1 << 20) -> Iterator[memoryview]:
    view = memoryview(body)
    for offset in range(0, len(body), size):
        yield view[offset : offset + size]


def post(
    http: httpx.Client, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[httpx.Headers, list[bytes]]:
    """POST the body, read the whole response: its headers and raw chunks, kept (not joined).

    httpcore slices (copies) the unsent rest of a ``bytes`` body after every socket send, which
    is quadratic in the body size (3.4 s instead of 0.2 s to upload 213 MB here); 1 MB slices
    with an explicit Content-Length avoid it. Joining the chunks would time a 213 MB copy in the
    client, so they are only kept. The response is asked for uncompressed (servers that gzip,
    such as MLServer, would otherwise spend the time compressing).
    """
    fields = {"content-type": "application/json", "accept-encoding": "identity"}
    fields |= {**(headers or {}), "content-length": str(len(body))}
    content = cast(Iterator[bytes], _slices(body))  # httpx sends any buffer
    with http.stream("POST", path, content=content, headers=fields) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code}: {response.read()[:500]!r}")
        return response.headers, list(response.iter_raw())


def send(http: httpx.Client, body: bytes) -> list[bytes]:
    """POST /loss/mse (``post``): the response's raw chunks."""
    return post(http, "/loss/mse", body)[1]


def v2_body(pred: np.ndarray, targ: np.ndarray) -> tuple[bytes, int]:
    """The same request in the Open Inference Protocol's binary tensor data extension: a JSON
    header naming the tensors and outputs, then the raw little-endian bytes of both inputs."""
    size = pred.size * 8
    tensors = [
        {"name": name, "shape": [pred.size], "datatype": "FP64"}
        for name in ("predictions", "targets")
    ]
    doc = {
        "inputs": [{**t, "parameters": {"binary_data_size": size}} for t in tensors],
        "outputs": [
            {"name": name, "parameters": {"binary_data": True}}
            for name in ("value", "per_sample", "gradient")
        ],
    }
    header = orjson.dumps(doc)
    data = [pred.astype("<f8").tobytes(), targ.astype("<f8").tobytes()]
    return b"".join([header, *data]), len(header)


def send_v2(http: httpx.Client, body: bytes, header: int) -> tuple[int, list[bytes]]:
    """POST a binary v2 request as ``send`` does; the response's JSON length and raw chunks."""
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(header),
    }
    answer, chunks = post(http, "/v2/models/mse/infer", body, headers)
    return int(answer["inference-header-content-length"]), chunks


def _plot(points: dict[str, dict[int, Timing]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"JSON lists": "C0", "packed": "C1"}
    for label, series in points.items():
        fmt, kind = label.rsplit(", ", 1)
        sizes = sorted(series)
        ax.errorbar(
            sizes,
            [series[n].median for n in sizes],
            yerr=[
                [series[n].median - series[n].low for n in sizes],
                [series[n].high - series[n].median for n in sizes],
            ],
            color=styles[fmt],
            linestyle="-" if kind == "HTTP" else "--",
            marker="o" if kind == "HTTP" else "s",
            label=f"{fmt}: {'end to end over HTTP' if kind == 'HTTP' else 'in-process floor'}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (float64 predictions and as many targets)")
    ax.set_ylabel("seconds")
    ax.set_title("POST /loss/mse with gradient")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path = plot_path("http_large")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(quick: bool = False) -> Section:
    """Time each size and format over HTTP and in-process, one server for all of them."""
    sizes = [n for n in SIZES if n <= (1_000_000 if quick else SIZES[-1])]
    table = Table(
        "POST /loss/mse with gradient, float64: end to end over HTTP and the in-process floor",
        [
            "N",
            "format",
            "request MB",
            "response MB",
            "end to end",
            "engine in-process",
            "local floor",
            "vs floor",
            "v2 binary end to end",
        ],
    )
    points: dict[str, dict[int, Timing]] = {}
    engines: dict[str, dict[int, Timing]] = {}
    wire: dict[tuple[str, int], tuple[int, int]] = {}  # request and response bytes
    with _server.start() as srv, httpx.Client(base_url=srv.url, timeout=600) as http:
        for n in sizes:
            pred, targ = inputs(n)
            runs = 3 if quick or n >= 1_000_000 else 5
            for fmt in ("JSON lists", "packed"):
                if fmt == "JSON lists" and n > JSON_MAX:
                    continue
                body = json_body(pred, targ) if fmt == "JSON lists" else packed_body(pred, targ)
                last: list[bytes] = []

                def post(b: bytes = body, keep: list[bytes] = last) -> None:
                    keep[:] = send(http, b)

                e2e = measure(post, runs)
                floor = json_floor(body) if fmt == "JSON lists" else packed_floor(pred, targ)
                local = measure(floor, runs)

                def evaluate(b: bytes = body, m: int = n) -> object:
                    return evaluate_one("mse", b, m)

                inside = measure(evaluate, runs)
                _check(b"".join(last[:4]), pred, targ)
                v2 = "-"
                if fmt == "packed":
                    v2_request, header = v2_body(pred, targ)
                    answer: list[tuple[int, list[bytes]]] = []

                    def post_v2(
                        b: bytes = v2_request,
                        h: int = header,
                        keep: list[tuple[int, list[bytes]]] = answer,
                    ) -> None:
                        keep[:] = [send_v2(http, b, h)]

                    v2_e2e = measure(post_v2, runs)
                    _check_v2(*answer[0], pred, targ)
                    v2 = _seconds(v2_e2e)
                    del v2_request, answer
                points.setdefault(f"{fmt}, HTTP", {})[n] = e2e
                points.setdefault(f"{fmt}, floor", {})[n] = local
                engines.setdefault(fmt, {})[n] = inside
                wire[fmt, n] = (len(body), sum(map(len, last)))
                table.add(
                    f"{n:.0e}",
                    fmt,
                    f"{wire[fmt, n][0] / 1e6:.1f}",
                    f"{wire[fmt, n][1] / 1e6:.1f}",
                    _seconds(e2e),
                    _seconds(inside),
                    _seconds(local),
                    f"{e2e.median / local.median:.2f}x",
                    v2,
                )
                del body, last, floor
    section = Section(
        "HTTP, large requests",
        "`POST /loss/mse` with `gradient: true` (and the default per-sample losses and mean), "
        "float64, N predictions and N targets, sent as JSON lists and as packed base64 arrays "
        "with `array_format: packed` (the response then packed too), against one server. End to "
        "end is an httpx client in this process posting a body built before the timer starts "
        "(handed over as 1 MB slices with its Content-Length: httpcore copies the unsent rest "
        "of a `bytes` body after every socket send, which took 3.4 s instead of 0.2 s for "
        "213 MB) and receiving every byte of the response (its raw chunks are kept, not "
        "joined); median (min..max) of 3-5 runs after a warm-up. Engine in-process is "
        "`evaluate_one` on the same body in this process, what the server does between "
        "reading the body and sending the response. "
        "The local floor is the same work in this process with NumPy, single-threaded: decode "
        "the inputs (orjson then `np.array` for lists; `base64.b64decode` then `np.frombuffer` "
        "for packed, starting from the base64 bytes), loss and gradient, and encode the result "
        "(orjson for lists; `base64.b64encode` of both arrays and a small orjson head for "
        "packed). The last column is the same batch end to end through the Open Inference "
        "Protocol's binary tensor data extension (`POST /v2/models/mse/infer`, raw float64 bytes "
        "after a JSON header, value, per-sample losses and gradient returned as raw bytes), "
        "sent and received the same way.",
        tables=[table],
    )
    if quick:
        section.notes.append("Quick run: N up to 1e6.")
    else:
        json_1e7 = 10 * wire["JSON lists", 1_000_000][0] / 1e6
        section.notes.append(
            f"JSON lists at N = 1e7 are not measured: the body would be about {json_1e7:.0f} MB, "
            "over LOSSD_MAX_BODY_BYTES (268 MB: a 413), and at the rate measured at 1e6 one "
            "request would take several seconds."
        )
    section.plots.append(_plot(points))
    json_1e6 = points["JSON lists, HTTP"][1_000_000].median
    packed_1e6 = points["packed, HTTP"][1_000_000].median
    speedup = json_1e6 / packed_1e6
    engine_1e6 = engines["packed"][1_000_000].median
    json_floor_1e6 = points["JSON lists, floor"][1_000_000].median
    packed_floor_1e6 = points["packed, floor"][1_000_000].median
    section.targets.append(
        Target(
            "packed >= 8x faster than JSON lists at N = 1e6 (end to end)",
            f"{speedup:.1f}x ({_s(packed_1e6)} vs {_s(json_1e6)})",
            speedup >= 8,
            ""
            if speedup >= 8
            else (
                f"Packed end to end is {_s(packed_1e6)}: the engine's work is "
                f"{_s(engine_1e6)} in-process and the rest is moving "
                f"{wire['packed', 1_000_000][0] / 1e6:.0f} MB in and "
                f"{wire['packed', 1_000_000][1] / 1e6:.0f} MB out through uvicorn and the "
                f"client. JSON lists are only {_s(json_1e6)}, "
                f"{json_1e6 / json_floor_1e6:.1f}x their own in-process floor (orjson and "
                f"`np.array`, {_s(json_floor_1e6)}); the two floors are "
                f"{json_floor_1e6 / packed_floor_1e6:.1f}x apart. 8x would need packed at "
                f"{_s(json_1e6 / 8)} end to end."
            ),
        )
    )
    if 10_000_000 in points["packed, HTTP"]:
        e2e_1e7 = points["packed, HTTP"][10_000_000].median
        floor_1e7 = points["packed, floor"][10_000_000].median
        ratio = e2e_1e7 / floor_1e7
        section.targets.append(
            Target(
                "packed N = 1e7 end to end <= 1.5x the local floor",
                f"{ratio:.2f}x ({_s(e2e_1e7)} vs {_s(floor_1e7)})",
                ratio <= 1.5,
            )
        )
    return section


def _check_v2(header: int, chunks: list[bytes], pred: np.ndarray, targ: np.ndarray) -> None:
    """The v2 answer's value (its first binary output) agrees with NumPy's."""
    head = b"".join(chunks[:4])
    value = float(np.frombuffer(head[header : header + 8], dtype="<f8")[0])
    expected = float(np.mean((pred - targ) ** 2))
    if not math.isclose(value, expected, rel_tol=1e-9):
        raise AssertionError(f"unexpected v2 mse value {value}, expected {expected}")


def _check(response: bytes, pred: np.ndarray, targ: np.ndarray) -> None:
    """The service's value agrees with NumPy's (read from the head of the last response)."""
    found = re.search(rb'"value":([^,]+),', response[:200])
    expected = float(np.mean((pred - targ) ** 2))
    if found is None or not math.isclose(float(found[1]), expected, rel_tol=1e-9):
        raise AssertionError(f"unexpected mse response {response[:200]!r}, value {expected}")


def _s(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _seconds(t: Timing) -> str:
    return f"{_s(t.median)} ({_s(t.low)}..{_s(t.high)})"
