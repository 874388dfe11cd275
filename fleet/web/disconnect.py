"""Knowing at once that a long response's client has gone (aiohttp only says so on the next write).

A handler that streams for minutes (the alert stream) otherwise holds its slot until its next write fails,
up to a heartbeat later. :func:`watch` puts a thin protocol in front of the connection's own for the length of
the response: it passes everything through and, when the socket closes, sets an event and calls back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web


class _Watch(asyncio.Protocol):
    """Passes every call to ``inner`` (the connection's protocol) and notes the connection's loss."""

    def __init__(self, inner: Any, lost: asyncio.Event, on_lost: Callable[[], None]) -> None:
        self.inner, self._lost, self._on_lost = inner, lost, on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # not called: the connection exists
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost.set()
        self._on_lost()
        self.inner.connection_lost(exc)


@contextlib.contextmanager
def watch(request: web.Request, on_lost: Callable[[], None] = lambda: None) -> Iterator[asyncio.Event]:
    """An event set (and ``on_lost`` called) the moment ``request``'s connection closes, while inside the block."""
    lost = asyncio.Event()
    transport = request.transport
    if transport is None or transport.is_closing():
        lost.set()
        yield lost
        return
    inner = transport.get_protocol()
    watcher = _Watch(inner, lost, on_lost)
    transport.set_protocol(watcher)
    try:
        yield lost
    finally:  # a closed TLS transport has no protocol left to ask about (and needs none back)
        if not transport.is_closing() and transport.get_protocol() is watcher:
            transport.set_protocol(inner)
