"""Staged model rollouts on the server.

Pure decisions (no I/O, no clock reads): ``spec`` (what a rollout is), ``state`` (where it and its devices
are), ``selection`` (which devices, in which groups), ``decide`` (the tick, what a device is offered, which
reports it may send), ``commands`` (pause, resume, abort, rollback), ``codec`` (spec and state as JSON) and
``explain`` (why a device is where it is, in words).

The server side: ``store`` (the rollouts' tables), ``service`` (each operation one transaction with its audit
entries), ``view`` (a rollout as the API shows it), ``offers`` (what a device is offered now, and the hint
its jobs long poll carries), ``routes`` (operators), ``device_routes`` (``GET``/``POST``
``/api/v1/device/update``) and ``ticker`` (every ``TICK_SECONDS``; tests call ``service.tick_all`` with
their own clock).

The model version must exist in the model library when one is wired in: ``app[TARGET_CHECK_KEY]``
(``appkeys``) is a function ``(db, target_path) -> bool | None`` (None: no library to ask; the rollout is
then created with ``target_checked: false``).
"""

from aiohttp import web

from fleet.jobs.wakeup import UPDATE_HINT_KEY, waiters
from fleet.ota.rollouts import device_routes, offers, routes, ticker
from fleet.ota.rollouts.appkeys import SYSTEM_POLLS_KEY, TARGET_CHECK_KEY, UPDATE_POLLS_KEY, no_library


def setup(app: web.Application) -> None:
    """Add the rollout routes, the device update routes and the ticker to ``app``."""
    if TARGET_CHECK_KEY not in app:  # the model library (fleet.ota.setup) may have set its own
        app[TARGET_CHECK_KEY] = no_library
    waiters(app)
    app[UPDATE_HINT_KEY] = offers.update_hint
    app[UPDATE_POLLS_KEY] = {}
    app[SYSTEM_POLLS_KEY] = {}
    app.cleanup_ctx.append(ticker.ticker())
    routes.add_routes(app)
    device_routes.add_routes(app)
