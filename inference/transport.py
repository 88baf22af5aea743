"""HTTP transport: the bare ASGI application around the route table, with body limits and the access log.

Everything about a request that is not its protocol lives here: the request id, the body read under
`MLOPS_SERVE_MAX_BODY_BYTES`, turning a `RequestError` into a 4xx answer and any other exception into
a 500 with a logged trace, the response headers, the request metrics and the JSON access log line.
Which handler answers is the route table's business (inference/routes.py); what a body means is the
protocols' (inference/protocols/). A bare ASGI callable on uvicorn (httptools, uvloop) rather than a
framework: one dict lookup routes a request, and no layer sits between uvicorn and the handler
(docs/serving.md compares it with the same handlers under Starlette).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import orjson

from inference.config import ServerConfig
from inference.metrics import ServingMetrics
from inference.queries import RequestError

if TYPE_CHECKING:
    from inference.routes import RouteTable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Faults are logged under the name they had before the app was split, so log queries keep working.
log = logging.getLogger("inference.app")

JSON = b"application/json"
REQUEST_ID_HEADERS = (b"x-request-id", b"x-amzn-sagemaker-inference-id", b"x-amzn-requestid")


@dataclass
class Answer:
    """A response before it is sent."""

    status: int
    body: bytes
    content_type: bytes = JSON
    queries: int = 0
    fallbacks: int = 0
    # Headers besides content-type, content-length and x-request-id (405's `Allow`).
    headers: tuple[tuple[bytes, bytes], ...] = ()
    # A large answer streams: `body` is empty and these chunks are sent as they come (chunked
    # transfer encoding), so the whole answer never sits in memory at once.
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[Scope, bytes, bytes], Awaitable[Answer]]
T = TypeVar("T")

# A body larger than this is parsed (and its queries checked) in a thread: that is pure Python for
# a while (50,000 short jsonlines take about 250 ms) and the event loop must keep answering `/ping`.
PARSE_IN_THREAD_BYTES = 64 * 1024


async def parse_off_loop(body: bytes, parse: Callable[[], T]) -> T:
    """`parse()` (which reads `body`) in a thread when the body is large, else right here (no thread hop)."""
    if len(body) > PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse)
    return parse()


class AsgiTransport:
    """The ASGI entry point: lifespan, then each HTTP request routed, answered, counted and logged.

    A subclass provides the state: `config`, `metrics`, `routes`, and `on_startup` (called once when
    the server starts, before it accepts requests; it must not block).
    """

    config: ServerConfig
    metrics: ServingMetrics
    routes: RouteTable
    _log_stream: TextIO

    def on_startup(self) -> None:
        """Called on the lifespan startup event; the serving app starts loading its model here."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request_id = ""
        content_type = b""
        length = -1
        for name, value in scope["headers"]:
            if name in REQUEST_ID_HEADERS and not request_id:
                request_id = value.decode("latin-1")[:128]
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        if not request_id:
            request_id = os.urandom(8).hex()
        method: str = scope["method"]
        path: str = scope["path"]
        route = "unmatched"
        try:
            handler, route = self.routes.match(method, path)
            body = await self._read_body(receive, length)
            answer = await handler(scope, body, content_type)
        except RequestError as e:
            answer = self._error(e.status, e.code, e.message, e.field, request_id, e.headers)
        except Exception:
            log.error(
                "unexpected fault answering %s %s (request %s)\n%s",
                method,
                path,
                request_id,
                traceback.format_exc(),
            )
            answer = self._error(
                500,
                "internal_error",
                f"unexpected server fault; quote request id {request_id}",
                None,
                request_id,
            )
        if answer.stream is None:
            await self._send(send, answer, request_id)
        else:
            await self._send_stream(send, answer, request_id, f"{method} {path[:256]}")
        seconds = time.perf_counter() - start
        self.metrics.observe_request(route, answer.status, seconds)
        if self.config.access_log:
            self._access_log(request_id, method, path, route, answer, seconds)

    @staticmethod
    def _headers(answer: Answer, request_id: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", answer.content_type), (b"x-request-id", request_id.encode("latin-1"))]
        if answer.stream is None:
            headers.append((b"content-length", str(len(answer.body)).encode()))
        if answer.headers:
            headers.extend(answer.headers)
        return headers

    async def _send(self, send: Send, answer: Answer, request_id: str) -> None:
        headers = self._headers(answer, request_id)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _send_stream(self, send: Send, answer: Answer, request_id: str, what: str) -> None:
        assert answer.stream is not None
        headers = self._headers(answer, request_id)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        try:
            async for chunk in answer.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception:
            # The status is sent: the only honest signal left is a connection closed before the end.
            log.error("fault while streaming %s (request %s)\n%s", what, request_id, traceback.format_exc())
            answer.status = 500
            raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _read_body(self, receive: Receive, length: int) -> bytes:
        limit = self.config.max_body_bytes
        if length > limit:
            raise self._too_big(length)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_big(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_big(self, size: int) -> RequestError:
        return RequestError(
            413,
            "body_too_large",
            f"the body has at least {size} bytes; the limit is {self.config.max_body_bytes} "
            "(MLOPS_SERVE_MAX_BODY_BYTES); send smaller batches",
        )

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None,
        request_id: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> Answer:
        self.metrics.error(code)
        body = {"error": {"code": code, "message": message, "field": field}, "request_id": request_id}
        return Answer(status, orjson.dumps(body), headers=headers)

    def _access_log(
        self, request_id: str, method: str, path: str, route: str, a: Answer, seconds: float
    ) -> None:
        line = orjson.dumps(
            {
                "ts": round(time.time(), 6),
                "level": "info",
                "logger": "inference.access",
                "request_id": request_id,
                "method": method,
                "path": path[:256],
                "route": route,
                "status": a.status,
                "duration_ms": round(seconds * 1000, 3),
                "queries": a.queries,
                "fallbacks": a.fallbacks,
            }
        )
        self._log_stream.write(line.decode() + "\n")
