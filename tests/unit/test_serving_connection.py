"""The connection limits uvicorn's httptools protocol lacks, on the protocol itself with a fake transport.

The integration test (tests/integration/test_serving_limits.py) sends the measured inputs to the real
process; these pin the edges: a body in the chunk that completes a head never counts as head, the
clock runs from a connection's opening and stops when a request is whole.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from inference.app import ServingApp
from inference.config import ServerConfig
from inference.connection import GuardedHttpToolsProtocol
from tests.serving_model import write_model_dir


class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; closing is recorded, not done."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> ServingApp:
    a = ServingApp(ServerConfig(model_dir=write_model_dir(tmp_path_factory.mktemp("m") / "model")))
    a._log_stream = io.StringIO()
    a.load()
    return a


def _connect(app: ServingApp, loop: asyncio.AbstractEventLoop, monkeypatch, **limits: object):
    for name, value in limits.items():
        monkeypatch.setattr(GuardedHttpToolsProtocol, name, value)
    config = Config(app=app, http=GuardedHttpToolsProtocol, log_config=None, lifespan="off")
    config.load()
    protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def _status(transport: FakeTransport) -> int:
    return int(transport.written.split(b" ", 2)[1]) if transport.written else 0


def test_a_head_over_the_limit_is_answered_431_and_closed(app, monkeypatch):
    loop = asyncio.new_event_loop()
    try:
        protocol, transport = _connect(app, loop, monkeypatch, max_header_bytes=1024)
        protocol.data_received(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ")
        assert not transport.closed
        for _ in range(3):
            protocol.data_received(b"a" * 500)
        assert _status(transport) == 431 and transport.closed
        body = transport.written.split(b"\r\n\r\n", 1)[1]
        assert orjson.loads(body)["error"]["code"] == "header_too_large"
        assert b"MLOPS_SERVE_MAX_HEADER_BYTES" in body
    finally:
        loop.close()


def test_a_body_arriving_with_its_head_never_counts_as_head(app, monkeypatch):
    async def run() -> FakeTransport:
        protocol, transport = _connect(app, asyncio.get_running_loop(), monkeypatch, max_header_bytes=1024)
        body = b"\n".join(orjson.dumps({"user_id": 1, "k": 2}) for _ in range(200))
        head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/jsonlines\r\n"
        protocol.data_received(head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:2000])
        protocol.data_received(body[2000:])
        for _ in range(50):
            await asyncio.sleep(0.01)
        return transport

    transport = asyncio.run(run())
    assert len(transport.written) > 4000 and _status(transport) == 200, transport.written[:200]


def test_a_request_not_whole_in_time_is_answered_408_and_a_whole_one_is_not(app, monkeypatch):
    async def run() -> tuple[FakeTransport, FakeTransport, FakeTransport]:
        loop = asyncio.get_running_loop()
        _, silent = _connect(app, loop, monkeypatch, request_timeout_s=0.2)
        slow, slow_t = _connect(app, loop, monkeypatch, request_timeout_s=0.2)
        slow.data_received(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        whole, whole_t = _connect(app, loop, monkeypatch, request_timeout_s=0.2)
        whole.data_received(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.5)
        return silent, slow_t, whole_t

    silent, slow, whole = asyncio.run(run())
    assert _status(silent) == 408 and silent.closed
    assert _status(slow) == 408 and slow.closed and b"MLOPS_SERVE_REQUEST_TIMEOUT_S" in slow.written
    # Answered, then idle on a kept-alive connection: uvicorn's keep-alive timeout's business, not ours.
    assert _status(whole) == 200 and not whole.closed and b"408" not in whole.written
