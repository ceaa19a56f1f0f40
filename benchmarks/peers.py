"""lossd beside the services a user would otherwise deploy, in one run, on the same workloads.

- **MLServer** (the standard Python server of the Open Inference Protocol v2) with a NumPy runtime
  (benchmarks/peer_servers/mlserver/numpy_losses.py): REST v2 JSON, gRPC with typed contents and
  with raw contents (it has no REST binary tensor data);
- **FastAPI + PyTorch** (benchmarks/peer_servers/torch_app.py): JSON lists in, the loss and its
  gradient by autograd out, what a user writes.

Each peer runs from its own virtualenv under .bench/peers (created here, pinned by
benchmarks/peer_servers/<peer>.txt), never lossd's. Every system answers the mean loss and its
gradient; every answer is checked against NumPy. Requests are built before the clock starts and
sent by the same clients to every system (httpx in 1 MB slices for HTTP, a bytes-in bytes-out
gRPC channel), rounds interleaved across systems so that the shared machine's load falls on all
of them alike. Also here: lossd's JSON decoding against orjson's own parse of the same bodies.

    .venv/bin/python -m benchmarks.run --only peers [--quick]
"""

from __future__ import annotations

import base64
import io
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np
import orjson

from benchmarks import _server
from benchmarks._common import ROOT, Section, Table, Target, Timing, measure
from benchmarks._load import Window, grpc_load, load, request_bytes
from benchmarks.http_large import post
from benchmarks.python_client import echo_server
from service import core
from service.codecs import numbers, oip
from service.codecs.arrays import decode_array
from service.codecs.jsontext import LIFT_MIN, parse_object
from service.protos import lossd_inference_pb2 as pb

SERVERS = ROOT / "benchmarks" / "peer_servers"
VENVS = ROOT / ".bench" / "peers"
# lossd's limits raised for cross_entropy 2048 x 32,000: 65.5M logits are over the default
# LOSSD_MAX_ELEMENTS (33.5M); the body limit is raised for the same reason (and gRPC's largest
# message is that limit too)
LIMITS = {"LOSSD_MAX_ELEMENTS": str(1 << 27), "LOSSD_MAX_BODY_BYTES": str(1 << 29)}
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
LOSSD, MLSERVER, TORCH = "lossd", "MLServer", "FastAPI + PyTorch"
SMALL_N = 64
CONCURRENCY = (1, 8, 32)
SLOW = 10.0  # seconds: a format whose first call takes longer is timed by that call alone
OIP_TYPES = {"float64": "FP64", "float32": "FP32", "bfloat16": "BF16", "int64": "INT64"}
JSON_FORMATS = ("/loss JSON lists", "/loss packed", "/v2 JSON")
BINARY = ("/loss binary", "/loss .npy multipart", "/v2 binary", "gRPC raw")

# --- the peers' virtualenvs and the servers ------------------------------------------------------


def peer_python(name: str) -> str:
    """The python of the peer's virtualenv, .bench/peers/<name>, created (or brought up to date)
    from benchmarks/peer_servers/<name>.txt whenever that file changed since it was installed."""
    requirements = SERVERS / f"{name}.txt"
    home = VENVS / name
    python, stamp = home / "bin" / "python", home / ".requirements"
    wanted = requirements.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    print(f"installing {requirements} into {home}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)]
    subprocess.run(pip, check=True)
    stamp.write_text(wanted)
    return str(python)


def versions(python: str, packages: tuple[str, ...]) -> str:
    """The installed versions of ``packages`` in a virtualenv."""
    code = (
        "import sys; from importlib.metadata import version; "
        "print(', '.join(f'{p} {version(p)}' for p in sys.argv[1:]))"
    )
    run = subprocess.run([python, "-c", code, *packages], check=True, capture_output=True)
    return run.stdout.decode().strip()


@dataclass
class Systems:
    """The three servers, running side by side, and their ports."""

    lossd: _server.Server
    lossd_grpc: int
    mlserver: _server.Server
    mlserver_grpc: int
    torch: _server.Server
    versions: dict[str, str]

    def http(self, system: str) -> _server.Server:
        return {LOSSD: self.lossd, MLSERVER: self.mlserver, TORCH: self.torch}[system]

    def grpc(self, system: str) -> int:
        return {LOSSD: self.lossd_grpc, MLSERVER: self.mlserver_grpc}[system]


@contextmanager
def systems() -> Iterator[Systems]:
    """lossd (gRPC on, limits raised: ``LIMITS``), MLServer and the FastAPI + PyTorch service."""
    mlserver_python, torch_python = peer_python("mlserver"), peer_python("torch")
    found = {
        MLSERVER: versions(mlserver_python, ("mlserver", "numpy", "fastapi", "uvicorn", "grpcio")),
        TORCH: versions(torch_python, ("torch", "fastapi", "uvicorn", "pydantic")),
    }
    with ExitStack() as stack:
        lossd_grpc = _server.free_port()
        lossd = stack.enter_context(_server.start({**LIMITS, "LOSSD_GRPC_PORT": str(lossd_grpc)}))
        http, grpc_port, metrics = (_server.free_port() for _ in range(3))
        repository = SERVERS / "mlserver"
        mlserver = stack.enter_context(
            _server.launch(
                [str(VENVS / "mlserver" / "bin" / "mlserver"), "start", str(repository)],
                http,
                "/v2/health/ready",
                {
                    "MLSERVER_HTTP_PORT": str(http),
                    "MLSERVER_GRPC_PORT": str(grpc_port),
                    "MLSERVER_METRICS_PORT": str(metrics),
                    "PYTHONPATH": str(repository),  # the runtime's module
                },
                cwd=VENVS,  # where MLServer keeps its working folders
            )
        )
        port = _server.free_port()
        command = [torch_python, str(SERVERS / "torch_app.py"), str(port)]
        torch = stack.enter_context(_server.launch(command, port, "/healthz"))
        yield Systems(lossd, lossd_grpc, mlserver, grpc_port, torch, found)


# --- workloads, and each format's request and reading of the answer ------------------------------


@dataclass(frozen=True)
class Tensor:
    """An input as it goes on the wire: ``data``'s bytes (bfloat16 as its uint16 bit patterns)
    and lossd's name of its dtype."""

    data: np.ndarray
    dtype: str

    @property
    def values(self) -> np.ndarray:
        """The numbers it stands for (bfloat16 widened to float32)."""
        if self.dtype == "bfloat16":
            return (self.data.astype(np.uint32) << 16).view(np.float32)
        return self.data

    @property
    def datatype(self) -> str:
        return OIP_TYPES[self.dtype]


def bfloat16(values: np.ndarray) -> Tensor:
    """float32 values rounded to bfloat16 (to nearest, ties to even)."""
    bits = values.astype("<f4").view("<u4")
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    return Tensor(rounded.astype("<u2"), "bfloat16")


@dataclass(frozen=True)
class Workload:
    label: str
    loss: str
    predictions: Tensor
    targets: Tensor
    formats: tuple[str, ...]  # lossd's; each peer runs those of its own it has
    params: dict[str, bool] = field(default_factory=dict)  # lossd's parameters of the loss


def mse_workload(n: int, formats: tuple[str, ...]) -> Workload:
    rng = np.random.default_rng(n)
    pred, targ = Tensor(rng.normal(size=n), "float64"), Tensor(rng.normal(size=n), "float64")
    return Workload(f"mse N={n:,}", "mse", pred, targ, formats)


def ce_workload(rows: int, classes: int, dtype: str, formats: tuple[str, ...]) -> Workload:
    rng = np.random.default_rng(rows * classes)
    logits = rng.standard_normal((rows, classes), dtype=np.float32 if dtype != "float64" else None)
    pred = bfloat16(logits) if dtype == "bfloat16" else Tensor(logits, dtype)
    targ = Tensor(rng.integers(0, classes, rows), "int64")
    label = f"cross_entropy {rows:,} x {classes:,} {dtype}"
    return Workload(label, "cross_entropy", pred, targ, formats, {"from_logits": True})


def expected(w: Workload) -> tuple[float, np.ndarray]:
    """The mean loss and its gradient, by NumPy in float64 from the numbers sent."""
    p = w.predictions.values.astype(np.float64)
    if w.loss == "mse":
        diff = p - w.targets.values
        return float(np.mean(diff * diff)), diff * (2 / diff.size)
    rows = np.arange(p.shape[0])
    shifted = p - p.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    value = float(np.mean(np.log(total[:, 0]) - shifted[rows, w.targets.values]))
    exp /= total
    exp[rows, w.targets.values] -= 1
    return value, exp / p.shape[0]


@dataclass(frozen=True)
class Http:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Grpc:
    body: bytes


Request = Http | Grpc
Answer = tuple[httpx.Headers, list[bytes]] | bytes
Reader = Callable[[Answer], tuple[float, np.ndarray]]

LOSS_OPTIONS = {"per_sample": False, "gradient": True}


def _options(w: Workload, options: dict[str, bool] = LOSS_OPTIONS) -> dict[str, object]:
    """A /loss request's fields besides its arrays: float32 logits ask to be computed in float32
    (/loss computes in float64 unless told; /v2 computes FP32 inputs in FP32)."""
    fields: dict[str, object] = {**options, "params": w.params} if w.params else dict(options)
    if w.predictions.dtype == "float32":
        fields["dtype"] = "float32"
    return fields


def _raw(t: Tensor) -> bytes:
    return np.ascontiguousarray(t.data, t.data.dtype.newbyteorder("<")).tobytes()


def _loss_json(w: Workload) -> Request:
    doc = {"predictions": w.predictions.values, "targets": w.targets.values, **_options(w)}
    return Http(f"/loss/{w.loss}", orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))


def _loss_packed(w: Workload) -> Request:
    def packed(t: Tensor) -> dict[str, object]:
        return {"dtype": t.dtype, "shape": list(t.data.shape), "data": base64.b64encode(_raw(t))}

    doc = {
        "predictions": packed(w.predictions),
        "targets": packed(w.targets),
        **_options(w),
        "array_format": "packed",
    }
    return Http(f"/loss/{w.loss}", orjson.dumps(doc, default=bytes.decode))


def _framed(header: dict[str, Any], tensors: list[Tensor]) -> tuple[bytes, dict[str, str]]:
    text = orjson.dumps(header)
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(text)),
    }
    return b"".join([text, *map(_raw, tensors)]), headers


def _loss_binary(w: Workload, options: dict[str, bool] = LOSS_OPTIONS) -> Request:
    def described(t: Tensor) -> dict[str, object]:
        return {"dtype": t.dtype, "shape": list(t.data.shape), "binary_data_size": t.data.nbytes}

    header = {
        "predictions": described(w.predictions),
        "targets": described(w.targets),
        **_options(w, options),
        "array_format": "binary",
    }
    body, headers = _framed(header, [w.predictions, w.targets])
    return Http(f"/loss/{w.loss}", body, headers)


def _loss_multipart(w: Workload) -> Request:
    boundary = "lossd-benchmark-boundary"
    parts = []
    for name, t in (("predictions", w.predictions), ("targets", w.targets)):
        npy = io.BytesIO()
        np.save(npy, t.data)
        disposition = f'form-data; name="{name}"; filename="{name}.npy"'
        parts.append((disposition, npy.getvalue()))
    options = orjson.dumps({**_options(w), "array_format": "binary"})
    parts.append(('form-data; name="options"', options))
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        for disposition, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return Http(
        f"/loss/{w.loss}", body, {"content-type": f"multipart/form-data; boundary={boundary}"}
    )


def _v2_inputs(w: Workload) -> list[dict[str, Any]]:
    return [
        {"name": name, "shape": list(t.data.shape), "datatype": t.datatype}
        for name, t in (("predictions", w.predictions), ("targets", w.targets))
    ]


def _v2_json(w: Workload) -> Request:
    inputs = _v2_inputs(w)
    for tensor, t in zip(inputs, (w.predictions, w.targets), strict=True):
        tensor["data"] = t.values.reshape(-1)
    outputs = [{"name": "value"}, {"name": "gradient"}]
    doc = {"inputs": inputs, "outputs": outputs, "parameters": w.params}
    body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return Http(f"/v2/models/{w.loss}/infer", body)


def _v2_binary(w: Workload) -> Request:
    inputs = _v2_inputs(w)
    for tensor, t in zip(inputs, (w.predictions, w.targets), strict=True):
        tensor["parameters"] = {"binary_data_size": t.data.nbytes}
    outputs = [{"name": n, "parameters": {"binary_data": True}} for n in ("value", "gradient")]
    header = {"inputs": inputs, "outputs": outputs, "parameters": w.params}
    body, headers = _framed(header, [w.predictions, w.targets])
    return Http(f"/v2/models/{w.loss}/infer", body, headers)


def _grpc(w: Workload, raw: bool) -> Request:
    request = pb.ModelInferRequest(model_name=w.loss)
    for name, flag in w.params.items():
        request.parameters[name].bool_param = flag
    for tensor, t in zip(_v2_inputs(w), (w.predictions, w.targets), strict=True):
        entry = request.inputs.add(name=tensor["name"], datatype=tensor["datatype"])
        entry.shape.extend(tensor["shape"])
        if raw:
            request.raw_input_contents.append(_raw(t))
        elif t.dtype == "int64":
            entry.contents.int64_contents.extend(t.data.reshape(-1).tolist())
        else:
            typed = (
                entry.contents.fp64_contents
                if t.dtype == "float64"
                else entry.contents.fp32_contents
            )
            typed.extend(t.data.reshape(-1).tolist())
    for name in ("value", "gradient"):
        request.outputs.add(name=name)
    return Grpc(request.SerializeToString())


def _torch_json(w: Workload) -> Request:
    doc = {"predictions": w.predictions.values, "targets": w.targets.values}
    return Http(f"/{w.loss}", orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))


def _joined(answer: Answer) -> tuple[httpx.Headers, bytes]:
    assert not isinstance(answer, bytes)
    headers, chunks = answer
    return headers, b"".join(chunks)


def _read_document(answer: Answer) -> tuple[float, np.ndarray]:
    """lossd's /loss JSON (lists or packed) and FastAPI's: {"value", "gradient"}."""
    doc = orjson.loads(_joined(answer)[1])
    gradient = doc["gradient"]
    if isinstance(gradient, dict):
        data = base64.b64decode(gradient["data"])
        return doc["value"], np.frombuffer(data, gradient["dtype"]).reshape(gradient["shape"])
    return doc["value"], np.asarray(gradient)


def _read_loss_binary(answer: Answer) -> tuple[float, np.ndarray]:
    headers, raw = _joined(answer)
    length = int(headers["inference-header-content-length"])
    doc = orjson.loads(raw[:length])
    g = doc["gradient"]
    count = g["binary_data_size"] // np.dtype(g["dtype"]).itemsize
    return doc["value"], np.frombuffer(raw, g["dtype"], count, length).reshape(g["shape"])


def _read_v2(answer: Answer) -> tuple[float, np.ndarray]:
    """A v2 REST answer, its outputs in JSON or binary."""
    headers, raw = _joined(answer)
    length = int(headers.get("inference-header-content-length", len(raw)))
    doc, offset = orjson.loads(raw[:length]), length
    arrays = {}
    for output in doc["outputs"]:
        dtype = "<f8" if output["datatype"] == "FP64" else "<f4"
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[output["name"]] = np.asarray(output["data"], dtype)
        else:
            arrays[output["name"]] = np.frombuffer(
                raw, dtype, size // np.dtype(dtype).itemsize, offset
            )
            offset += size
    return float(arrays["value"][0]), arrays["gradient"]


def _read_grpc(answer: Answer) -> tuple[float, np.ndarray]:
    assert isinstance(answer, bytes)
    response = pb.ModelInferResponse.FromString(answer)
    arrays = {}
    for k, output in enumerate(response.outputs):
        dtype = "<f8" if output.datatype == "FP64" else "<f4"
        if response.raw_output_contents:
            arrays[output.name] = np.frombuffer(response.raw_output_contents[k], dtype)
        else:
            typed = (
                output.contents.fp64_contents if dtype == "<f8" else output.contents.fp32_contents
            )
            arrays[output.name] = np.asarray(typed, dtype)
    return float(arrays["value"][0]), arrays["gradient"]


@dataclass(frozen=True)
class Format:
    system: str
    name: str
    build: Callable[[Workload], Request]
    read: Reader

    @property
    def label(self) -> str:
        return f"{self.system} {self.name}"


FORMATS = (
    Format(LOSSD, "/loss JSON lists", _loss_json, _read_document),
    Format(LOSSD, "/loss packed", _loss_packed, _read_document),
    Format(LOSSD, "/loss binary", _loss_binary, _read_loss_binary),
    Format(LOSSD, "/loss .npy multipart", _loss_multipart, _read_loss_binary),
    Format(LOSSD, "/v2 JSON", _v2_json, _read_v2),
    Format(LOSSD, "/v2 binary", _v2_binary, _read_v2),
    Format(LOSSD, "gRPC typed", lambda w: _grpc(w, False), _read_grpc),
    Format(LOSSD, "gRPC raw", lambda w: _grpc(w, True), _read_grpc),
    Format(MLSERVER, "/v2 JSON", _v2_json, _read_v2),
    Format(MLSERVER, "gRPC typed", lambda w: _grpc(w, False), _read_grpc),
    Format(MLSERVER, "gRPC raw", lambda w: _grpc(w, True), _read_grpc),
    Format(TORCH, "JSON lists", _torch_json, _read_document),
)
EVERY = tuple(f.name for f in FORMATS if f.system == LOSSD)
PEER_FORMATS = {  # what each peer has, by lossd's name of the same format
    "/loss JSON lists": [f for f in FORMATS if f.system == TORCH],
    "/v2 JSON": [f for f in FORMATS if f.system == MLSERVER and f.name == "/v2 JSON"],
    "gRPC typed": [f for f in FORMATS if f.system == MLSERVER and f.name == "gRPC typed"],
    "gRPC raw": [f for f in FORMATS if f.system == MLSERVER and f.name == "gRPC raw"],
}


def formats_of(w: Workload) -> list[Format]:
    """lossd's formats of the workload and each peer's that it has (MLServer 1.7 has no BF16;
    FastAPI + PyTorch takes JSON lists only)."""
    chosen = [f for f in FORMATS if f.system == LOSSD and f.name in w.formats]
    peers = [p for name in w.formats for p in PEER_FORMATS.get(name, [])]
    if w.predictions.dtype == "bfloat16":
        peers = [p for p in peers if p.system != MLSERVER]
    return chosen + peers


# --- timing ----------------------------------------------------------------------------------------


class Callers:
    """One HTTP client per server and one gRPC channel per gRPC port, for the whole section."""

    def __init__(self, found: Systems) -> None:
        self.found = found
        self.http = {
            s: httpx.Client(base_url=found.http(s).url, timeout=900)
            for s in (LOSSD, MLSERVER, TORCH)
        }
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channels = {
            s: grpc.insecure_channel(f"{_server.HOST}:{found.grpc(s)}", options=options)
            for s in (LOSSD, MLSERVER)
        }

    def call(self, system: str, request: Request) -> Callable[[], Answer]:
        if isinstance(request, Grpc):
            stub = self.channels[system].unary_unary(GRPC_INFER)
            return lambda: stub(request.body, timeout=900, wait_for_ready=True)
        client = self.http[system]
        return lambda: post(client, request.path, request.body, request.headers)

    def close(self) -> None:
        for client in self.http.values():
            client.close()
        for channel in self.channels.values():
            channel.close()


@dataclass
class Timed:
    """One format of one workload: its bytes each way and its times, one per round."""

    format: Format
    request_bytes: int
    response_bytes: int = 0
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def _size(answer: Answer) -> int:
    return len(answer) if isinstance(answer, bytes) else sum(map(len, answer[1]))


def check(w: Workload, f: Format, answer: Answer, reference: tuple[float, np.ndarray]) -> None:
    """The answer's value and gradient agree with NumPy's (float32 to 1e-4, else 1e-9)."""
    value, gradient = f.read(answer)
    want_value, want_gradient = reference
    single = w.predictions.dtype != "float64"
    tol = 1e-4 if single else 1e-9
    got = np.asarray(gradient, np.float64).reshape(-1)
    want = want_gradient.reshape(-1)
    if got.size != want.size:
        raise AssertionError(
            f"{w.label}, {f.label}: gradient of {got.size} elements, not {want.size}"
        )
    head = slice(0, min(want.size, 1 << 20))
    scale = float(np.abs(want[head]).max())
    if not math.isclose(value, want_value, rel_tol=tol) or not np.allclose(
        got[head], want[head], rtol=tol, atol=tol * scale
    ):
        raise AssertionError(f"{w.label}, {f.label}: value {value}, NumPy's {want_value}")


def time_workload(w: Workload, callers: Callers, rounds: int) -> list[Timed]:
    """Every format of the workload: one checked warm-up call each, then ``rounds`` rounds that
    time each format once, in turn (a format whose warm-up took over ``SLOW`` s is timed by
    that call alone)."""
    reference = expected(w)
    timed = []
    calls = []
    for f in formats_of(w):
        request = f.build(w)
        call = callers.call(f.system, request)
        start = time.perf_counter()
        answer = call()
        first = time.perf_counter() - start
        check(w, f, answer, reference)
        size = len(request.body)
        result = Timed(f, size, _size(answer), [first] if first > SLOW else [])
        del answer
        timed.append(result)
        calls.append(call)
    for _ in range(rounds):
        for result, call in zip(timed, calls, strict=True):
            if result.times and result.times[0] > SLOW:
                continue
            start = time.perf_counter()
            call()
            result.times.append(time.perf_counter() - start)
    return timed


def engine_time(w: Workload, runs: int) -> Timing:
    """``core.evaluate`` on the workload's arrays in this process: the engine's own work."""
    dtype = "float64" if w.predictions.dtype == "float64" else "float32"
    options = core.Options(per_sample=False, gradient=True, dtype=dtype)
    predictions = w.predictions.values
    spec, params, options = core.select(w.loss, w.params, options, set(), predictions.ndim)
    batch = core.Batch(predictions, w.targets.values)
    return measure(lambda: core.evaluate(spec, params, batch, options), runs)


def floor_pairs(
    w: Workload, options: dict[str, bool], callers: Callers, echo: str, rounds: int
) -> tuple[Timed, Timed]:
    """lossd's /loss binary against the bare echo of the same bytes (``benchmarks/_echo.py``:
    the request's arrays answered in lossd's framing, nothing computed), in turn."""
    request = _loss_binary(w, options)
    assert isinstance(request, Http)
    lossd = callers.call(LOSSD, request)
    with httpx.Client(base_url=echo, timeout=900) as client:

        def bare() -> Answer:
            return post(client, request.path, request.body, request.headers)

        pair = [
            Timed(Format(LOSSD, "/loss binary", _loss_binary, _read_loss_binary), 0),
            Timed(Format("echo", "/loss binary", _loss_binary, _read_loss_binary), 0),
        ]
        for call, result in zip((lossd, bare), pair, strict=True):
            result.request_bytes, result.response_bytes = len(request.body), _size(call())
        for _ in range(rounds):
            for call, result in zip((lossd, bare), pair, strict=True):
                start = time.perf_counter()
                call()
                result.times.append(time.perf_counter() - start)
    return pair[0], pair[1]


def peak_rss(w: Workload, callers: Callers) -> tuple[float, float]:
    """lossd's resident memory for one /loss binary request: (idle MB, peak above idle MB),
    VmHWM reset just before it."""
    pid = callers.found.lossd.pid
    call = callers.call(LOSSD, _loss_binary(w))
    time.sleep(0.3)
    idle = _server.memory_kib(pid, "VmRSS")
    _server.reset_peak(pid)
    call()
    return idle * 1024 / 1e6, (_server.memory_kib(pid, "VmHWM") - idle) * 1024 / 1e6


# --- small requests: req/s in a closed loop --------------------------------------------------------

SMALL_FORMATS = ("/loss JSON lists", "/loss binary", "/v2 JSON", "gRPC raw")
HEALTHZ = Format(LOSSD, "GET /healthz", _loss_json, _read_document)  # no loss: not read


def small(callers: Callers, quick: bool) -> dict[tuple[str, int], list[Window]]:
    """mse N = 64 at each concurrency: every format and lossd's /healthz, one window of each in
    turn per round."""
    warmup, duration, rounds = (0.3, 1.0, 1) if quick else (0.5, 2.0, 3)
    w = mse_workload(SMALL_N, SMALL_FORMATS)
    reference = expected(w)
    loops: list[tuple[Format, Callable[[int], list[Window]]]] = []
    lossd = callers.found.lossd
    health = request_bytes("GET", "/healthz")
    loops.append((HEALTHZ, lambda c: load(lossd.port, lossd.pid, health, c, warmup, duration, 1)))
    for f in formats_of(w):
        request = f.build(w)
        check(w, f, callers.call(f.system, request)(), reference)
        server = callers.found.http(f.system)
        if isinstance(request, Grpc):
            port = callers.found.grpc(f.system)

            def run(
                c: int, port: int = port, pid: int = server.pid, body: bytes = request.body
            ) -> list[Window]:
                return grpc_load(port, pid, GRPC_INFER, body, c, warmup, duration, 1)

        else:
            headers = {name.title(): value for name, value in request.headers.items()}
            raw = request_bytes("POST", request.path, request.body, headers)

            def run(
                c: int, port: int = server.port, pid: int = server.pid, raw: bytes = raw
            ) -> list[Window]:
                return load(port, pid, raw, c, warmup, duration, 1)

        loops.append((f, run))
    results: dict[tuple[str, int], list[Window]] = {}
    for c in CONCURRENCY:
        for _ in range(rounds):
            for f, run in loops:
                results.setdefault((f.label, c), []).extend(run(c))
    return results


# --- JSON: lossd's decoding against orjson's own parse -----------------------------------------------


def json_decoding(runs: int) -> tuple[Table, dict[str, tuple[Timing, Timing]]]:
    """cross_entropy 1e5 x 10 float64 logits and class indices, as /loss JSON with nested 2-D
    lists, the same numbers as one flat list, and /v2 JSON (flat ``data``): lossd's decoding
    of each body into its arrays against ``orjson.loads`` of the same body."""
    w = ce_workload(100_000, 10, "float64", ())
    big = 1 << 27
    nested = _loss_json(w)
    flat_doc = {"predictions": w.predictions.values.reshape(-1), "targets": w.targets.values}
    flat = orjson.dumps({**flat_doc, **LOSS_OPTIONS}, option=orjson.OPT_SERIALIZE_NUMPY)
    v2 = _v2_json(w)
    assert isinstance(nested, Http) and isinstance(v2, Http)

    def loss_decode(body: bytes) -> object:
        doc, _ = parse_object(body)
        return [decode_array(doc[name], name, big) for name in ("predictions", "targets")]

    def v2_decode(body: bytes) -> object:
        request = oip._parse(np.frombuffer(body, np.uint8))
        return [oip._from_json(t, t.name, math.prod(t.shape), big) for t in request.inputs]

    bodies = {
        "/loss, nested 2-D lists": (nested.body, loss_decode),
        "/loss, the same numbers flat": (flat, loss_decode),
        "/v2 JSON (flat data)": (v2.body, v2_decode),
    }
    table = Table(
        "Decoding a JSON body into arrays, in-process: cross_entropy 1e5 x 10 float64 logits and "
        "class indices",
        ["body", "MB", "orjson.loads", "lossd's decoding", "lossd / orjson"],
    )
    found = {}
    for label, (body, decode) in bodies.items():
        own = measure(lambda b=body: orjson.loads(b), runs)
        lossd = measure(lambda b=body, d=decode: d(b), runs)
        found[label] = (lossd, own)
        table.add(
            label,
            f"{len(body) / 1e6:.1f}",
            _span(own),
            _span(lossd),
            f"{lossd.median / own.median:.2f}x",
        )
    return table, found


def parser_passes(runs: int) -> tuple[Table, list[float]]:
    """The number parser's passes over the flat body of ``json_decoding`` (its predictions
    list), each timed alone: where lossd's decoding spends what orjson does in one pass."""
    w = ce_workload(100_000, 10, "float64", ())
    doc = {"predictions": w.predictions.values.reshape(-1)}
    buf = np.frombuffer(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    buf.flags.writeable = False
    _, _, _, start, end = numbers.member_lists(buf, LIFT_MIN)[0]
    out = np.empty(w.predictions.values.size)
    passes = {
        "find the lists (`member_lists`: brackets, strings, keys)": lambda: numbers.member_lists(
            buf, LIFT_MIN
        ),
        "check and count (`list_shape`: every token's grammar)": lambda: numbers.list_shape(
            buf, start, end
        ),
        "convert (`fill_floats`: Clinger, Eisel-Lemire, strtod)": lambda: numbers.fill_floats(
            buf, start, end, out
        ),
        "orjson.loads of the same bytes": lambda: orjson.loads(buf.tobytes()),
    }
    table = Table(
        f"The number parser's passes over 1e6 float64 numbers printed shortest ({len(buf) / 1e6:.0f} MB)",
        ["pass", "time", "ns per number"],
    )
    per_number = []
    for label, fn in passes.items():
        t = measure(fn, runs)
        per_number.append(t.median / out.size * 1e9)
        table.add(label, _span(t), f"{per_number[-1]:.0f}")
    return table, per_number


# --- the report ------------------------------------------------------------------------------------


def _s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _span(t: Timing | list[float]) -> str:
    if isinstance(t, list):
        if len(t) == 1:
            return f"{_s(t[0])} (1 run)"
        t = Timing(statistics.median(t), min(t), max(t))
    return f"{_s(t.median)} ({_s(t.low)}..{_s(t.high)})"


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    med, low, high = (fmt.format(f(values)) for f in (statistics.median, min, max))
    return f"{med} ({low}..{high})"


def _load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def best(timed: list[Timed], system: str | None) -> Timed | None:
    """The fastest format (by median) of lossd (``system`` LOSSD) or of any peer (None)."""
    chosen = [
        t for t in timed if (t.format.system == system if system else t.format.system != LOSSD)
    ]
    return min(chosen, key=lambda t: t.median) if chosen else None


def ratios(slow: Timed, fast: Timed) -> list[float]:
    """slow / fast round by round (a format timed once is paired with every round)."""
    return [slow.times[min(k, len(slow.times) - 1)] / t for k, t in enumerate(fast.times)]


def json_floor(w: Workload, runs: int) -> Timing:
    """The JSON text alone, in-process: orjson's parse of the /loss JSON body and its dump of
    the gradient as lists (what any JSON service of the workload must do at least)."""
    request = _loss_json(w)
    _, gradient = expected(w)
    return measure(
        lambda: (
            orjson.loads(request.body),
            orjson.dumps(gradient, option=orjson.OPT_SERIALIZE_NUMPY),
        ),
        runs,
    )


def _systems_table(found: Systems) -> Table:
    from importlib import metadata

    own = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("lossd", "fastapi", "uvicorn", "numba", "numpy")
    )
    table = Table("The systems", ["system", "versions", "formats", "set up"])
    table.add(
        LOSSD,
        own,
        ", ".join(EVERY),
        "`lossd serve`, one worker, gRPC on (`LOSSD_GRPC_PORT`), LOSSD_MAX_ELEMENTS "
        f"{LIMITS['LOSSD_MAX_ELEMENTS']} and LOSSD_MAX_BODY_BYTES {LIMITS['LOSSD_MAX_BODY_BYTES']} "
        "(raised from 33554432 and 268435456 for 2048 x 32,000 logits); `per_sample: false, "
        "gradient: true`",
    )
    table.add(
        MLSERVER,
        found.versions[MLSERVER],
        "/v2 JSON, gRPC typed, gRPC raw (no REST binary tensor data; no BF16 datatype)",
        "`mlserver start` of benchmarks/peer_servers/mlserver: a NumPy runtime through "
        "MLServer's NumpyCodec; `parallel_workers: 0` (inference in the server process: the "
        "default worker process does not start with uvloop 0.23, whose get_event_loop() "
        "refuses the worker's call, and would add a copy of every tensor), `debug: false` (no "
        "access log), gRPC messages up to 1 GiB",
    )
    table.add(
        TORCH,
        found.versions[TORCH],
        "JSON lists",
        "benchmarks/peer_servers/torch_app.py under uvicorn: pydantic models both ways, "
        "`F.mse_loss` / `F.cross_entropy` in float64 and `backward()`",
    )
    return table


def _small_table(results: dict[tuple[str, int], list[Window]]) -> Table:
    table = Table(
        f"mse N={SMALL_N}, value + gradient: closed loop, one window per system and round",
        ["system, format", "concurrency", "req/s", "p99 ms", "client CPU", "server CPU ms/req"],
    )
    for (label, c), windows in results.items():
        table.add(
            label,
            c,
            _spread([w.rate for w in windows], "{:.0f}"),
            _spread([w.percentile(99) * 1e3 for w in windows]),
            f"{statistics.median(w.client_cpu for w in windows):.0%}",
            f"{statistics.median(w.server_cpu / w.rate for w in windows) * 1e3:.2f}",
        )
    return table


def _workload_table(w: Workload, timed: list[Timed], load_average: str) -> Table:
    table = Table(
        f"{w.label}: mean loss and gradient (load average {load_average})",
        ["system", "format", "request MB", "response MB", "time", "/ lossd's best"],
    )
    lossd = best(timed, LOSSD)
    assert lossd is not None
    for t in timed:
        table.add(
            t.format.system,
            t.format.name,
            f"{t.request_bytes / 1e6:.1f}",
            f"{t.response_bytes / 1e6:.1f}",
            _span(t.times),
            f"{t.median / lossd.median:.2f}x",
        )
    return table


def _small_targets(results: dict[tuple[str, int], list[Window]]) -> list[Target]:
    out = []
    for c in CONCURRENCY:
        found = {label: windows for (label, k), windows in results.items() if k == c}

        def rate(label: str, found: dict[str, list[Window]] = found) -> float:
            return statistics.median(w.rate for w in found[label])

        def cpu(label: str, found: dict[str, list[Window]] = found) -> float:
            return statistics.median(w.server_cpu / w.rate for w in found[label]) * 1e3

        health = HEALTHZ.label
        own = max(
            (label for label in found if label.startswith(LOSSD) and label != health), key=rate
        )
        peer = max((label for label in found if not label.startswith(LOSSD)), key=rate)
        versus = [a.rate / b.rate for a, b in zip(found[own], found[peer], strict=True)]
        share = [a.rate / b.rate for a, b in zip(found[own], found[health], strict=True)]
        why = (
            f"a request of {own} costs {cpu(own):.2f} ms of lossd's CPU against {cpu(health):.2f} ms "
            f"for /healthz (HTTP, uvicorn and the ASGI app alone) and {cpu(peer):.2f} ms of "
            f"{peer}'s own; 3x the peer at the same CPU would need {cpu(peer) / 3:.2f} ms a "
            "request" + (", below /healthz's" if cpu(peer) / 3 < cpu(health) else "")
        )
        goals = [
            (
                "3x the best peer's req/s",
                f"{_spread(versus)}x: {own} {rate(own):.0f} vs {peer} {rate(peer):.0f} req/s",
                statistics.median(versus) >= 3,
            ),
            (
                "60% of lossd's /healthz req/s",
                f"{statistics.median(share):.0%} ({min(share):.0%}..{max(share):.0%})",
                statistics.median(share) >= 0.6,
            ),
        ]
        for goal, achieved, met in goals:
            where = f"mse N={SMALL_N} at concurrency {c}: >= {goal}"
            out.append(Target(where, achieved, met, "" if met else why))
    return out


def _named(timed: list[Timed], system: str, name: str) -> Timed | None:
    return next((t for t in timed if t.format.system == system and t.format.name == name), None)


def _peer_targets(
    workloads: list[Workload],
    timed: dict[str, list[Timed]],
    engines: dict[str, Timing],
    json_floors: dict[str, Timing],
) -> list[Target]:
    """lossd's best format against the best peer's, and every JSON format of lossd against
    MLServer's v2 JSON, workload by workload."""
    out = []
    fallback: Timed | None = None  # the float32 logits' best peer, for the bfloat16 ones
    for w in workloads:
        found = timed[w.label]
        own, peer = best(found, LOSSD), best(found, None)
        assert own is not None
        note = ""
        if peer is None and fallback is not None:
            peer, note = fallback, " (no peer takes bfloat16: against the float32 logits')"
        if w.predictions.dtype == "float32":
            fallback = peer
        if peer is None:
            continue
        r = ratios(peer, own)
        met = statistics.median(r) >= 2
        why = (
            f"lossd's {own.format.name} takes {_s(own.median)}, of which the engine "
            f"(`core.evaluate` in-process) is {_s(engines[w.label].median)}; the rest is decoding, "
            "encoding and moving the bytes"
        )
        out.append(
            Target(
                f"{w.label}: lossd's best format >= 2x the best peer's",
                f"{_spread(r)}x: {own.format.name} {_s(own.median)} vs {peer.format.label} "
                f"{_s(peer.median)}{note}",
                met,
                "" if met else why,
            )
        )
        mlserver_json = _named(found, MLSERVER, "/v2 JSON")
        if mlserver_json is None:
            continue
        mine = [t for t in found if t.format.system == LOSSD and t.format.name in JSON_FORMATS]
        each = {t.format.name: ratios(mlserver_json, t) for t in mine}
        worst = min(each, key=lambda name: statistics.median(each[name]))
        met = statistics.median(each[worst]) >= 1.5
        lists = _named(found, LOSSD, "/loss JSON lists")
        assert lists is not None
        floor = json_floors[w.label].median
        why = (
            f"the JSON text alone (orjson's parse of the /loss JSON body and its dump of the "
            f"gradient, in-process) takes {_s(floor)}; MLServer's v2 JSON takes "
            f"{_s(mlserver_json.median)}, so 1.5x asks for lossd's {worst} in "
            f"{_s(mlserver_json.median / 1.5)}, {mlserver_json.median / 1.5 / floor:.2f}x that "
            f"floor, with the engine's {_s(engines[w.label].median)} and the transfer on top"
        )
        out.append(
            Target(
                f"{w.label}: every JSON format of lossd >= 1.5x MLServer's v2 JSON",
                "; ".join(f"{name} {_spread(r)}x" for name, r in each.items()),
                met,
                "" if met else why,
            )
        )
    return out


def _binary_targets(
    workloads: list[Workload],
    timed: dict[str, list[Timed]],
    floors: dict[str, tuple[Timed, Timed]],
    engines: dict[str, Timing],
    rss: tuple[float, float],
) -> list[Target]:
    """The binary path against the echo floor and packed; 2048 x 32,000 in time and memory."""
    out = []
    mse, lm, half = workloads[0], workloads[2], workloads[3]
    own, echo = floors[mse.label]
    r = ratios(own, echo)
    met = statistics.median(r) <= 2
    out.append(
        Target(
            f"{mse.label} binary (per-sample losses and gradient back): <= 2x the echo floor",
            f"{_spread(r)}x ({_s(own.median)} vs {_s(echo.median)} for "
            f"{own.request_bytes / 1e6:.0f} MB in, {own.response_bytes / 1e6:.0f} MB out)",
            met,
            ""
            if met
            else f"the engine's own work (`core.evaluate` in-process, gradient only) is "
            f"{_s(engines[mse.label].median)}; the echo is raw sockets, with no HTTP parser or "
            "ASGI app, so it is a lower floor than uvicorn's",
        )
    )
    packed = _named(timed[mse.label], LOSSD, "/loss packed")
    binary = min(
        (t for t in timed[mse.label] if t.format.system == LOSSD and t.format.name in BINARY),
        key=lambda t: t.median,
    )
    assert packed is not None
    r = ratios(packed, binary)
    out.append(
        Target(
            f"{mse.label}: binary >= 3x faster than packed base64",
            f"{_spread(r)}x ({binary.format.name} {_s(binary.median)} vs packed {_s(packed.median)})",
            statistics.median(r) >= 3,
            ""
            if statistics.median(r) >= 3
            else f"packed now costs only {_s(packed.median)}: its base64 is decoded and encoded "
            "without the GIL in one pass, so 3x would ask binary for "
            f"{_s(packed.median / 3)}, below the echo floor of the same arrays' bytes "
            f"({_s(echo.median)})",
        )
    )
    lm_best = best(timed[lm.label], LOSSD)
    assert lm_best is not None
    own, echo = floors[lm.label]
    met = lm_best.median <= 1.0
    out.append(
        Target(
            f"{lm.label}, index targets, over binary: <= 1.0 s end to end",
            f"{_span(lm_best.times)} ({lm_best.format.name})",
            met,
            ""
            if met
            else f"moving the same bytes through the bare echo takes {_s(echo.median)} "
            f"({own.request_bytes / 1e6:.0f} MB in, {own.response_bytes / 1e6:.0f} MB out), the "
            f"engine in-process {_s(engines[lm.label].median)}; lossd reads the whole body "
            "before it computes and computes before it sends, so the three add up",
        )
    )
    idle, peak = rss
    payload = lm.predictions.data.nbytes + lm.targets.data.nbytes
    met = peak <= 2.5 * payload / 1e6
    out.append(
        Target(
            f"{lm.label}: lossd's peak RSS <= 2.5x the payload",
            f"{peak / (payload / 1e6):.2f}x ({peak:.0f} MB above {idle:.0f} MB idle, payload "
            f"{payload / 1e6:.0f} MB)",
            met,
            ""
            if met
            else f"the request's body ({own.request_bytes / 1e6:.0f} MB, read whole before it "
            f"is decoded: its arrays are views of it) and the answer's gradient "
            f"({own.response_bytes / 1e6:.0f} MB) are alive together, "
            f"{(own.request_bytes + own.response_bytes) / payload:.2f}x the payload; the "
            f"{max(0.0, peak - (own.request_bytes + own.response_bytes) / 1e6):.0f} MB above "
            "them are the engine's temporaries and the allocator's",
        )
    )
    half_best = best(timed[half.label], LOSSD)
    assert half_best is not None
    r = ratios(half_best, lm_best)
    bytes_ratio = half_best.request_bytes / lm_best.request_bytes
    met = statistics.median(r) <= 1.0 and bytes_ratio <= 0.51
    out.append(
        Target(
            "bfloat16 logits: half the bytes of float32 and no slower",
            f"{bytes_ratio:.2f}x the bytes, {_spread(r)}x the time ({_s(half_best.median)} vs "
            f"{_s(lm_best.median)})",
            met,
            ""
            if met
            else f"the answer is as large for both ({half_best.response_bytes / 1e6:.0f} and "
            f"{lm_best.response_bytes / 1e6:.0f} MB: the gradient is float32), and the bfloat16 "
            "logits are widened to a float32 copy before the kernel",
        )
    )
    return out


def _json_targets(
    decoded: dict[str, tuple[Timing, Timing]],
    timed: dict[str, list[Timed]],
    ce: str,
    per_number: list[float],
) -> list[Target]:
    nested, flat, v2 = (decoded[k] for k in decoded)
    out = []
    r = nested[0].median / flat[0].median
    out.append(
        Target(
            "JSON: nested 2-D lists decode as fast as flat ones (within 10%)",
            f"{r:.2f}x ({_s(nested[0].median)} vs {_s(flat[0].median)}, in-process)",
            r <= 1.1,
        )
    )
    lists = _named(timed[ce], LOSSD, "/loss JSON lists")
    v2_e2e = _named(timed[ce], LOSSD, "/v2 JSON")
    assert lists is not None and v2_e2e is not None
    r = v2[0].median / nested[0].median
    e2e = ratios(v2_e2e, lists)
    out.append(
        Target(
            "JSON: /v2 JSON as fast as /loss JSON (within 10%)",
            f"decoding {r:.2f}x; end to end ({ce}) {_spread(e2e)}x",
            r <= 1.1 and statistics.median(e2e) <= 1.1,
        )
    )
    find, shape, fill, orjson_ns = per_number
    why = (
        f"lossd's parser makes three passes over the text where orjson makes one: finding the "
        f"lists {find:.0f} ns, checking and counting them {shape:.0f} ns and converting "
        f"{fill:.0f} ns per number, against orjson's {orjson_ns:.0f} ns for its whole parse "
        f"(the section's last table); the conversion pass alone is {fill / orjson_ns:.2f}x that, "
        "so 1.3x needs a faster conversion as well as one pass in place of three"
    )
    for label, (lossd, own) in decoded.items():
        r = lossd.median / own.median
        out.append(
            Target(
                f"JSON: {label} within 1.3x of orjson's own parse",
                f"{r:.2f}x ({_s(lossd.median)} vs {_s(own.median)})",
                r <= 1.3,
                "" if r <= 1.3 else why,
            )
        )
    return out


def run(quick: bool = False) -> Section:
    rounds = 1 if quick else 3
    rows = 256 if quick else 2048
    lm_formats = ("/loss binary", "/v2 binary", "gRPC raw")
    workloads = [
        mse_workload(1_000_000, EVERY),
        ce_workload(100_000, 10, "float64", EVERY),
        ce_workload(rows, 32_000, "float32", lm_formats),
        ce_workload(rows, 32_000, "bfloat16", lm_formats),
    ]
    loads: dict[str, str] = {}
    timed: dict[str, list[Timed]] = {}
    floors: dict[str, tuple[Timed, Timed]] = {}
    with systems() as found, echo_server() as echo:
        callers = Callers(found)
        try:
            loads["small"] = _load_average()
            small_results = small(callers, quick)
            for w in workloads:
                loads[w.label] = _load_average()
                timed[w.label] = time_workload(w, callers, rounds)
            floors[workloads[0].label] = floor_pairs(
                workloads[0], {"gradient": True}, callers, echo, rounds
            )
            floors[workloads[2].label] = floor_pairs(
                workloads[2], LOSS_OPTIONS, callers, echo, rounds
            )
            rss = peak_rss(workloads[2], callers)
        finally:
            callers.close()
    loads["end"] = _load_average()
    engines = {w.label: engine_time(w, 3) for w in workloads}
    json_floors = {w.label: json_floor(w, 3) for w in workloads[:2]}
    decode_table, decoded = json_decoding(3 if quick else 5)
    passes_table, per_number = parser_passes(3 if quick else 5)
    floor_table = Table(
        "lossd's /loss binary against a bare echo of the same bytes (`benchmarks/_echo.py`)",
        ["workload", "lossd", "echo", "lossd / echo", "request MB", "response MB"],
    )
    for label, (own, echo_timed) in floors.items():
        floor_table.add(
            label,
            _span(own.times),
            _span(echo_timed.times),
            f"{_spread(ratios(own, echo_timed))}x",
            f"{own.request_bytes / 1e6:.1f}",
            f"{own.response_bytes / 1e6:.1f}",
        )
    engine_table = Table(
        "The engine alone: `core.evaluate` in this process on the same arrays",
        ["workload", "core.evaluate", "JSON text alone (orjson parse + dump)"],
    )
    for w in workloads:
        floor = json_floors.get(w.label)
        engine_table.add(w.label, _span(engines[w.label]), _span(floor) if floor else "-")
    summary = Table(
        "lossd's best format against the best peer's, round by round",
        ["workload", "lossd's best", "best peer", "peer / lossd", "load average"],
    )
    fallback: Timed | None = None
    for w in workloads:
        own, peer = best(timed[w.label], LOSSD), best(timed[w.label], None)
        assert own is not None
        shown = peer.format.label if peer else "-"
        if peer is None and fallback is not None:
            peer, shown = (
                fallback,
                f"{fallback.format.label} (float32 logits: no peer takes bfloat16)",
            )
        if w.predictions.dtype == "float32":
            fallback = peer
        summary.add(
            w.label,
            f"{own.format.name} {_span(own.times)}",
            f"{shown} {_span(peer.times)}" if peer else "-",
            f"{_spread(ratios(peer, own))}x" if peer else "-",
            loads[w.label],
        )
    section = Section(
        "Peers: lossd beside MLServer and FastAPI + PyTorch",
        INTRO.format(rounds=rounds, slow=SLOW),
        tables=[
            _systems_table(found),
            summary,
            _small_table(small_results),
            *(_workload_table(w, timed[w.label], loads[w.label]) for w in workloads),
            floor_table,
            engine_table,
            decode_table,
            passes_table,
        ],
    )
    section.targets = _small_targets(small_results)
    section.targets += _peer_targets(workloads, timed, engines, json_floors)
    section.targets += _binary_targets(workloads, timed, floors, engines, rss)
    section.targets += _json_targets(decoded, timed, workloads[1].label, per_number)
    section.notes += [
        f"Load average (1/5/15 min) at the start of the small requests {loads['small']}, at the "
        f"end {loads['end']}: the 2 cores are shared with other work, so figures move between "
        "runs; the ratios are taken round by round, each system's request right after the "
        "other's.",
        "FastAPI + PyTorch takes JSON lists only: 2048 x 32,000 logits as JSON are about 0.7 GB "
        "of text, so it is not run on them; MLServer 1.7 has no BF16 datatype (its NumpyCodec "
        "and raw-contents reader know FP16, FP32 and FP64), so the bfloat16 row compares lossd "
        "with the peers' float32 times.",
        "MLServer's gRPC raw contents are unpacked with `struct` into Python lists and its "
        "outputs packed back the same way, so its raw path costs Python objects per element.",
    ]
    if quick:
        section.notes.append(f"Quick run: one round, {rows} x 32,000 logits.")
    return section


INTRO = (
    "The same workloads, in the same run, on lossd and on the services a user would otherwise "
    "deploy: MLServer (the standard Python server of the Open Inference Protocol v2) with a "
    "NumPy runtime, over REST v2 JSON and gRPC (typed contents and raw contents; MLServer has "
    "no REST binary tensor data), and FastAPI + PyTorch (JSON lists in, `torch` autograd, the "
    "loss and gradient out). Each peer runs from its own virtualenv under .bench/peers, "
    "created by this benchmark from the pinned benchmarks/peer_servers/*.txt. Every system "
    "answers the mean loss and its gradient, every answer is checked against NumPy, and every "
    "request is built before the clock starts and sent by the same client: httpx in 1 MB slices "
    "for HTTP (responses read whole, uncompressed), a bytes-in bytes-out gRPC channel. Small "
    "requests: `benchmarks/_load.py`'s closed loop (gRPC: as many calls in flight on one "
    "channel), {rounds} round(s) of one window per system. Large ones: one checked warm-up "
    "call per format, then {rounds} round(s) timing each format once in turn (a format whose "
    "warm-up took over {slow:g} s is timed by that call alone); median (min..max). Ratios are "
    "taken round by round."
)
