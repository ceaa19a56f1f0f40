"""A bare echo of lossd's binary framing on 127.0.0.1: the floor of moving a request's bytes in
and an answer's bytes out, with no loss computed (``benchmarks/python_client.py``).

Raw sockets, a thread per connection, HTTP/1.1 with keep-alive, bodies with a Content-Length:

- ``POST /loss/<name>``: the body in lossd's binary framing; the answer is a lossd answer whose
  ``per_sample`` and ``gradient`` are the request's ``predictions`` and ``targets``, their bytes
  sent back as they came (``value`` 0, ``weight_sum`` and ``n`` the rows). ``lossd_client``
  reads it as it reads lossd's, so the client's whole path is timed against it.
- any other ``POST``: the body is read and dropped, the answer is empty (upload timings).

    python -m benchmarks._echo PORT
"""

from __future__ import annotations

import json
import socket
import sys
import threading

HOST = "127.0.0.1"
_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 1 << 16


def _read_head(conn: socket.socket, buffered: bytearray) -> tuple[bytes, dict[str, str]] | None:
    """The request line and headers (names lower-cased); None when the client hung up."""
    while _HEAD_END not in buffered:
        chunk = conn.recv(1 << 16)
        if not chunk or len(buffered) > _MAX_HEAD:
            return None
        buffered += chunk
    end = buffered.index(_HEAD_END)
    lines = bytes(buffered[:end]).decode("latin-1").split("\r\n")
    del buffered[: end + len(_HEAD_END)]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].encode(), headers


def _read_body(conn: socket.socket, buffered: bytearray, length: int) -> bytearray:
    body = bytearray(length)
    view = memoryview(body)
    got = min(length, len(buffered))
    view[:got] = buffered[:got]
    del buffered[:got]
    while got < length:
        n = conn.recv_into(view[got:], min(length - got, 1 << 22))
        if n == 0:
            raise ConnectionError("the client hung up mid-body")
        got += n
    return body


def _answer(body: bytearray, header_length: int) -> tuple[bytes, memoryview]:
    """The lossd answer echoing a framed request's predictions and targets."""
    doc = json.loads(body[:header_length])
    pred, targ = doc["predictions"], doc["targets"]
    rows = pred["shape"][0]
    answer = {
        "loss": "echo",
        "reduction": doc.get("reduction", "mean"),
        "reduce_over": "samples",
        "value": 0.0,
        "weight_sum": float(rows),
        "n": rows,
        "per_sample": pred,
        "gradient": targ,
        "params": {},
    }
    header = json.dumps(answer, separators=(",", ":")).encode()
    size = pred["binary_data_size"] + targ["binary_data_size"]
    data = memoryview(body)[header_length : header_length + size]
    return header, data


def _serve(conn: socket.socket) -> None:
    buffered = bytearray()
    with conn:
        while True:
            head = _read_head(conn, buffered)
            if head is None:
                return
            line, headers = head
            body = _read_body(conn, buffered, int(headers.get("content-length", "0")))
            if line.startswith(b"POST /loss/"):
                header, data = _answer(body, int(headers["inference-header-content-length"]))
                status = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    f"Inference-Header-Content-Length: {len(header)}\r\n"
                    f"Content-Length: {len(header) + len(data)}\r\n\r\n"
                )
                conn.sendall(status.encode() + header)
                conn.sendall(data)  # the request's own bytes, not copied
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def main(argv: list[str]) -> int:
    server = socket.create_server((HOST, int(argv[0])))
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
