"""The operator side of jobs (``fleet.auth.operator.require``; every change in the audit log):

- ``POST /api/v1/jobs`` (operator; ``reboot``, ``factory_reset`` and ``rotate_key`` need admin) makes a
  *batch*: one job per targeted active device. ``push_config`` carries a ``device.toml`` the server first
  validates with ``wardsight.device_config``, or with params ``{"merge": "zones"}`` the zone editor's
  ``LayoutEdit`` (JSON: zones and privacy regions to add, change and remove), which the device merges into its own
  file. Optional ``rate_per_minute`` and ``error_threshold`` pace and stop the batch (``fleet.jobs.logic``, where
  every decision lives).
- A ``push_config`` that removes, shrinks or moves a privacy region or changes the camera source on any targeted
  device (:mod:`fleet.jobs.privacy`; when the server does not know a device's regions or source, a whole file counts
  as such) needs the admin role, and is created ``awaiting_approval``: no device sees it until a different admin
  approves it (``POST /api/v1/jobs/{batch_id}/approve``, admin, not the person who asked) or it is rejected
  (``POST /api/v1/jobs/{batch_id}/reject``, admin) or cancelled. The audit entries say what it changes: region
  names and areas (share of the frame) before and after, the source's kind before and after. A stream URL whose
  host is a cloud metadata service, link-local, loopback or otherwise not routable is refused (400).
- ``GET /api/v1/jobs`` and ``GET /api/v1/jobs/{batch_id}`` (viewer), ``POST /api/v1/jobs/{batch_id}/cancel``
  (operator), ``GET /api/v1/jobs/{batch_id}/devices/{device_id}/output`` (operator: the diagnostics text).
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from fleet.auth.operator import has_role, require
from fleet.jobs import approvals, store
from fleet.jobs.bodies import PARAMS, CreateJobs, check_layout_edit
from fleet.jobs.privacy import classify_batch, person_of, stream_url_problem
from fleet.jobs.release import request_time, step
from fleet.jobs.views import batch_view
from fleet.scene.store import SCENES_KEY
from fleet.web.appkeys import DB_KEY, KEYS_KEY
from fleet.web.body import parse_json, read_body, validation_message
from fleet.web.errors import RejectedError
from fleet.web.query import query_number
from wardsight import wire
from wardsight.device_config import MERGE_PARAM, MERGE_ZONES, DeviceConfig, LayoutEdit, outline_problem
from wardsight.settings import describe_validation_error

log = logging.getLogger("wardsight.fleet.jobs")

MAX_CREATE_BYTES = 256 * 1024  # a push_config body (32 KiB of TOML) is larger than the app's default limit
ADMIN_KINDS: frozenset[str] = frozenset({"reboot", "factory_reset", "rotate_key"})
JOB_LIST_LIMIT = 500


def _validated_params(body: CreateJobs) -> dict[str, Any]:
    try:
        params = PARAMS[body.kind].model_validate(body.params)
    except ValidationError as exc:
        raise RejectedError(400, validation_message(exc, f"params for {body.kind}")) from None
    return params.model_dump(exclude_none=True)


@dataclass(frozen=True)
class Pushed:
    """A validated ``push_config``: its text and what it is (a whole file, or the zone editor's edit)."""

    text: str
    config: DeviceConfig | None = None
    edit: LayoutEdit | None = None


def _validated_config(body: CreateJobs, params: dict[str, Any]) -> Pushed | None:
    if body.kind != "push_config":
        if body.config is not None:
            raise RejectedError(400, "config is only for push_config")
        return None
    if body.config is None:
        raise RejectedError(400, "push_config needs config (the device.toml text)")
    if params.get(MERGE_PARAM) == MERGE_ZONES:  # the zone editor's edit, merged by the device into its own file
        try:
            edit = check_layout_edit(body.config)
        except ValueError as exc:
            raise RejectedError(400, str(exc)) from None
        return Pushed(body.config, edit=edit)
    try:
        data = tomllib.loads(body.config)
    except tomllib.TOMLDecodeError as exc:
        raise RejectedError(400, f"config is not valid TOML: {exc}") from None
    except RecursionError:
        raise RejectedError(400, "config is nested too deeply") from None
    try:
        pushed = DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise RejectedError(400, describe_validation_error(exc, "config")) from None
    problem = outline_problem(pushed)
    if problem is not None:
        raise RejectedError(400, f"config: {problem}")
    if pushed.source.url is not None:
        problem = stream_url_problem(pushed.source.url)
        if problem is not None:
            raise RejectedError(400, f"config: {problem}")
    return Pushed(body.config, config=pushed)


def _check_size(kind: wire.JobKind, params: dict[str, Any], config: str | None, key: wire.Ed25519PrivateKey) -> None:
    """The largest job of this batch (longest ids, an approval by the longest names) must fit the device's limit."""
    probe = wire.Job(
        job_id="job-" + "0" * 32,
        device_id="d" * 64,
        kind=kind,
        params=params,
        config=config,
        issued_at=1e11,
        expires_at=1e11,
        privacy_approval=wire.PrivacyApproval(approved_by=("a" * 128, "b" * 128), at=1e11),
    )
    if len(wire.sign_job(probe, key)) > wire.MAX_JOB_BYTES:
        raise RejectedError(400, f"config too large: the signed job would exceed {wire.MAX_JOB_BYTES} bytes")


async def create_jobs(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = parse_json(CreateJobs, await read_body(request, "application/json", MAX_CREATE_BYTES, beyond_app_limit=True))
    if body.kind in ADMIN_KINDS and not has_role(who.role, "admin"):
        raise RejectedError(403, f"{body.kind} jobs need the admin role; {who.actor} is {who.role}")
    params = _validated_params(body)
    pushed = _validated_config(body, params)
    config = pushed.text if pushed is not None else None
    app, now = request.app, request_time(request)
    _check_size(body.kind, params, config, app[KEYS_KEY].jobs)
    db = app[DB_KEY].db
    device_ids, skipped = store.select_devices(db, body.target)
    if not device_ids:
        raise RejectedError(400, "no active device matches the target")
    privacy = None
    if pushed is not None:
        privacy = classify_batch(db, app.get(SCENES_KEY), device_ids, pushed=pushed.config, edit=pushed.edit)
        if privacy.reducing and not has_role(who.role, "admin"):
            raise RejectedError(
                403,
                f"this configuration reduces privacy ({'; '.join(privacy.reasons)}): it needs the admin role and a"
                f" second admin's approval; {who.actor} is {who.role}",
            )
    needs_approval = privacy is not None and privacy.reducing
    batch_id = store.create_batch(
        db,
        kind=body.kind,
        device_ids=device_ids,
        created_by=who.actor,
        now=now,
        expires_in_s=body.expires_in_s,
        params=params,
        config=config,
        target=body.target.model_dump(exclude_none=True),
        rate_per_minute=body.rate_per_minute,
        error_threshold=body.error_threshold,
        privacy=privacy.audit() if privacy is not None else None,
        needs_approval=needs_approval,
    )
    step(app, now, [batch_id])
    answer: dict[str, Any] = {
        "batch_id": batch_id,
        "devices": len(device_ids),
        "skipped": skipped,
        "status": "awaiting_approval" if needs_approval else "running",
    }
    if privacy is not None:
        answer["privacy"] = {"reducing": privacy.reducing, "reasons": list(privacy.reasons)}
    if needs_approval:
        log.warning(
            "job batch %s (%s) for %d devices by %s awaits a second admin's approval: it reduces privacy",
            batch_id, body.kind, len(device_ids), who.actor,
        )  # fmt: skip
    else:
        log.info("job batch %s (%s) for %d devices by %s", batch_id, body.kind, len(device_ids), who.actor)
    return web.json_response(answer, status=201)


async def list_batches(request: web.Request) -> web.Response:
    await require(request, "viewer")
    limit = query_number(request, "limit", int, low=1, high=JOB_LIST_LIMIT)
    limit = 100 if limit is None else limit
    app, now = request.app, request_time(request)
    step(app, now)
    db = app[DB_KEY].db
    views = [batch_view(db, batch_id, now, with_devices=False) for batch_id in store.recent_batch_ids(db, limit)]
    return web.json_response({"batches": views, "now": now})


def _batch_or_404(request: web.Request) -> str:
    batch_id = request.match_info["batch_id"]
    if store.get_batch(request.app[DB_KEY].db.conn, batch_id) is None:
        raise RejectedError(404, "no such job batch")
    return batch_id


async def get_batch(request: web.Request) -> web.Response:
    await require(request, "viewer")
    batch_id = _batch_or_404(request)
    app, now = request.app, request_time(request)
    step(app, now, [batch_id])
    return web.json_response(batch_view(app[DB_KEY].db, batch_id, now, with_devices=True))


async def cancel_batch(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    batch_id = _batch_or_404(request)
    app, now = request.app, request_time(request)
    step(app, now, [batch_id])
    db = app[DB_KEY].db
    ended = store.cancel(db, batch_id, actor=who.actor, now=now)
    if ended is not None:
        raise RejectedError(409, f"batch already {ended}")
    log.warning("job batch %s cancelled by %s", batch_id, who.actor)
    return web.json_response(batch_view(db, batch_id, now, with_devices=True))


async def approve_batch(request: web.Request) -> web.Response:
    """A second admin approves a privacy-reducing batch: its jobs are released, each carrying the approval."""
    who = await require(request, "admin")
    batch_id = _batch_or_404(request)
    app, now = request.app, request_time(request)
    step(app, now, [batch_id])  # expire what is due first
    db = app[DB_KEY].db
    problem = approvals.approve(db, batch_id, actor=who.actor, person=person_of(db.conn, who.actor), now=now)
    if problem is not None:
        raise RejectedError(*problem)
    step(app, now, [batch_id])
    log.warning("job batch %s approved by %s", batch_id, who.actor)
    return web.json_response(batch_view(db, batch_id, now, with_devices=True))


async def reject_batch(request: web.Request) -> web.Response:
    """An admin rejects a batch awaiting approval: it ends cancelled (``rejected``); no device ever saw it."""
    who = await require(request, "admin")
    batch_id = _batch_or_404(request)
    app, now = request.app, request_time(request)
    step(app, now, [batch_id])
    db = app[DB_KEY].db
    problem = approvals.reject(db, batch_id, actor=who.actor, now=now)
    if problem is not None:
        raise RejectedError(*problem)
    log.warning("job batch %s rejected by %s", batch_id, who.actor)
    return web.json_response(batch_view(db, batch_id, now, with_devices=True))


async def get_output(request: web.Request) -> web.Response:
    await require(request, "operator")
    batch_id = _batch_or_404(request)
    device_id = request.match_info["device_id"]
    row = store.job_output(request.app[DB_KEY].db.conn, batch_id, device_id)
    if row is None:
        raise RejectedError(404, "that device is not in this batch")
    if row["kind"] != "collect_diagnostics":
        raise RejectedError(404, "only collect_diagnostics jobs have output")
    return web.json_response(
        {
            "batch_id": batch_id,
            "device_id": device_id,
            "job_id": row["id"],
            "state": row["state"],
            "output": row["output"],
        }
    )
