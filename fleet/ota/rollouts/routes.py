"""The operators' rollout routes (JSON; every refusal is a 4xx).

``POST /api/v1/rollouts`` (operator) creates a rollout and offers its first group at once;
``GET /api/v1/rollouts`` and ``GET /api/v1/rollouts/{id}`` (viewer) show it with per-group counts;
``POST /api/v1/rollouts/{id}/pause|resume|abort|rollback`` (operator; optional ``{"reason": ...}``).
A change tells the rollout's devices at once (their long poll re-reads the offer waiting for them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from fleet.auth.operator import require
from fleet.jobs.wakeup import WAITERS_KEY
from fleet.ota.rollouts import store
from fleet.ota.rollouts.appkeys import SYSTEM_POLLS_KEY, TARGET_CHECK_KEY, UPDATE_POLLS_KEY
from fleet.ota.rollouts.bodies import CommandBody, NewRollout
from fleet.ota.rollouts.service import COMMANDS, Command, RolloutRefusedError, apply_command, create_rollout
from fleet.ota.rollouts.view import view
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError


def _refused(exc: RolloutRefusedError) -> RejectedError:
    return RejectedError(exc.status, str(exc))


def _wake(app: web.Application, shown: dict[str, Any]) -> None:
    """Tell the rollout's devices at once (their long poll re-reads the offer waiting for them)."""
    app[WAITERS_KEY].wake(d["device_id"] for d in shown.get("devices", ()))


def _explained(app: web.Application, row: dict[str, Any], now: float) -> dict[str, Any]:
    facts = store.device_facts(app[DB_KEY].db, app[WAITERS_KEY], app[UPDATE_POLLS_KEY], app[SYSTEM_POLLS_KEY])
    return view(row, facts=facts, now=now)


async def post_rollout(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = await read_json(request, NewRollout)
    db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
    try:
        shown = create_rollout(db, body, actor=who.actor, now=now, target_check=request.app[TARGET_CHECK_KEY])
    except RolloutRefusedError as exc:
        raise _refused(exc) from None
    _wake(request.app, shown)
    return web.json_response(_explained(request.app, store.load(db, shown["id"]) or {}, now), status=201)


async def list_rollouts(request: web.Request) -> web.Response:
    await require(request, "viewer")
    db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
    return web.json_response({"rollouts": [view(row, devices=False, now=now) for row in store.all_rows(db)]})


async def get_rollout(request: web.Request) -> web.Response:
    await require(request, "viewer")
    row = store.load(request.app[DB_KEY].db, request.match_info["id"])
    if row is None:
        raise RejectedError(404, "no such rollout")
    return web.json_response(_explained(request.app, row, request.app[CLOCK_KEY]()))


def _command_handler(command: Command) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        who = await require(request, "operator")
        body = await read_json(request, CommandBody) if request.can_read_body else CommandBody()
        db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
        try:
            shown = apply_command(db, request.match_info["id"], command, actor=who.actor, now=now, reason=body.reason)
        except RolloutRefusedError as exc:
            raise _refused(exc) from None
        _wake(request.app, shown)
        return web.json_response(shown)

    return handler


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/rollouts", post_rollout)
    app.router.add_get("/api/v1/rollouts", list_rollouts)
    app.router.add_get("/api/v1/rollouts/{id}", get_rollout)
    for command in COMMANDS:
        app.router.add_post(f"/api/v1/rollouts/{{id}}/{command}", _command_handler(command))
