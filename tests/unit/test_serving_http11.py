"""The one-write uvicorn protocol over a real loopback socket: one write a response, HTTP unchanged."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from inference.http11 import OneWriteHttpToolsProtocol

WRITES: list[bytes] = []


class _Recorder:
    """Forwards to the real transport, remembering each write."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordingProtocol(OneWriteHttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_Recorder(transport))  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
        return
    answer = b"echo:" + body if body else b"hello"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=RecordingProtocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.01)
    yield int(server.servers[0].sockets[0].getsockname()[1])
    server.should_exit = True
    thread.join(timeout=10)


def _exchange(port: int, data: bytes, expect: int = 1) -> bytes:
    """Send raw bytes, read until `expect` complete responses (or the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        while got.count(b"HTTP/1.1 ") < expect or not _complete(got, expect):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def _complete(got: bytes, expect: int) -> bool:
    parts = got.split(b"HTTP/1.1 ")[1:]
    if len(parts) < expect:
        return False
    last = parts[-1]
    if b"\r\n\r\n" not in last:
        return False
    head, _, body = last.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        return body.endswith(b"0\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_a_response_is_one_write(port: int) -> None:
    WRITES.clear()
    got = _exchange(port, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert got.endswith(b"\r\n\r\necho:abc")
    assert len(WRITES) == 1
    assert WRITES[0] == got


def test_pipelined_requests_answer_in_order_one_write_each(port: int) -> None:
    WRITES.clear()
    request = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
    post = b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
    got = _exchange(port, request + post, expect=2)
    assert got.count(b"HTTP/1.1 200 OK") == 2
    assert got.index(b"hello") < got.index(b"echo:hi")
    assert len(WRITES) == 2


def test_head_sends_the_head_alone(port: int) -> None:
    WRITES.clear()
    got = _exchange(port, b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5" in got.lower()
    assert got.endswith(b"\r\n\r\n")  # no body after the head


def test_expect_100_continue_still_answers_continue_first(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"ok")
        final = b""
        while not final.endswith(b"echo:ok"):
            chunk = s.recv(65536)
            assert chunk, f"connection closed before the answer: {final!r}"
            final += chunk
    assert b"HTTP/1.1 200 OK" in final


def test_chunked_body_carries_the_head_with_its_first_chunk(port: int) -> None:
    WRITES.clear()
    got = _exchange(port, b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"transfer-encoding: chunked" in got.lower()
    assert got.endswith(b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n")
    assert WRITES[0].startswith(b"HTTP/1.1 200 OK") and WRITES[0].endswith(b"4\r\none,\r\n")
    assert len(WRITES) == 2
