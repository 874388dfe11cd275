"""Running the fleet app: in the foreground (``wardsight fleet serve``) or on a background thread.

The server speaks HTTPS with a certificate from the fleet's own CA (``fleet.pki``, in the keys directory);
plain HTTP only when ``insecure_http`` is set, for development. Every connection passes through
:mod:`fleet.web.connections` (header, body and TLS handshake timeouts, a cap on connections per address).

While it listens, a server writes where it does into ``server.listening.json`` next to its database (its data
directory): the URL it announces, the address it is bound to, the port (the real one, also when ``--port``, the
demo's port or ``port = 0`` chose it), whether it is plain HTTP, its process id and its database. It removes the
file when it stops cleanly. ``wardsight fleet token create --bundle`` reads it (:func:`running_server`): a file whose
process is gone, or that names another database, is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from fleet import pki
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.web import connections
from wardsight.errors import WardSightError

log = logging.getLogger(__name__)

RENEW_CHECK_SECONDS = 6 * 3600.0
LISTENING_FILE = "server.listening.json"  # next to the database, while the server listens


def _utcnow() -> datetime:
    return datetime.now(UTC)


def describe_store(config: ServerConfig) -> str:
    """Where the fleet database is, for people: the SQLite file, or the PostgreSQL URL without its password."""
    from fleet.store.pg import redact

    return redact(config.database_url) if config.database_url else str(config.database)


def keys_dir(config: ServerConfig) -> Path:
    """Where the server's keys and the fleet CA live (``load_server_config`` always sets ``keys_dir``)."""
    if config.keys_dir is not None:
        return config.keys_dir
    if config.database is None:
        raise ValueError("config.database must be set (load_server_config sets it)")
    return config.database.parent / "fleet-keys"


def url_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to ``host`` on this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        address = ipaddress.ip_address("127.0.0.1" if address.version == 4 else "::1")
    return f"[{address}]" if address.version == 6 else str(address)


@dataclass(frozen=True)
class Listening:
    """Where a running server listens, as it writes it into ``LISTENING_FILE``."""

    url: str  # as the server announces it
    host: str  # the address it is bound to (its configured host or the --host it was started with)
    port: int  # the port it listens on (never 0)
    insecure_http: bool
    pid: int
    database: str  # the resolved path of its database


def listening_path(config: ServerConfig) -> Path:
    if config.database is None:
        raise ValueError("config.database must be set (load_server_config sets it)")
    return config.database.parent / LISTENING_FILE


def write_listening(path: Path, listening: Listening) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one), mode 0644: it holds no secret."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    with contextlib.suppress(FileNotFoundError):
        part.unlink()
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o644)  # whatever the umask
        json.dump(asdict(listening), handle)
        handle.write("\n")
    os.replace(part, path)


def forget_listening(path: Path, listening: Listening) -> None:
    """Remove ``path`` if it still says ``listening`` (another server may have started on the database since)."""
    if _read_listening(path) == listening:
        with contextlib.suppress(OSError):
            path.unlink()


def _read_listening(path: Path) -> Listening | None:
    try:
        data = json.loads(path.read_text())
        listening = Listening(**data)
    except (OSError, ValueError, TypeError):  # none, unreadable, or not one this version writes
        return None
    fields = (listening.url, listening.host, listening.database)
    if not all(isinstance(v, str) for v in fields) or not isinstance(listening.pid, int):
        return None
    if not isinstance(listening.port, int) or not 0 < listening.port < 65536:
        return None
    return listening


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def running_server(config: ServerConfig) -> Listening | None:
    """The server that listens for ``config``'s database now, from its ``LISTENING_FILE``: None when there is no
    file, or its process is gone (a server that was killed), or it names another database."""
    path = listening_path(config)
    listening = _read_listening(path)
    if listening is None or not _process_alive(listening.pid):
        return None
    assert config.database is not None
    if listening.database != str(config.database.resolve()):
        return None
    return listening


SHUTDOWN_SECONDS = 5.0  # how long stopping waits for handlers still running


class BackgroundServer:
    """The fleet server on its own thread and event loop; ``url`` is known once ``start`` returns.

    With TLS (the default) ``ca_pem`` holds the fleet CA certificate devices pin and the server certificate
    is checked for renewal every ``renew_check_seconds`` (new connections get the new one).
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        renew_check_seconds: float = RENEW_CHECK_SECONDS,
        clock: Callable[[], datetime] = _utcnow,
        app_clock: Callable[[], float] | None = None,
        worker: bool = False,
    ) -> None:
        self.config = config
        self._worker = worker  # one of several on the port (SO_REUSEPORT); their supervisor announces the server
        self.url = ""
        self.ca_pem: str | None = None
        self.ca_fingerprint: str | None = None
        self.ca_path: Path | None = None
        self._clock = clock
        self._app_clock = app_clock  # the application's clock (tests move it); TLS renewal keeps ``clock``
        self._renew_check_seconds = renew_check_seconds
        self._ca: pki.FleetCA | None = None
        self._ssl: ssl.SSLContext | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None  # once started (tests look at its state; it runs on its own loop)
        self._listening: Listening | None = None  # what this server wrote into LISTENING_FILE
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleet-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._cleanup())  # e.g. the port was taken after setup
            self._loop.close()
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._cleanup())
        self._loop.close()

    def _setup_tls(self) -> ssl.SSLContext:
        directory = keys_dir(self.config)
        now = self._clock()
        try:
            self._ca = pki.ensure_ca(directory, now=now)
            cert_path, key_path = pki.ensure_server_cert(self._ca, directory, self.config.tls_hostnames, now=now)
        except OSError as exc:  # not a listening problem: say which directory
            raise pki.PKIError(f"cannot use the keys directory {directory}: {exc}") from None
        self.ca_pem = pki.ca_pem(self._ca)
        self.ca_fingerprint = pki.fingerprint(self._ca.cert)
        self.ca_path = self._ca.cert_path
        return pki.server_ssl_context(cert_path, key_path)

    async def _start(self) -> None:
        if not self.config.insecure_http:
            self._ssl = self._setup_tls()
        app = create_app(self.config, clock=self._app_clock) if self._app_clock else create_app(self.config)
        connections.install(app)
        self.app = app
        # Stopping waits at most SHUTDOWN_SECONDS for handlers still running (a device's long poll, an alert
        # stream), so Ctrl-C or a service stop ends the process promptly instead of after aiohttp's 60 s.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self.config.keepalive_timeout_seconds,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
        await self._runner.setup()
        limits = connections.Limits.of(self.config)  # slow clients, sockets per address, the TLS handshake
        site = connections.GuardedSite(
            self._runner, self.config.host, self.config.port, limits=limits, ssl_context=self._ssl,
            reuse_port=self._worker,
        )
        await site.start()
        addresses = self._runner.addresses
        port = addresses[0][1] if addresses else self.config.port
        scheme = "http" if self._ssl is None else "https"
        self.url = f"{scheme}://{url_host(self.config.host)}:{port}"
        if not self._worker:
            self._announce_listening(port)
        if self._ssl is not None and self._renew_check_seconds > 0:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_periodically())

    def _announce_listening(self, port: int) -> None:
        """Write ``LISTENING_FILE`` (see the module docstring); a server that cannot still serves."""
        if self.config.database is None:
            return
        self._listening = Listening(
            url=self.url,
            host=self.config.host,
            port=port,
            insecure_http=self._ssl is None,
            pid=os.getpid(),
            database=str(self.config.database.resolve()),
        )
        try:
            write_listening(listening_path(self.config), self._listening)
        except OSError as exc:
            log.warning("cannot write %s (token create cannot name this server's port): %s", LISTENING_FILE, exc)

    def _forget_listening(self) -> None:
        """Remove ``LISTENING_FILE`` if it is still this server's (another may have started on the database since)."""
        if self._listening is None or self.config.database is None:
            return
        forget_listening(listening_path(self.config), self._listening)
        self._listening = None

    async def _renew_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._renew_check_seconds)
            try:
                if self._renew(self._clock()):
                    log.info("server certificate renewed")
            except (WardSightError, OSError, ssl.SSLError) as exc:  # keep serving the current one; retry later
                log.warning("server certificate renewal failed: %s", exc)

    def _renew(self, now: datetime) -> bool:
        """Reissue the server certificate if due and load it for new connections; True if it changed."""
        if self._ca is None or self._ssl is None:
            return False
        directory = keys_dir(self.config)
        cert_path = directory / pki.SERVER_CERT
        before = cert_path.read_bytes() if cert_path.is_file() else b""
        cert_path, key_path = pki.ensure_server_cert(self._ca, directory, self.config.tls_hostnames, now=now)
        if cert_path.read_bytes() == before:
            return False
        self._ssl.load_cert_chain(cert_path, key_path)
        return True

    def renew_certificate(self, now: datetime | None = None, timeout: float = 15.0) -> bool:
        """Run the renewal check now on the server's loop (``now`` for tests); True if a new one is served."""

        async def renew() -> bool:
            return self._renew(now or self._clock())

        return asyncio.run_coroutine_threadsafe(renew(), self._loop).result(timeout)

    async def _cleanup(self) -> None:
        self._forget_listening()  # first: no one is told of a server that is going away
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(BaseException):
                await self._renewer
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fleet server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def serve_forever(
    config: ServerConfig,
    *,
    announce: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Run the server until Ctrl-C, SIGTERM (or ``stop`` is set), telling the operator where it is and what to pin."""
    try:
        server = BackgroundServer(config).start()
    except OSError as exc:
        raise WardSightError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    stopping = stop or threading.Event()
    try:
        with stop_on_signals(stopping):  # before the first line: whoever reads it may signal at once
            announce(f"fleet server on {server.url} (console: {server.url}/), database {describe_store(config)}")
            if server.ca_pem is None:
                announce("WARNING: plain HTTP (insecure_http): for development only; devices send events unencrypted")
            else:
                announce(f"fleet CA {server.ca_path} (sha256 {server.ca_fingerprint}); bundles carry it to devices")
            stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@contextlib.contextmanager
def stop_on_signals(stopping: threading.Event) -> Iterator[None]:
    """Ctrl-C and ``systemctl stop`` (SIGINT, SIGTERM) set ``stopping``, whatever this process inherited (a SIGINT
    ignored by whoever started it would otherwise never end it). Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda *_: stopping.set()) for number in wanted}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
