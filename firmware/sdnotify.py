"""A small systemd notification client (``sd_notify``): one datagram per message to ``$NOTIFY_SOCKET``.

Under a ``Type=notify`` unit the agent says ``READY=1`` once it runs (source opened, model loaded),
``WATCHDOG=1`` from its frame loop (at most every half ``$WATCHDOG_USEC``, so a hung camera or model stops the
pings and systemd restarts the agent, ``WatchdogSec=``), ``STATUS=...`` lines for ``systemctl status`` and
``STOPPING=1`` when it shuts down. Without ``$NOTIFY_SOCKET`` (a laptop, the demo, the tests) every call is a
no-op. The environment is passed in, never read from ``os.environ`` here, so tests can point it at their own
socket; a socket path starting with ``@`` is an abstract socket (Linux).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("wardsight.device.sdnotify")

STATUS_EVERY_S = 30.0  # how often the loop refreshes STATUS= when systemd asks for no watchdog


def socket_address(value: str) -> str | None:
    """The ``AF_UNIX`` address for a ``$NOTIFY_SOCKET`` value: a path, or ``@name`` for an abstract socket."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # empty, relative or another transport (systemd 254's vsock:): not supported here


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half ``$WATCHDOG_USEC``), or None when the watchdog is not for ``pid``."""
    raw, owner = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    try:
        usec = int(raw)
        if owner and int(owner) != pid:  # meant for another process (the variable was inherited)
            return None
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier:
    """Sends ``READY=1``, rate-limited ``WATCHDOG=1`` pings, ``STATUS=`` and ``STOPPING=1`` to systemd."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        value = environ.get("NOTIFY_SOCKET", "")
        self.address = socket_address(value)
        if value and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket path; systemd notifications are off", value)
        self.watchdog = watchdog_interval(environ, os.getpid() if pid is None else pid) if self.address else None
        self._clock = clock
        self._last_tick: float | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one message; False when not under systemd or the message could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode("utf-8", errors="replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message, self.address)
            except OSError as exc:
                if not self._failed:  # once: a lost socket must not flood the journal at frame rate
                    log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc)
                self._failed = True
                return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def tick(self, status: Callable[[], str] | None = None) -> bool:
        """Called from the frame loop after each frame: a ``WATCHDOG=1`` ping (and a fresh ``STATUS=``) when the
        last one is half a watchdog period old; True when one was sent."""
        if self.address is None:
            return False
        now = self._clock()
        every = self.watchdog if self.watchdog is not None else STATUS_EVERY_S
        if self._last_tick is not None and now - self._last_tick < every:
            return False
        self._last_tick = now
        lines = ["WATCHDOG=1"] if self.watchdog is not None else []
        lines += _status(status() if status is not None else None)
        return self.send(*lines) if lines else False

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str | None) -> list[str]:
    return [] if text is None else ["STATUS=" + " ".join(text.split())]  # one line
