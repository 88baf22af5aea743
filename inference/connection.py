"""The HTTP connection's own limits, which uvicorn's httptools protocol lacks: head size and arrival time.

uvicorn bounds the time between requests on a kept-alive connection (`timeout_keep_alive`) and, with
h11 only, the size of an incomplete event (`h11_max_incomplete_event_size`). With httptools (the
faster parser this server runs), nothing bounds a request's head (a 64 MB header was accepted and
held in memory) nor how long a request may take to arrive (100 connections that sent half a head
were held until the client gave up). `GuardedHttpToolsProtocol` adds both: a head over
`MLOPS_SERVE_MAX_HEADER_BYTES` is answered 431, and a request not whole within
`MLOPS_SERVE_REQUEST_TIMEOUT_S` of its first byte (or of the connection, for one that sends
nothing) is answered 408; either closes the connection.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference.config import ServerConfig

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding the request head's size and a request's arrival time."""

    # Set from the server's configuration by `configure` before uvicorn starts (in every worker).
    max_header_bytes = ServerConfig.max_header_bytes
    request_timeout_s = ServerConfig.request_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def configure(cls, config: ServerConfig) -> None:
        """Take the limits from the server's configuration."""
        cls.max_header_bytes = config.max_header_bytes
        cls.request_timeout_s = config.request_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: a connection that sends nothing is closed like a slow request."""
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting what arrives before the head is complete against the head limit."""
        in_head = self._in_head
        if self._deadline is None and in_head:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        # Counted only when a head was open before and after this chunk: the bytes of a head that
        # completed here, and of a body, never count.
        if in_head and self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(
                    431,
                    "header_too_large",
                    f"the request line and headers exceed {self.max_header_bytes} bytes "
                    "(MLOPS_SERVE_MAX_HEADER_BYTES); send fewer or shorter headers",
                )

    def on_headers_complete(self) -> None:
        """The head is whole: stop counting it."""
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request is whole: stop the clock; the next request's head is counted afresh."""
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # an answer is under way: no room for another status line
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request did not arrive whole within {self.request_timeout_s} s "
            "(MLOPS_SERVE_REQUEST_TIMEOUT_S); send it in one go",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._disarm()
        body = orjson.dumps(
            {"error": {"code": code, "message": message, "field": None}, "request_id": os.urandom(8).hex()}
        )
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head % (status, _REASONS[status], len(body)) + body)
        self.transport.close()
        if self.cycle is not None:
            # An app still waiting for the body sees the client gone rather than a truncated body.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
