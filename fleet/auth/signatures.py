"""Ed25519 checks off the event loop, in batches: the signatures of the requests that arrive together go to the
checking thread as one job.

A request's proof and event signatures are checked on one thread while the loop goes on (``cryptography`` releases
the GIL during a check). Handing each request's checks to the thread on its own cost the loop more than the checks
it moved (a future, a queue put, a wake-up and a callback per request); here every request that asks during one
turn of the loop joins the same job, and the loop is woken once when the job is done. A success is kept on each
:class:`wardsight.wire.Signed` (:meth:`~wardsight.wire.Signed.verify`); a failure is left for the decision to find
and word, so nothing is decided here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from wardsight import wire

Check = tuple[Sequence[wire.Signed], wire.Ed25519PublicKey]
log = logging.getLogger("wardsight.fleet.auth")


class SignatureChecker:
    """One checking thread; :meth:`check` joins the job gathered in this turn of the loop (see the module)."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="signatures")
        self._pending: list[tuple[Check, asyncio.Future[None]]] = []
        self._lock = threading.Lock()  # (the pending list is only touched on the loop; this guards shutdown)
        self._closed = False
        self.jobs = 0  # jobs sent to the thread (the tests and the bench read it)

    def check(self, signed: Sequence[wire.Signed], key: wire.Ed25519PublicKey) -> asyncio.Future[None]:
        """Check ``signed`` with ``key`` on the thread; done once they are checked (never fails)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send, loop)
        self._pending.append(((signed, key), done))
        return done

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        checks = [c for c, _ in batch]
        try:
            with self._lock:
                if not self._closed:
                    job = self._thread.submit(_check_all, checks)
                    self.jobs += 1
                    job.add_done_callback(lambda _: _wake(loop, batch))
                    return
        except RuntimeError:  # (the interpreter is shutting down: no more threads)
            pass
        try:  # the server is stopping: checked here
            _check_all(checks)
        finally:
            _finish(batch)

    def close(self) -> None:
        """Stop the thread once its job is done."""
        with self._lock:
            self._closed = True
        self._thread.shutdown(wait=True)


def _check_all(checks: list[Check]) -> None:
    for signed, key in checks:
        for each in signed:
            try:
                each.verify(key)
            except wire.SignatureError:
                pass  # (the decision finds it and words it)
            except Exception:  # anything else: the decision checks it again on the loop and meets it there
                log.exception("signature check failed unexpectedly")


def _wake(loop: asyncio.AbstractEventLoop, batch: list[tuple[Check, asyncio.Future[None]]]) -> None:
    with contextlib.suppress(RuntimeError):  # (the loop is closed: nobody waits)
        loop.call_soon_threadsafe(_finish, batch)


def _finish(batch: list[tuple[Check, asyncio.Future[None]]]) -> None:
    for _, done in batch:
        if not done.done():  # (its request was cancelled)
            done.set_result(None)
