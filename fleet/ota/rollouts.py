"""Staged model rollouts on the server: storage, the operators' and devices' routes, and the ticker.

The decisions are made by :mod:`fleet.ota.rollout_logic` (pure); this module stores its spec and state
as JSON, feeds it the device reports, and runs :func:`tick_all` every :data:`TICK_SECONDS` (tests call
it with their own clock).

Storage:

- ``rollouts``: one row per rollout: the spec and state (JSON), the validated request, who created it
  and when, the status (a copy of the state's, for listing), ``settled`` (1 when only an operator or a
  report can change it) and ``last_report_id`` (the last report its state includes).
- ``rollout_devices``: which devices each rollout targets, for the device's poll.
- ``rollout_reports``: every accepted device report, append-only (triggers refuse UPDATE and DELETE).

Routes (JSON; every refusal is a 4xx):

- ``POST /api/v1/rollouts`` (operator) creates a rollout and offers its first group at once;
  ``GET /api/v1/rollouts`` and ``GET /api/v1/rollouts/{id}`` (viewer) show it with per-group counts;
  ``POST /api/v1/rollouts/{id}/pause|resume|abort|rollback`` (operator; optional ``{"reason": ...}``).
  Creations and commands go into the audit log; so do status changes the ticker makes (actor ``system``).
- ``GET /api/v1/device/update``: the device's current :class:`wardsight.wire.UpdateOffer` (the oldest
  rollout with an open offer for it first), or 204 when there is nothing to do.
  ``POST /api/v1/device/update``: a :class:`wardsight.wire.UpdateReport`, accepted (202) only for what the
  named rollout offers this device. Both are authenticated device requests (``fleet.device_api``).

The model version must exist in the model library when one is wired in: ``app[TARGET_CHECK_KEY]`` is a
function ``(db, target_path) -> bool | None`` (None: no library to ask; the rollout is then created
with ``target_checked: false``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import sqlite_utils
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet import audit, device_api
from fleet.auth.operator import require
from fleet.ota import rollout_logic as logic
from fleet.ota.explain import DeviceFacts, explain
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from fleet.wakeup import UPDATE_HINT_KEY, WAITERS_KEY, DeviceWaiters, waiters
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.tasks import running
from wardsight import modelpkg, wire

log = logging.getLogger("wardsight.fleet.rollouts")

TICK_SECONDS = 5.0
MAX_REPORT_BYTES = 4096
DEVICE_UPDATE_PATH = wire.UPDATE_PATH

TargetCheck = Callable[[sqlite_utils.Database, str], "bool | None"]
TARGET_CHECK_KEY: web.AppKey[TargetCheck] = web.AppKey("rollout_target_check")
UPDATE_POLLS_KEY: web.AppKey[dict[str, float]] = web.AppKey("update_polls")  # device -> last offer poll


def no_library(db: sqlite_utils.Database, target: str) -> bool | None:
    """The default target check until a model library is wired in: it cannot tell (None)."""
    return None


# ---- request bodies -------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]  # as in the model package manifest
ModelVersion = Annotated[str, Field(pattern=modelpkg.VERSION)]
Ident = Annotated[str, Field(pattern=wire.IDENTIFIER_PATTERN)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
HourMinute = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class SelectorBody(_Body):
    site: Ident | None = None
    ward: Ident | None = None
    room: Ident | None = None
    tags: Annotated[list[Ident], Field(max_length=16)] = Field(default_factory=list)
    percent: Annotated[float, Field(gt=0, le=100)] | None = None


class GroupBody(_Body):
    count: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    percent: Annotated[float, Field(gt=0, le=100)] | None = None

    @model_validator(mode="after")
    def _one(self) -> GroupBody:
        if (self.count is None) == (self.percent is None):
            raise ValueError("give a group either count or percent")
        return self


class ErrorThresholdBody(_Body):
    count: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    fraction: Annotated[float, Field(ge=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> ErrorThresholdBody:
        if (self.count is None) == (self.fraction is None):
            raise ValueError("give the error threshold either count or fraction")
        return self


class WindowBody(_Body):
    start: HourMinute
    end: HourMinute
    utc_offset_minutes: Annotated[int, Field(ge=-840, le=840)] = 0

    @model_validator(mode="after")
    def _not_empty(self) -> WindowBody:
        if self.start == self.end:
            raise ValueError("the window must not start and end at the same time")
        return self

    def window(self) -> logic.Window:
        def minute(text: str) -> int:
            hours, minutes = text.split(":")
            return int(hours) * 60 + int(minutes)

        return logic.Window(minute(self.start), minute(self.end), self.utc_offset_minutes)


class NewRollout(_Body):
    model: ModelName
    version: ModelVersion
    selector: SelectorBody
    groups: Annotated[list[GroupBody], Field(min_length=1, max_length=32)]
    success_threshold: Annotated[float, Field(gt=0, le=1)]
    error_threshold: ErrorThresholdBody
    in_progress_timeout_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)]
    window: WindowBody | None = None
    previous_version: ModelVersion | None = None  # for rollback, where a device's own is not known

    @model_validator(mode="after")
    def _versions(self) -> NewRollout:
        if self.previous_version is not None and self.previous_version == self.version:
            raise ValueError("previous_version must differ from version")
        return self


class CommandBody(_Body):
    reason: Reason | None = None


# ---- storage helpers ------------------------------------------------------------------------------------


def _load(db: sqlite_utils.Database, rollout_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM rollouts WHERE id = ?", [rollout_id]))
    return rows[0] if rows else None


def _decode(row: dict[str, Any]) -> tuple[logic.RolloutSpec, logic.RolloutState]:
    return logic.spec_from_dict(json.loads(row["spec"])), logic.state_from_dict(json.loads(row["state"]))


def _save(
    db: sqlite_utils.Database,
    rollout_id: str,
    spec: logic.RolloutSpec,
    state: logic.RolloutState,
    now: float,
    last_report_id: int | None = None,
) -> None:
    db.conn.execute(
        "UPDATE rollouts SET status = ?, settled = ?, state = ?, updated_at = ?,"
        " last_report_id = COALESCE(?, last_report_id) WHERE id = ?",
        [
            state.status,
            int(logic.is_settled(spec, state)),
            json.dumps(logic.state_to_dict(state), sort_keys=True),
            now,
            last_report_id,
            rollout_id,
        ],
    )


def _device_infos(db: sqlite_utils.Database) -> list[logic.DeviceInfo]:
    out = []
    for row in db.query("SELECT id, site, ward, room, status, tags FROM devices"):
        try:
            tags = json.loads(row["tags"]) if row["tags"] else []
        except ValueError:
            tags = []
        out.append(
            logic.DeviceInfo(
                id=row["id"],
                room=row["room"],
                site=row["site"],
                ward=row["ward"],
                status=row["status"] or "active",
                tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
            )
        )
    return out


def _running_versions(db: sqlite_utils.Database, devices: list[str], model: str) -> dict[str, str]:
    """The version of ``model`` each device's latest heartbeat says it runs (where it says so)."""
    out: dict[str, str] = {}
    wanted = set(devices)
    for row in db.query("SELECT device_id, models FROM health_latest"):
        if row["device_id"] not in wanted:
            continue
        try:
            version = json.loads(row["models"]).get(wire.data_key(model))
        except (ValueError, AttributeError):
            continue
        if isinstance(version, str) and re.fullmatch(modelpkg.VERSION, version):
            out[row["device_id"]] = version
    return out


def device_facts(db: sqlite_utils.Database, waiting: DeviceWaiters | None = None,
                 polls: dict[str, float] | None = None) -> dict[str, DeviceFacts]:  # fmt: skip
    """What each device's latest heartbeat, presence and polls say, for :func:`fleet.ota.explain.explain`."""
    out: dict[str, DeviceFacts] = {}
    rows = db.conn.execute(
        "SELECT d.id, h.updates, h.accelerator, p.offline_since FROM devices d"
        " LEFT JOIN health_latest h ON h.device_id = d.id LEFT JOIN presence p ON p.device_id = d.id"
    )
    for device_id, updates, accelerator, offline_since in rows:
        out[device_id] = DeviceFacts(
            updates=updates,
            accelerator=accelerator,
            offline_since=offline_since,
            connected=waiting.connected(device_id) if waiting is not None else False,
            last_update_poll=(polls or {}).get(device_id),
        )
    return out


def _view(
    row: dict[str, Any],
    *,
    devices: bool = True,
    facts: dict[str, DeviceFacts] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The rollout as the API shows it, with each device and why it is where it is when ``devices``."""
    spec, state = _decode(row)
    request = json.loads(row["request"])
    groups = []
    for g, members in enumerate(spec.groups):
        counts = logic.group_counts(spec, state, g)
        groups.append(
            {
                "group": g + 1,
                "size": len(members),
                "needed": spec.needed(g),
                "started": g < state.groups_started,
                "succeeded": g < state.groups_started and logic.group_succeeded(spec, state, g),
                "counts": {k: v for k, v in counts.items() if v},
            }
        )
    view: dict[str, Any] = {
        "id": row["id"],
        "model": spec.model,
        "version": spec.version,
        "target": spec.target,
        "target_checked": bool(row["target_checked"]),
        "status": state.status,
        "status_since": state.since,
        "reason": state.reason,
        "current_group": None if state.current_group is None else state.current_group + 1,
        "devices_total": spec.total,
        "failures": logic.failures(spec, state),
        "selector": request["selector"],
        "success_threshold": spec.success_threshold,
        "error_threshold": request["error_threshold"],
        "in_progress_timeout_s": spec.in_progress_timeout_s,
        "window": request["window"],
        "previous_version": spec.previous_version,
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "groups": groups,
    }
    if devices:
        known, at = facts or {}, row["updated_at"] if now is None else now
        view["devices"] = [
            {
                "device_id": device,
                "explain": explain(spec, device, dev, known.get(device, DeviceFacts()), at),
                "done": dev.done,
                "total": dev.total,
                "group": spec.group_of[device] + 1,
                "status": dev.status,
                "since": dev.since,
                "reason": dev.reason,
                "progress": dev.progress,
                "reverting": dev.reverting,
                "version": spec.revert_version(device) if dev.reverting else spec.version,
                "last_report_at": dev.last_report_at,
                "deadline": logic.deadline(spec, dev),
            }
            for device, dev in state.devices.items()
        ]
    return view


_STATUS_ACTIONS = {
    "paused": "rollout.pause",
    "stopped": "rollout.stop",
    "completed": "rollout.complete",
    "rolled_back": "rollout.rolled_back",
}


def _audit_status_changes(
    db: sqlite_utils.Database, rollout_id: str, decisions: list[logic.Decision], actor: str, now: float
) -> None:
    """Record the rollout's own status changes (not per-device offers, which the state and reports hold)."""
    for d in decisions:
        action = _STATUS_ACTIONS.get(d.kind)
        if action is not None:
            audit.record(db, actor=actor, action=action, target=f"rollout:{rollout_id}", details={"reason": d.reason},
                         now=now)  # fmt: skip
        if d.kind == "timed_out":
            log.warning("rollout %s: device %s timed out (%s)", rollout_id, d.device_id, d.reason)


# ---- operations (used by the routes; callable directly, e.g. from tests or a CLI) -----------------------


class RolloutRefusedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_rollout(
    db: sqlite_utils.Database,
    body: NewRollout,
    *,
    actor: str,
    now: float,
    target_check: TargetCheck = no_library,
) -> dict[str, Any]:
    """Select the devices, cut them into groups, store the rollout and offer its first group; return its view."""
    target = wire.target_path(body.model, body.version)
    known = target_check(db, target)
    if known is False:
        raise RolloutRefusedError(400, f"the model library has no {body.model} {body.version} ({target})")
    rollout_id = "ro-" + secrets.token_hex(6)
    sel = body.selector
    selector = logic.Selector(sel.site, sel.ward, sel.room, tuple(sel.tags), sel.percent)
    with transaction(db.conn):
        selected = logic.select_devices(_device_infos(db), selector, rollout_id)
        if not selected:
            raise RolloutRefusedError(400, "no active device matches the selector")
        try:
            groups = logic.split_groups(selected, [logic.GroupSize(g.count, g.percent) for g in body.groups])
            threshold = body.error_threshold
            spec = logic.RolloutSpec(
                rollout_id=rollout_id,
                model=body.model,
                version=body.version,
                groups=groups,
                success_threshold=body.success_threshold,
                error_threshold=logic.ErrorThreshold(threshold.count, threshold.fraction),
                in_progress_timeout_s=float(body.in_progress_timeout_s),
                previous_version=body.previous_version,
                from_versions=_running_versions(db, selected, body.model),
                window=body.window.window() if body.window is not None else None,
            )
        except logic.RolloutError as exc:
            raise RolloutRefusedError(400, str(exc)) from None
        state, decisions = logic.tick(spec, logic.new_state(spec, now), [], now)
        db.conn.execute(
            "INSERT INTO rollouts (id, model, version, status, settled, spec, state, request, target_checked,"
            " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
            [
                rollout_id,
                spec.model,
                spec.version,
                state.status,
                json.dumps(logic.spec_to_dict(spec), sort_keys=True),
                json.dumps(logic.state_to_dict(state), sort_keys=True),
                body.model_dump_json(),
                int(known is True),
                actor,
                now,
                now,
            ],
        )
        db.conn.executemany(
            "INSERT INTO rollout_devices (rollout_id, device_id) VALUES (?, ?)", [(rollout_id, d) for d in selected]
        )
        _save(db, rollout_id, spec, state, now)
        audit.record(
            db,
            actor=actor,
            action="rollout.create",
            target=f"rollout:{rollout_id}",
            details={
                "model": spec.model,
                "version": spec.version,
                "devices": spec.total,
                "groups": [len(g) for g in spec.groups],
                "target_checked": known is True,
            },
            now=now,
        )
        _audit_status_changes(db, rollout_id, decisions, "system", now)
        row = _load(db, rollout_id)
    assert row is not None
    log.info("rollout %s by %s: %s %s to %d devices in %d groups", rollout_id, actor, spec.model, spec.version,
             spec.total, len(spec.groups))  # fmt: skip
    return _view(row)


Command = Literal["pause", "resume", "abort", "rollback"]
COMMANDS: tuple[Command, ...] = ("pause", "resume", "abort", "rollback")


def apply_command(
    db: sqlite_utils.Database, rollout_id: str, command: Command, *, actor: str, now: float, reason: str | None = None
) -> dict[str, Any]:
    """Pause, resume, abort or roll back a rollout (audited); RolloutRefusedError 404 / 409."""
    with transaction(db.conn):
        row = _load(db, rollout_id)
        if row is None:
            raise RolloutRefusedError(404, f"no rollout '{rollout_id}'")
        spec, state = _decode(row)
        try:
            new, decisions = logic.COMMANDS[command](spec, state, now, reason)
        except logic.CommandError as exc:
            raise RolloutRefusedError(409, str(exc)) from None
        _save(db, rollout_id, spec, new, now)
        audit.record(
            db,
            actor=actor,
            action=f"rollout.{command}",
            target=f"rollout:{rollout_id}",
            details={
                "reason": reason,
                "from": state.status,
                "to": new.status,
                "offers_withdrawn": sum(d.kind == "cancel" for d in decisions),
                "rollbacks_offered": sum(d.kind == "offer_previous" for d in decisions),
            },
            now=now,
        )
        row = _load(db, rollout_id)
    assert row is not None
    log.warning("rollout %s: %s by %s (%s): %s -> %s", rollout_id, command, actor, reason or "no reason given",
                state.status, new.status)  # fmt: skip
    return _view(row)


def tick_all(target: web.Application | FleetDB, now: float) -> dict[str, list[logic.Decision]]:
    """Tick every rollout that is not settled or has new reports, as of ``now``; return each one's decisions."""
    db = (target[DB_KEY] if isinstance(target, web.Application) else target).db
    ids = [
        r["id"]
        for r in db.query(
            "SELECT id FROM rollouts r WHERE settled = 0 OR EXISTS (SELECT 1 FROM rollout_reports p"
            " WHERE p.rollout_id = r.id AND p.id > r.last_report_id) ORDER BY created_at, id"
        )
    ]
    out: dict[str, list[logic.Decision]] = {}
    for rollout_id in ids:
        with transaction(db.conn):
            row = _load(db, rollout_id)
            assert row is not None
            spec, state = _decode(row)
            rows = list(
                db.query(
                    "SELECT * FROM rollout_reports WHERE rollout_id = ? AND id > ? ORDER BY id",
                    [rollout_id, row["last_report_id"]],
                )
            )
            reports = [
                logic.Report(
                    r["device_id"],
                    r["version"],
                    r["state"],
                    r["received_at"],
                    r["reason"],
                    r["progress"],
                    r["done"],
                    r["total"],
                )
                for r in rows
            ]
            new, decisions = logic.tick(spec, state, reports, now)
            if new != state or rows:
                _save(db, rollout_id, spec, new, now, rows[-1]["id"] if rows else None)
            _audit_status_changes(db, rollout_id, decisions, "system", now)
        out[rollout_id] = decisions
    return out


def offer_for_device(db: sqlite_utils.Database, device_id: str, now: float) -> wire.UpdateOffer | None:
    """The device's offer from the oldest rollout that has an open one for it."""
    rows = db.query(
        "SELECT r.* FROM rollouts r JOIN rollout_devices d ON d.rollout_id = r.id"
        " WHERE d.device_id = ? AND r.settled = 0 ORDER BY r.created_at, r.id",
        [device_id],
    )
    for row in rows:
        spec, state = _decode(row)
        offer = logic.offer_for(spec, state, device_id, now)
        if offer is not None:
            return offer
    return None


def record_report(db: sqlite_utils.Database, device_id: str, report: wire.UpdateReport, now: float) -> None:
    """Store a device's report if the rollout it names offers this device what it reports on."""
    row = _load(db, report.rollout_id)
    member = row is not None and bool(
        db.execute(
            "SELECT 1 FROM rollout_devices WHERE rollout_id = ? AND device_id = ?", [report.rollout_id, device_id]
        ).fetchone()
    )
    if row is None or not member:
        raise RolloutRefusedError(404, f"rollout '{report.rollout_id}' offers this device nothing")
    spec, state = _decode(row)
    why = logic.refuse_report(spec, state, device_id, report.model, report.version)
    if why is not None:
        raise RolloutRefusedError(409, why)
    db.conn.execute(
        "INSERT INTO rollout_reports (rollout_id, device_id, model, version, state, reason, progress, received_at,"
        " done, total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report.rollout_id,
            device_id,
            report.model,
            report.version,
            report.state,
            report.reason,
            report.progress,
            now,
            report.done,
            report.total,
        ],
    )


# ---- routes ---------------------------------------------------------------------------------------------


def _refused(exc: RolloutRefusedError) -> RejectedError:
    return RejectedError(exc.status, str(exc))


async def post_rollout(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = await read_json(request, NewRollout)
    db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
    try:
        view = create_rollout(db, body, actor=who.actor, now=now, target_check=request.app[TARGET_CHECK_KEY])
    except RolloutRefusedError as exc:
        raise _refused(exc) from None
    _wake(request.app, view)
    return web.json_response(_explained(request.app, _load(db, view["id"]) or {}, now), status=201)


def _wake(app: web.Application, view: dict[str, Any]) -> None:
    """Tell the rollout's devices at once (their long poll re-reads the offer waiting for them)."""
    app[WAITERS_KEY].wake(d["device_id"] for d in view.get("devices", ()))


def _explained(app: web.Application, row: dict[str, Any], now: float) -> dict[str, Any]:
    facts = device_facts(app[DB_KEY].db, app[WAITERS_KEY], app[UPDATE_POLLS_KEY])
    return _view(row, facts=facts, now=now)


async def list_rollouts(request: web.Request) -> web.Response:
    await require(request, "viewer")
    db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
    rows = db.query("SELECT * FROM rollouts ORDER BY created_at DESC, id")
    return web.json_response({"rollouts": [_view(row, devices=False, now=now) for row in rows]})


async def get_rollout(request: web.Request) -> web.Response:
    await require(request, "viewer")
    row = _load(request.app[DB_KEY].db, request.match_info["id"])
    if row is None:
        raise RejectedError(404, "no such rollout")
    return web.json_response(_explained(request.app, row, request.app[CLOCK_KEY]()))


def _command_handler(command: Command) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        who = await require(request, "operator")
        body = await read_json(request, CommandBody) if request.can_read_body else CommandBody()
        db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
        try:
            view = apply_command(db, request.match_info["id"], command, actor=who.actor, now=now, reason=body.reason)
        except RolloutRefusedError as exc:
            raise _refused(exc) from None
        _wake(request.app, view)
        return web.json_response(view)

    return handler


async def device_poll(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if body:
        raise RejectedError(400, "an update poll has an empty body")
    verdict = await device_api.authenticate(request, body)
    now = request.app[CLOCK_KEY]()
    request.app[UPDATE_POLLS_KEY][verdict.device_id] = now
    offer = offer_for_device(request.app[DB_KEY].db, verdict.device_id, now)
    if offer is None:
        return web.Response(status=204)
    return web.json_response(offer.model_dump())


async def device_report(request: web.Request) -> web.Response:
    body = await device_api.read_body(request, "application/json", MAX_REPORT_BYTES)
    verdict = await device_api.authenticate(request, body)
    report = device_api.parse_body(wire.UpdateReport, body, "report")
    now = request.app[CLOCK_KEY]()
    try:
        record_report(request.app[DB_KEY].db, verdict.device_id, report, now)
    except RolloutRefusedError as exc:
        raise _refused(exc) from None
    log.info("rollout %s: %s reports %s %s %s", report.rollout_id, verdict.device_id, report.model, report.version,
             report.state)  # fmt: skip
    return web.json_response({"accepted": True, "server_time": now}, status=202)


# ---- app wiring -----------------------------------------------------------------------------------------


_WAKING = frozenset({"offer", "offer_previous", "cancel"})


async def _run_ticker(app: web.Application) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        try:
            decided = tick_all(app, app[CLOCK_KEY]())
        except Exception:  # a locked database or a bad row must not end the ticker
            log.exception("rollout tick failed")
            continue
        app[WAITERS_KEY].wake(d.device_id for ds in decided.values() for d in ds if d.kind in _WAKING and d.device_id)


def update_hint(db: sqlite_utils.Database, device_id: str, now: float) -> str | None:
    """The key of the offer waiting for the device (for its jobs long poll), None when there is none."""
    return wire.update_hint(offer_for_device(db, device_id, now))


async def _ticker_ctx(app: web.Application) -> AsyncIterator[None]:
    async with running(_run_ticker(app), "wardsight-rollout-ticker"):
        yield


def setup(app: web.Application) -> None:
    """Add the rollout routes, the device update routes and the ticker to ``app``."""
    if TARGET_CHECK_KEY not in app:  # the model library (fleet.ota.repository) may have set its own
        app[TARGET_CHECK_KEY] = no_library
    waiters(app)
    app[UPDATE_HINT_KEY] = update_hint
    app[UPDATE_POLLS_KEY] = {}
    app.cleanup_ctx.append(_ticker_ctx)
    app.router.add_post("/api/v1/rollouts", post_rollout)
    app.router.add_get("/api/v1/rollouts", list_rollouts)
    app.router.add_get("/api/v1/rollouts/{id}", get_rollout)
    for command in COMMANDS:
        app.router.add_post(f"/api/v1/rollouts/{{id}}/{command}", _command_handler(command))
    app.router.add_get(DEVICE_UPDATE_PATH, device_poll)
    app.router.add_post(DEVICE_UPDATE_PATH, device_report)
