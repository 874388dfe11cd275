"""Rollout operations, each one transaction with its audit entries: create, operator commands, the tick, and
a device's report. The routes call them; so may tests or a CLI, with their own clock.

The decisions are made by the pure modules (:mod:`fleet.ota.rollouts.decide`, ``commands``, ``selection``);
these feed them what is stored and store what they decide (:mod:`fleet.ota.rollouts.store`).
Creations and commands go into the audit log; so do status changes the tick makes (actor ``system``).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Literal

from aiohttp import web

from fleet.audit import log as audit
from fleet.ota.library.bundles import find_bundle
from fleet.ota.library.store import find as library_entry
from fleet.ota.library.store import heartbeat_key, running_versions
from fleet.ota.rollouts import commands, refusals, store
from fleet.ota.rollouts.appkeys import TargetCheck, no_library
from fleet.ota.rollouts.bodies import NewRollout
from fleet.ota.rollouts.commands import CommandError
from fleet.ota.rollouts.decide import refuse_report, tick
from fleet.ota.rollouts.selection import GroupSize, Selector, select_devices, split_groups
from fleet.ota.rollouts.spec import ErrorThreshold, RolloutError, RolloutSpec
from fleet.ota.rollouts.state import Decision, new_state
from fleet.ota.rollouts.view import view
from fleet.store.connection import Database
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from fleet.web.appkeys import DB_KEY
from wardsight import wire

log = logging.getLogger("wardsight.fleet.rollouts")

Command = Literal["pause", "resume", "abort", "rollback"]
COMMANDS: tuple[Command, ...] = ("pause", "resume", "abort", "rollback")
_STATUS_ACTIONS = {
    "paused": "rollout.pause",
    "stopped": "rollout.stop",
    "completed": "rollout.complete",
    "rolled_back": "rollout.rolled_back",
}


class RolloutRefusedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _audit_status_changes(db: Database, rollout_id: str, decisions: list[Decision], actor: str, now: float) -> None:
    """Record the rollout's own status changes (not per-device offers, which the state and reports hold)."""
    for d in decisions:
        action = _STATUS_ACTIONS.get(d.kind)
        if action is not None:
            audit.record(db, actor=actor, action=action, target=f"rollout:{rollout_id}", details={"reason": d.reason},
                         now=now)  # fmt: skip
        if d.kind == "timed_out":
            log.warning("rollout %s: device %s timed out (%s)", rollout_id, d.device_id, d.reason)


def _spec(body: NewRollout, rollout_id: str, selected: list[str], from_versions: dict[str, str]) -> RolloutSpec:
    """The rollout's spec: the selection cut into groups, the thresholds, the window (400 when they do not fit)."""
    try:
        groups = split_groups(selected, [GroupSize(g.count, g.percent) for g in body.groups])
        threshold = body.error_threshold
        return RolloutSpec(
            rollout_id=rollout_id,
            kind=body.kind,
            model=body.model,
            version=body.version,
            groups=groups,
            success_threshold=body.success_threshold,
            error_threshold=ErrorThreshold(threshold.count, threshold.fraction),
            in_progress_timeout_s=float(body.in_progress_timeout_s),
            previous_version=body.previous_version,
            from_versions=from_versions,
            window=body.window.window() if body.window is not None else None,
        )
    except RolloutError as exc:
        raise RolloutRefusedError(400, str(exc)) from None


def _check_version(db: Database, body: NewRollout, target_check: TargetCheck) -> bool | None:
    """Whether the version is published (None: no library to ask, or the built-in model: nothing to check); a 400
    in words when it cannot be rolled out."""
    if body.kind == "system":
        target = wire.system_target_path(body.model, body.version)
        known = target_check(db, target)
        if known is False:
            entry = find_bundle(db, body.model, body.version)
            raise RolloutRefusedError(400, refusals.not_published(body.model, body.version, target, entry, "system"))
        return known
    reported = running_versions(db).get(heartbeat_key(body.model), {})
    built_in = {v for v in reported if not refusals.is_package_version(v)}  # devices on their factory model
    if (why := refusals.not_a_version(body.model, body.version, built_in)) is not None:
        raise RolloutRefusedError(400, why)
    if not refusals.is_package_version(body.version):
        return None  # back to the built-in model: nothing to check
    target = wire.target_path(body.model, body.version)
    known = target_check(db, target)
    if known is False:
        entry = library_entry(db, body.model, body.version)
        raise RolloutRefusedError(400, refusals.not_published(body.model, body.version, target, entry))
    return known


def _publishable(compatible: str, version: str) -> bool:
    try:
        wire.system_target_path(compatible, version)
    except ValueError:
        return False
    return True


def _selected(db: Database, body: NewRollout, rollout_id: str) -> tuple[list[str], dict[str, str]]:
    """The devices the rollout takes and the version each runs now (a system rollout takes only devices that report
    their system version: an agent on an image without one cannot take system updates)."""
    sel = body.selector
    selector = Selector(sel.site, sel.ward, sel.room, tuple(sel.tags), sel.percent, sel.system_version)
    infos = store.device_infos(db)
    if body.kind == "system":  # devices that report a system, on this bundle's board (an older agent's: unknown)
        infos = [d for d in infos if d.system_version is not None and d.system_compatible in (None, body.model)]
    selected = select_devices(infos, selector, rollout_id)
    if not selected:
        unless = " and reports its system version" if body.kind == "system" else ""
        raise RolloutRefusedError(400, f"no active device matches the selector{unless}")
    if body.kind == "system":
        chosen = set(selected)
        return selected, {
            d.id: d.system_version
            for d in infos
            if d.id in chosen and d.system_version is not None and _publishable(body.model, d.system_version)
        }  # (a version no bundle can carry, e.g. with "+build", is no rollback target: the rollout's previous one is)
    return selected, store.running_versions(db, selected, body.model)


def create_rollout(
    db: Database,
    body: NewRollout,
    *,
    actor: str,
    now: float,
    target_check: TargetCheck = no_library,
) -> dict[str, Any]:
    """Select the devices, cut them into groups, store the rollout and offer its first group; return its view."""
    known = _check_version(db, body, target_check)
    rollout_id = "ro-" + secrets.token_hex(6)
    with transaction(db.conn):
        selected, from_versions = _selected(db, body, rollout_id)
        spec = _spec(body, rollout_id, selected, from_versions)
        state, decisions = tick(spec, new_state(spec, now), [], now)
        store.insert(db, spec, state, request=body.model_dump_json(), target_checked=known is True, actor=actor,
                     now=now)  # fmt: skip
        store.save(db, rollout_id, spec, state, now)
        details = {"kind": spec.kind, "model": spec.model, "version": spec.version, "devices": spec.total,
                   "groups": [len(g) for g in spec.groups], "target_checked": known is True}  # fmt: skip
        audit.record(db, actor=actor, action="rollout.create", target=f"rollout:{rollout_id}", details=details,
                     now=now)  # fmt: skip
        _audit_status_changes(db, rollout_id, decisions, "system", now)
        row = store.load(db, rollout_id)
    assert row is not None
    log.info("rollout %s by %s: %s %s to %d devices in %d groups", rollout_id, actor, spec.model, spec.version,
             spec.total, len(spec.groups))  # fmt: skip
    return view(row)


def apply_command(
    db: Database, rollout_id: str, command: Command, *, actor: str, now: float, reason: str | None = None
) -> dict[str, Any]:
    """Pause, resume, abort or roll back a rollout (audited); RolloutRefusedError 404 / 409."""
    with transaction(db.conn):
        row = store.load(db, rollout_id)
        if row is None:
            raise RolloutRefusedError(404, f"no rollout '{rollout_id}'")
        spec, state = store.decode(row)
        try:
            new, decisions = commands.COMMANDS[command](spec, state, now, reason)
        except CommandError as exc:
            raise RolloutRefusedError(409, str(exc)) from None
        store.save(db, rollout_id, spec, new, now)
        details = {
            "reason": reason,
            "from": state.status,
            "to": new.status,
            "offers_withdrawn": sum(d.kind == "cancel" for d in decisions),
            "rollbacks_offered": sum(d.kind == "offer_previous" for d in decisions),
        }
        audit.record(db, actor=actor, action=f"rollout.{command}", target=f"rollout:{rollout_id}", details=details,
                     now=now)  # fmt: skip
        row = store.load(db, rollout_id)
    assert row is not None
    log.warning("rollout %s: %s by %s (%s): %s -> %s", rollout_id, command, actor, reason or "no reason given",
                state.status, new.status)  # fmt: skip
    return view(row)


def _tick_one(db: Database, rollout_id: str, now: float) -> list[Decision]:
    row = store.load(db, rollout_id)
    assert row is not None
    spec, state = store.decode(row)
    rows = store.new_reports(db, row)
    new, decisions = tick(spec, state, store.as_reports(rows), now)
    if new != state or rows:
        store.save(db, rollout_id, spec, new, now, rows[-1]["id"] if rows else None)
    _audit_status_changes(db, rollout_id, decisions, "system", now)
    return decisions


def tick_all(target: web.Application | FleetDB, now: float) -> dict[str, list[Decision]]:
    """Tick every rollout that is not settled or has new reports, as of ``now``; return each one's decisions."""
    db = (target[DB_KEY] if isinstance(target, web.Application) else target).db
    out: dict[str, list[Decision]] = {}
    for rollout_id in store.to_tick(db):
        with transaction(db.conn):
            decisions = _tick_one(db, rollout_id, now)
        out[rollout_id] = decisions
    return out


def record_report(db: Database, device_id: str, report: wire.UpdateReport, now: float) -> None:
    """Store a device's report if the rollout it names offers this device what it reports on."""
    row = store.load(db, report.rollout_id)
    member = row is not None and store.targets(db, report.rollout_id, device_id)
    if row is None or not member:
        raise RolloutRefusedError(404, f"rollout '{report.rollout_id}' offers this device nothing")
    spec, state = store.decode(row)
    why = refuse_report(spec, state, device_id, report.model, report.version)
    if why is not None:
        raise RolloutRefusedError(409, why)
    store.insert_report(db, device_id, report, now)
