"""Keep the online roles fresh: every :data:`RESIGN_CHECK_SECONDS` the server re-signs snapshot and timestamp
when they near expiry (:meth:`fleet.ota.repository.metadata.Repository.refresh_online`), first at startup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from fleet.ota.repository.files import REPOSITORY_KEY
from fleet.ota.repository.metadata import utc
from fleet.web.appkeys import CLOCK_KEY
from fleet.web.tasks import periodic

log = logging.getLogger("wardsight.fleet.ota")

RESIGN_CHECK_SECONDS = 600.0  # how often the background task looks at the online roles' expiry


async def resign_step(app: web.Application) -> None:
    """One look at the online roles' expiry (on a worker thread: it hashes and signs)."""
    roles = await asyncio.to_thread(app[REPOSITORY_KEY].refresh_online, utc(app[CLOCK_KEY]()))
    if roles:
        log.info("re-signed %s", " and ".join(roles))


def resigner() -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context running :func:`resign_step` for the app's lifetime."""
    return periodic(
        resign_step,
        lambda app: RESIGN_CHECK_SECONDS,
        name="wardsight-ota-resigner",
        what="re-signing the OTA snapshot/timestamp",
        sleep_first=False,
    )
