"""The delivery worker: one task that starts a *drain* per endpoint whose head delivery is due, and each
drain sending that endpoint's due deliveries one after another, in order (see :mod:`fleet.webhooks.retry`).

At most ``MAX_CONCURRENT_ENDPOINTS`` endpoints are sent to at once. The worker looks at the queue when it is
woken (:func:`wake`: a new event, an endpoint enabled, a redelivery) and at least every ``POLL_SECONDS``. A bug
costs one attempt (recorded as an internal error), and a drain that fails outside an attempt pauses its
endpoint for ``POLL_SECONDS``: neither ends the worker. Every connection goes through the SSRF guard's socket
factory (:mod:`fleet.webhooks.ssrf`).

Several workers (server processes on one PostgreSQL database) drain the same queue: each attempt is made under a
claim (:mod:`fleet.webhooks.claims`: the head's row lock, on a dedicated connection, for the attempt), so a
delivery is attempted by one worker at a time, an endpoint's next delivery only after its head is delivered or
dead, and a delivery whose worker died is taken over by another. An endpoint whose head another worker holds is
left alone until the next look (:class:`fleet.webhooks.claims.Busy`). :func:`wake` is the one hook that makes a
worker look now: it is called in-process when this worker stores an event (or an operator enables an endpoint or
redelivers); a worker learns of deliveries queued by *other* workers from its poll, every
``SHARED_POLL_SECONDS`` (1 s) on PostgreSQL: the storing worker starts their drains itself at once, so the poll
only bounds how soon idle workers share a backlog the storing worker cannot send alone (all its drains busy)
and how soon a dead worker's delivery is taken over, at the cost of one indexed query per worker per second.
A cross-worker wake-up (PostgreSQL LISTEN/NOTIFY) only has to call :func:`wake`.

The dispatcher's loop stays hand-written rather than :func:`fleet.web.tasks.periodic`: it sleeps until the next
head is due or it is woken, not a fixed interval, and its shutdown cancels it together with its drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from fleet.health.metrics import METRICS_KEY
from fleet.store.connection import Database
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.webhooks import queue, retry
from fleet.webhooks.claims import Busy, Claim, ClaimLost, Claims, for_database
from fleet.webhooks.envelope import signed_headers
from fleet.webhooks.retry import Failure, Outcome
from fleet.webhooks.ssrf import UrlRefusedError, check_url, guarded_socket_factory

log = logging.getLogger("wardsight.fleet.delivery")

MAX_CONCURRENT_ENDPOINTS = 4
POLL_SECONDS = 5.0  # the worker looks at the queue at least this often, whatever it was told
SHARED_POLL_SECONDS = 1.0  # ... and this often when other workers share the queue (PostgreSQL; see above)
USER_AGENT = "WardSight-Webhooks/1"
# A claim (PostgreSQL) outlives its attempt's timeout by this much at most before PostgreSQL ends its session: time
# to sign, connect and record; a worker whose claim is idle longer has hung, and another worker takes it over.
CLAIM_GRACE_SECONDS = 30.0

RNG_KEY = web.AppKey("delivery_rng", random.Random)  # optional: a seeded RNG for the jitter (tests)


@dataclass
class Worker:
    app: web.Application
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    drains: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    paused_until: dict[int, float] = field(default_factory=dict)  # loop time; after an error, or drained elsewhere
    rng: random.Random = field(default_factory=random.Random)
    session: aiohttp.ClientSession | None = None
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS))
    claims: Claims | None = None  # set when the app starts (worker_context), from its database
    task: asyncio.Task[None] | None = None  # the dispatcher

    @property
    def db(self) -> Database:
        return self.app[DB_KEY].db

    @property
    def schedule(self) -> list[float]:
        return list(self.app[CONFIG_KEY].webhook_retry_schedule)

    @property
    def poll_seconds(self) -> float:
        return SHARED_POLL_SECONDS if self.claims is not None and self.claims.shared else POLL_SECONDS

    def now(self) -> float:
        return self.app[CLOCK_KEY]()

    def wake(self) -> None:
        """Look at the queue now (see :func:`wake`)."""
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            self.wakeup.clear()
            try:
                delay = self._dispatch()
            except Exception:
                log.exception("webhook worker: cannot read the delivery queue")
                delay = POLL_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=max(0.0, min(delay, self.poll_seconds)))

    def _dispatch(self) -> float:
        """Start a drain for every idle endpoint whose head is due; return seconds until the next one is."""
        now, loop_now = self.now(), asyncio.get_running_loop().time()
        delay = self.poll_seconds
        for head in queue.heads(self.db):
            endpoint_id = head["endpoint_id"]
            if endpoint_id in self.drains:
                continue
            paused = self.paused_until.get(endpoint_id, 0.0) - loop_now
            if paused > 0:
                delay = min(delay, paused)
                continue
            due = retry.due(head, self.schedule)
            if due <= now:
                self.drains[endpoint_id] = asyncio.create_task(self._drain(endpoint_id))
            else:
                delay = min(delay, due - now)
        return delay

    async def _drain(self, endpoint_id: int) -> None:
        """Send an endpoint's due deliveries one after another, in order, until none is due."""
        assert self.claims is not None
        try:
            while True:
                async with self.slots, self.claims.claim(endpoint_id) as claim:
                    if claim is None or retry.due(claim.delivery, self.schedule) > self.now():
                        return
                    await self._attempt(claim)
        except Busy:  # another worker drains this endpoint: look again at the next poll
            self.paused_until[endpoint_id] = asyncio.get_running_loop().time() + self.poll_seconds
        except ClaimLost as exc:
            log.warning("webhook worker: %s before its attempt was recorded; it stays pending and is sent again", exc)
            self.paused_until[endpoint_id] = asyncio.get_running_loop().time() + self.poll_seconds
        except Exception:
            log.exception(
                "webhook worker: endpoint %s paused for %.0f s after an internal error", endpoint_id, POLL_SECONDS
            )
            self.paused_until[endpoint_id] = asyncio.get_running_loop().time() + POLL_SECONDS
        finally:
            self.drains.pop(endpoint_id, None)
            self.wakeup.set()

    async def _attempt(self, claim: Claim) -> None:
        delivery = claim.delivery
        target = queue.target(claim.db, delivery["endpoint_id"])
        if target is None:
            return
        endpoint_id, name, url, hmac_secret = target
        now = self.now()
        try:
            outcome = await self._send(url, hmac_secret, delivery, now)
        except Exception as exc:  # a bug must cost one attempt, not the worker
            log.exception("webhook %s (%s): delivery %s failed inside the server", endpoint_id, name, delivery["id"])
            outcome = Outcome(None, f"internal error ({type(exc).__name__})")
        self._record(claim, endpoint_id, name, outcome, now)
        metrics = self.app.get(METRICS_KEY)
        if metrics is not None:
            metrics.webhook_attempts.labels(outcome="delivered" if outcome.ok else "failed").inc()

    async def _send(self, url: str, hmac_secret: str | None, delivery: Mapping[str, Any], now: float) -> Outcome:
        try:
            check_url(url, allow_insecure=self.app[CONFIG_KEY].webhook_allow_insecure)
        except UrlRefusedError as exc:
            return Outcome(None, f"refused: {exc}")
        body = str(delivery["body"]).encode("utf-8")
        headers = signed_headers(
            delivery["msg_id"], body, now, hmac_secret=hmac_secret, ed25519_key=self.app[KEYS_KEY].webhook_signing_key
        )
        return await self._post(url, body, headers, now)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], now: float) -> Outcome:
        """One POST, redirects not followed; what it got, or why it got nothing."""
        timeout = self.app[CONFIG_KEY].webhook_timeout_seconds
        assert self.session is not None
        try:
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                status = resp.status
                retry_after = None
                if status in retry.THROTTLE_STATUSES:
                    retry_after = retry.parse_retry_after(resp.headers.get("Retry-After"), now)
        except TimeoutError:
            return Outcome(None, f"no response within {timeout:g} s")
        except aiohttp.InvalidURL:  # its message would repeat the URL, which may carry a query token
            return Outcome(None, "invalid URL")
        except aiohttp.ClientError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:300])
        return retry.response_outcome(status, retry_after)

    def _record(self, claim: Claim, endpoint_id: int, name: str, outcome: Outcome, now: float) -> None:
        """Store one attempt's result and the endpoint's status in one transaction (ending the claim)."""
        delivery = claim.delivery
        attempts = int(delivery["attempts"]) + 1
        if outcome.ok:
            claim.record(lambda db: queue.record_success(db, endpoint_id, delivery["id"], attempts, outcome, now))
            return
        failure = retry.after_failure(delivery, outcome, attempts, self.schedule, self.rng, now)
        claim.record(lambda db: queue.record_failure(db, endpoint_id, delivery, attempts, outcome, failure, now))
        _log_failure(endpoint_id, name, delivery, attempts, failure, now)

    async def stop(self) -> None:
        """Cancel the dispatcher and its drains (a claim not recorded is released: its delivery stays pending),
        then close the worker's connections and HTTP client."""
        # The dispatcher first, in the same step as its drains, so that no drain's end wakes it to start another.
        tasks = [*([self.task] if self.task is not None else []), *self.drains.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.claims is not None:
            self.claims.close()
        if self.session is not None:
            await self.session.close()


def _log_failure(
    endpoint_id: int, name: str, delivery: Mapping[str, Any], attempts: int, failure: Failure, now: float
) -> None:
    if failure.disable:
        log.warning("webhook %s (%s): receiver answered 410 Gone; endpoint disabled", endpoint_id, name)
    elif failure.dead:
        log.warning(
            "webhook %s (%s): delivery %s of event %s is dead after %d attempts: %s",
            endpoint_id, name, delivery["id"], delivery["event_id"], attempts, failure.error,
        )  # fmt: skip
    else:
        log.info(
            "webhook %s (%s): attempt %d of delivery %s failed (%s); next in %.1f s",
            endpoint_id, name, attempts, delivery["id"], failure.error, failure.next_at - now,
        )  # fmt: skip


WORKER_KEY = web.AppKey("delivery_worker", Worker)


async def worker_context(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: the worker's HTTP client (through the SSRF guard), its claims on the app's database (on
    PostgreSQL a pool of at most ``MAX_CONCURRENT_ENDPOINTS`` connections of its own) and its task."""
    worker = app[WORKER_KEY]
    config = app[CONFIG_KEY]
    worker.rng = app.get(RNG_KEY) or random.Random()  # noqa: S311 - jitter, not cryptography
    worker.wakeup = asyncio.Event()
    worker.slots = asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS)
    hold_seconds = config.webhook_timeout_seconds + CLAIM_GRACE_SECONDS
    worker.claims = for_database(app[DB_KEY].db, MAX_CONCURRENT_ENDPOINTS, hold_seconds)
    connector = aiohttp.TCPConnector(
        socket_factory=guarded_socket_factory(config.webhook_allow_insecure), limit=4 * MAX_CONCURRENT_ENDPOINTS
    )
    worker.session = aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT}
    )
    worker.task = asyncio.create_task(worker.run(), name="webhook-delivery")
    yield
    await worker.stop()


def wake(app: web.Application) -> None:
    """Tell the delivery worker to look at the queue now: new deliveries may be due (cheap; safe to call from request
    handlers). The one wake-up hook: whatever learns of new deliveries (this worker's own events, an operator's
    change, a notification from another worker) calls this."""
    worker = app.get(WORKER_KEY)
    if worker is not None:
        worker.wake()
