"""The devices' update routes (authenticated device requests, ``fleet.auth.device_requests``).

``GET /api/v1/device/update``: the device's current :class:`wardsight.wire.UpdateOffer` (:mod:`.offers`: one at a
time; system updates only to a poll with ``?system=1``), or 204 when there is nothing to do. A model offer is sent
without the fields an older agent does not know (``kind``, ``rollback``). ``POST /api/v1/device/update``: a
:class:`wardsight.wire.UpdateReport`, accepted (202) only for what the named rollout offers this device.
"""

from __future__ import annotations

import logging

from aiohttp import web

from fleet.auth.device_requests import authenticate
from fleet.ota.rollouts.appkeys import SYSTEM_POLLS_KEY, UPDATE_POLLS_KEY
from fleet.ota.rollouts.offers import offer_for_device
from fleet.ota.rollouts.service import RolloutRefusedError, record_report
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.body import parse_json, read_body
from fleet.web.errors import RejectedError
from wardsight import wire

log = logging.getLogger("wardsight.fleet.rollouts")

MAX_REPORT_BYTES = 4096
_SYSTEM_KEY, _, _SYSTEM_VALUE = wire.SYSTEM_POLL_QUERY.partition("=")


async def device_poll(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, None, request.app[CONFIG_KEY].max_body_bytes)
    if body:
        raise RejectedError(400, "an update poll has an empty body")
    verdict = await authenticate(request, body)
    now = request.app[CLOCK_KEY]()
    system = request.query.get(_SYSTEM_KEY) == _SYSTEM_VALUE
    request.app[UPDATE_POLLS_KEY][verdict.device_id] = now
    request.app[SYSTEM_POLLS_KEY][verdict.device_id] = system
    offer = offer_for_device(request.app[DB_KEY].db, verdict.device_id, now, system=system)
    if offer is None:
        return web.Response(status=204)
    return web.json_response(offer.model_dump(exclude={"kind", "rollback"} if offer.kind == "model" else None))


async def device_report(request: web.Request) -> web.Response:
    body = await read_body(request, "application/json", MAX_REPORT_BYTES)
    verdict = await authenticate(request, body)
    report = parse_json(wire.UpdateReport, body, "report")
    now = request.app[CLOCK_KEY]()
    try:
        record_report(request.app[DB_KEY].db, verdict.device_id, report, now)
    except RolloutRefusedError as exc:
        raise RejectedError(exc.status, str(exc)) from None
    log.info("rollout %s: %s reports %s %s %s%s", report.rollout_id, verdict.device_id, report.model, report.version,
             report.state, f" ({report.reason})" if report.reason else "")  # fmt: skip
    return web.json_response({"accepted": True, "server_time": now}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get(wire.UPDATE_PATH, device_poll)
    app.router.add_post(wire.UPDATE_PATH, device_report)
