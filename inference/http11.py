"""uvicorn's httptools protocol, sending a response's head and its first body chunk in one write.

Stock uvicorn writes the status line and headers as soon as the app sends `http.response.start`,
then the body on `http.response.body`: two `send` calls a response. On a loopback benchmark that
second write is one more wake-up of the client and, profiled under wrk, about a third of the
server's time went to these writes; holding the head back until the body comes raised saturation
throughput by ~14% (docs/serving.md). Everything else (parsing, keep-alive, pipelining,
100-continue, flow control) is uvicorn's own code; only the order of two writes changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGI3Application, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeldWrite:
    """Stands in for the transport while uvicorn writes the head: keeps the bytes instead."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _PrefixedTransport:
    """The real transport, with the held head prepended to the first write through it."""

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self._transport = transport
        self._head = head

    def write(self, data: bytes) -> None:
        if self._head:
            data, self._head = self._head + data, b""
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteCycle(RequestResponseCycle):
    """A request/response cycle that holds the head until the first body chunk, then writes both."""

    _held_head = b""

    async def send(self, message: ASGISendEvent) -> None:
        """ASGI send: as uvicorn's, but the head waits for the body (HEAD responses go at once)."""
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started and self.scope["method"] != "HEAD":
            transport, held = self.transport, _HeldWrite()
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._held_head = held.data
            return
        if kind == "http.response.body" and self._held_head:
            transport = self.transport
            self.transport = _PrefixedTransport(transport, self._held_head)  # type: ignore[assignment]
            self._held_head = b""
            try:
                await super().send(message)
            finally:
                # A disconnect between start and body: uvicorn's send returned without writing.
                self.transport = transport
            return
        await super().send(message)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with OneWriteCycle; pass as `uvicorn.run(..., http=...)`."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Every cycle, pipelined ones too, starts here; the subclass adds no state of its own
        # beyond a class-level default, so re-classing the instance uvicorn built is safe.
        cycle.__class__ = OneWriteCycle
        super()._start_asgi_task(cycle, app)
