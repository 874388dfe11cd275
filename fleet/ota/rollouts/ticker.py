"""The rollouts' background tick: every :data:`TICK_SECONDS` it moves each rollout on
(:func:`fleet.ota.rollouts.service.tick_all`) and wakes the devices a tick offered something or withdrew it from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from fleet.jobs.wakeup import WAITERS_KEY
from fleet.ota.rollouts.service import tick_all
from fleet.web.appkeys import CLOCK_KEY
from fleet.web.tasks import periodic

TICK_SECONDS = 5.0
_WAKING = frozenset({"offer", "offer_previous", "cancel"})


def tick_step(app: web.Application) -> None:
    decided = tick_all(app, app[CLOCK_KEY]())
    app[WAITERS_KEY].wake(d.device_id for ds in decided.values() for d in ds if d.kind in _WAKING and d.device_id)


def ticker() -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context running :func:`tick_step` for the app's lifetime (a failed tick is logged)."""
    return periodic(tick_step, lambda app: TICK_SECONDS, name="wardsight-rollout-ticker", what="rollout tick")
