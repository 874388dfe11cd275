"""Connection limits below HTTP, which aiohttp does not have: slow clients are cut off, one address holds a few sockets.

:class:`GuardedSite` is aiohttp's ``TCPSite`` with every accepted socket passed through a :class:`ConnectionGuard`:

- *per address*: at most ``max_connections_per_address`` open connections from one IP address, counted at accept
  (before TLS); more are closed at once. Networks in ``connection_cap_exempt`` (loopback by default: a local reverse
  proxy, the load benchmark) are not counted.
- *TLS handshake*: the guard starts TLS itself (``loop.start_tls``), so the handshake is bounded by
  ``tls_handshake_timeout_seconds`` and a handshaking socket already counts for its address.
- *headers*: a request's line and headers must arrive within ``header_timeout_seconds`` of its first byte (of the
  connection's start, for its first request), however the bytes trickle in: then ``408`` (only if some of the request
  came; a connection that sent nothing is just closed) and the connection closes.
- *body*: a request body that sends nothing for ``body_idle_timeout_seconds``, or that averages less than
  ``body_min_bytes_per_second`` after its first ``body_idle_timeout_seconds``, gets ``408`` (if no response was
  started) and is closed. A stall while the server is not reading (flow control) is not the client's.

Only a request's arrival is timed: once a request is in, the server may take as long as it likes to answer (the jobs
long poll, the alert stream); idle connections between requests are aiohttp's ``keepalive_timeout``. The guard sees
how far aiohttp's parser got through two of its request handler's attributes (``_request_count``, ``_messages``);
the tests in ``tests/fleet/test_connection_limits.py`` would catch an aiohttp that changed them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from fleet.config import ServerConfig
from fleet.web.errors import RejectedError

log = logging.getLogger("wardsight.fleet.connections")


@dataclass(frozen=True)
class Limits:
    """The guard's settings (see :class:`fleet.config.ServerConfig`)."""

    header_timeout: float
    body_idle_timeout: float
    body_min_rate: float
    handshake_timeout: float
    per_address: int
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def of(cls, config: ServerConfig) -> Limits:
        return cls(
            header_timeout=config.header_timeout_seconds,
            body_idle_timeout=config.body_idle_timeout_seconds,
            body_min_rate=float(config.body_min_bytes_per_second),
            handshake_timeout=config.tls_handshake_timeout_seconds,
            per_address=config.max_connections_per_address,
            exempt=tuple(ipaddress.ip_network(n, strict=False) for n in config.connection_cap_exempt),
        )


class Addresses:
    """Open connections per client address, and whether one more may open."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: dict[str, int] = {}
        self._warned: set[str] = set()

    def _exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.limits.exempt)

    def admit(self, address: str) -> bool:
        limit = self.limits.per_address
        if limit == 0 or self._exempt(address):
            return True
        count = self.open.get(address, 0)
        if count >= limit:
            if address not in self._warned:  # once per episode: a flood must not flood the log too
                self._warned.add(address)
                log.warning("connections from %s refused: %d open (max_connections_per_address)", address, count)
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.open.get(address)
        if count is None:
            return
        if count <= 1:
            del self.open[address]
        else:
            self.open[address] = count - 1
        if self.open.get(address, 0) < self.limits.per_address:
            self._warned.discard(address)


class BodyTimeoutError(RejectedError):
    """What a handler reading a body that stopped coming gets: the guard has already written this 408 and closed
    the connection; raised through the error middleware it is logged and counted like every refusal."""

    def __init__(self, reason: str) -> None:
        super().__init__(408, reason, code="request_timeout")


def timeout_response(reason: str) -> bytes:
    """A complete ``408`` with the server's JSON error body, closing the connection (RFC 9110, 15.5.9)."""
    body = json.dumps({"error": reason, "code": "request_timeout"}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGuard(asyncio.Protocol):
    """One accepted socket: counted for its address, TLS started with a deadline, then aiohttp's request handler
    behind it, with a deadline on each request's head and on the progress of its body."""

    def __init__(self, site: GuardedSite) -> None:
        self._site, self._limits = site, site.limits
        self._loop = asyncio.get_running_loop()
        self._address: str | None = None  # set while counted
        self._transport: asyncio.Transport | None = None
        self._inner: Any = None  # aiohttp's RequestHandler, once TLS (if any) is up
        self._handshake: asyncio.Task[None] | None = None
        self._early: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._head_since: float | None = None  # a request's head is due (since then)
        self._head_bytes = False  # and some of it came
        self._payload: Any = None  # the body being received (aiohttp's StreamReader)
        self._body_since = self._body_last = 0.0
        self._body_base = 0
        self.response_started = False  # for the request whose body is awaited (set by note_response)

    # ---- the socket's life ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # the socket's: TLS, if any, is started below
        peer = raw.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        if not self._site.addresses.admit(address):
            raw.abort()
            return
        self._address = address
        self._site.guards.add(self)
        if self._site.tls is None:
            self._begin(raw)
        else:
            raw.pause_reading()
            self._handshake = self._loop.create_task(self._start_tls(raw))

    async def _start_tls(self, raw: asyncio.Transport) -> None:
        assert self._site.tls is not None
        try:
            tls = await self._loop.start_tls(
                raw, self, self._site.tls, server_side=True, ssl_handshake_timeout=self._limits.handshake_timeout
            )
        except asyncio.CancelledError:
            raw.abort()
            self._release()
            raise
        except Exception as exc:  # timed out, refused, reset: the client goes; nobody else needs to know
            log.debug("TLS handshake with %s failed: %s: %s", self._address, type(exc).__name__, exc)
            raw.abort()
            self._release()
            return
        finally:
            self._handshake = None
        if self._closed:  # lost right after the handshake: connection_lost has released it
            return
        if tls is None:
            raw.abort()
            self._release()
            return
        self._begin(tls)

    def _begin(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._inner = self._site.handler_factory()
        self._inner.connection_made(transport)
        self._head_since, self._head_bytes = self._loop.time(), False
        self._arm()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:  # TLS may pass on data the client sent with its handshake before start_tls returns
            self._early.append(data)
            return
        before = inner._request_count
        inner.data_received(data)
        self._observe(inner._request_count - before, inner)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if self._inner is not None:
            self._inner.connection_lost(exc)
        self._release()

    def _release(self) -> None:
        self._site.guards.discard(self)
        if self._address is not None:
            self._site.addresses.release(self._address)
            self._address = None

    def abort_handshake(self) -> None:
        """On shutdown: a connection still in its TLS handshake goes (aiohttp closes the others)."""
        if self._handshake is not None:
            self._handshake.cancel()

    # ---- deadlines ------------------------------------------------------------------------------------

    def _observe(self, new_requests: int, inner: Any) -> None:
        """After aiohttp parsed a chunk: a request's head completed, its body moved, or a new head began."""
        now = self._loop.time()
        if new_requests:
            self._head_since, self._head_bytes, self.response_started = None, False, False
            payload = inner._messages[-1][1] if inner._messages else None
            if payload is not None and not payload.is_eof():
                self._payload, self._body_since, self._body_last = payload, now, now
                self._body_base = payload.total_bytes
            else:
                self._payload = None
        elif self._payload is not None:
            if self._payload.is_eof():
                self._payload = None
            else:
                self._body_last = now
        else:
            if self._head_since is None:
                self._head_since = now
            self._head_bytes = True
        self._arm()

    def _deadline(self) -> float | None:
        limits = self._limits
        if self._head_since is not None:
            return self._head_since + limits.header_timeout
        if self._payload is not None:
            idle = self._body_last + limits.body_idle_timeout
            if limits.body_min_rate <= 0:
                return idle
            received = self._payload.total_bytes - self._body_base
            return min(idle, self._body_since + limits.body_idle_timeout + received / limits.body_min_rate)
        return None

    def _arm(self) -> None:
        deadline = self._deadline()
        if deadline is None:
            self._cancel_timer()
        elif self._timer is None or self._timer.when() > deadline:
            self._cancel_timer()
            self._timer = self._loop.call_at(deadline, self._check)
        # a timer due earlier stays: when it fires it looks again (progress mostly moves deadlines later)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        transport = self._transport
        if self._closed or transport is None:
            return
        if self._payload is not None and self._payload.is_eof():
            self._payload = None
        deadline = self._deadline()
        if deadline is None:
            return
        now = self._loop.time()
        if now < deadline:
            self._timer = self._loop.call_at(deadline, self._check)
            return
        if not transport.is_reading():  # the server holds the client back (flow control): start again
            if self._head_since is not None:
                self._head_since = now
            else:
                self._body_since, self._body_last, self._body_base = now, now, self._payload.total_bytes
            self._arm()
            return
        self._expire(transport)

    def _expire(self, transport: asyncio.Transport) -> None:
        limits = self._limits
        if self._head_since is not None:
            reason = f"request headers not received within {limits.header_timeout:g} s"
            answer = self._head_bytes  # nothing at all came: no request to answer
        else:
            reason = (
                f"request body too slow (nothing for {limits.body_idle_timeout:g} s,"
                f" or under {limits.body_min_rate:g} bytes/s)"
            )
            answer = not self.response_started
        if answer:
            log.warning("connection from %s closed (408): %s", self._address, reason)
            transport.write(timeout_response(reason))
        else:
            log.info("connection from %s closed: %s", self._address, reason)
        if self._payload is not None:  # a handler reading the body gets this, not a reset connection (and a traceback)
            self._payload.set_exception(BodyTimeoutError(reason))
        self._inner.force_close()  # closes the transport once the 408 is written


async def note_response(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: a body timeout after this closes the connection without a 408."""
    transport = request.transport
    guard = transport.get_protocol() if transport is not None and not transport.is_closing() else None
    if isinstance(guard, ConnectionGuard):
        guard.response_started = True


def install(app: web.Application) -> None:
    """What the app needs for :class:`GuardedSite` (before the runner freezes it)."""
    app.on_response_prepare.append(note_response)


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site with every connection behind a :class:`ConnectionGuard` (which starts TLS itself)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: Limits,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, host, port)
        self.tls, self.limits, self.reuse_port = ssl_context, limits, reuse_port
        self.addresses = Addresses(limits)
        self.guards: set[ConnectionGuard] = set()
        server = runner.server
        assert server is not None
        self.handler_factory = server

    @property
    def name(self) -> str:
        return super().name.replace("http://", "https://", 1) if self.tls is not None else super().name

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ConnectionGuard(self), self._host, self._port, backlog=self._backlog,
            reuse_port=self.reuse_port or None,  # several workers on one port (SO_REUSEPORT): the kernel spreads them
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port

    async def stop(self) -> None:
        await super().stop()
        for guard in list(self.guards):
            guard.abort_handshake()
