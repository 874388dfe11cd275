"""The ``push_config`` job: a new ``device.toml``, validated and dry-run before it replaces the running one.

A pushed configuration is validated with :class:`DeviceConfig` (and the environment overrides) and dry-run
(:func:`dry_run_config`: apps, zones, privacy regions, source description and model files, without opening a
camera); the previous file is kept and is restored by :func:`recover_pushed_config` when the agent does not start
with the new one.

With params ``merge = "zones"`` (the console's zone editor) the job's ``config`` is not a file but a
:class:`~wardsight.device_config.LayoutEdit` (JSON): the new file is the device's own ``device.toml`` with only its
zones and privacy regions changed (:func:`firmware.jobs.layout.merge_layout`), then validated, dry-run, written and
restarted into exactly as a pushed file is. Refusals: ``edit_invalid`` (not a valid edit), ``layout_changed`` (a
zone or privacy region it changes or removes is not there, or one it adds already is), ``layout_not_editable``
(the file cannot be changed without touching more), ``config_unreadable``, ``unknown_merge``.

Either way, a new configuration that removes, shrinks or moves a privacy region of the device's current file, or
changes its camera source (:mod:`wardsight.privacy_changes`), is applied only when the signed job carries a
two-person approval (``wire.PrivacyApproval``, attached by the server once a second admin approved); otherwise it
is refused ``privacy_change_not_approved`` and nothing changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from firmware.assembly import build_apps, build_zones
from firmware.exitcodes import RESTART_EXIT_CODE
from firmware.jobs.context import JobContext
from firmware.jobs.layout import LayoutEditError, merge_layout
from firmware.jobs.ledger import JobLedger, ledger_path
from wardsight import wire
from wardsight.device_config import (
    DEFAULT_REBOOT_COMMAND,
    ENV_PREFIX,
    MERGE_PARAM,
    MERGE_ZONES,
    DeviceConfig,
    LayoutEdit,
    UpdateGates,
    outline_problem,
)
from wardsight.errors import WardSightError
from wardsight.fetch import ArtifactStore
from wardsight.paths import fsync_dir, write_file_atomically
from wardsight.privacy_changes import config_reductions
from wardsight.settings import describe_validation_error, load_config

log = logging.getLogger("wardsight.device.jobs")


class ConfigRefusedError(WardSightError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def previous_config_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".previous")


def _polygon_area(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    return abs(sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n)))


def dry_run_config(config: DeviceConfig, store: ArtifactStore | None) -> None:
    """Build what the agent builds at start, except opening the camera and loading models.

    Raises :class:`ConfigRefusedError` (``config_would_not_start``) naming the first problem: apps that
    cannot be built (e.g. bed_exit with no bed zone), duplicate zone names, a privacy region or zone with no
    area (it would hide or find nothing), a stream without a URL, a missing video file, an unknown model, a
    model or footage file the agent would need but does not have.
    """
    from accelerators.catalog import get_model
    from wardsight.footage import DEMO_FOOTAGE

    def refuse(detail: str) -> ConfigRefusedError:
        return ConfigRefusedError("config_would_not_start", detail)

    problem = outline_problem(config)
    if problem is not None:
        raise refuse(problem)
    for region in config.privacy_regions:
        if _polygon_area(region.polygon) < 1e-6:
            raise refuse(f"privacy region '{region.name}' has no area: it would hide nothing")
    for zone in config.zones:
        if _polygon_area(zone.polygon) < 1e-6:
            raise refuse(f"zone '{zone.name}' has no area")
    try:
        apps = build_apps(config)
        build_zones(config)
        manifest = get_model(config.model)
    except (WardSightError, ValueError) as exc:
        raise refuse(str(exc)) from None
    src = config.source
    if src.kind == "stream" and not src.url:
        raise refuse("source.kind = stream needs source.url")
    if src.kind == "stream" and src.url and not src.url.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        raise refuse("source.url must be an rtsp:// or http(s):// URL")
    if src.kind == "file" and src.path is not None and not src.path.is_file():
        raise refuse(f"source.path {src.path} is not a file on this device")
    if store is None:
        return
    needed = [manifest.artifact]
    if src.kind == "file" and src.path is None:
        needed.append(DEMO_FOOTAGE)
    wanted = set().union(*(a.needs for a in apps))
    if "faces" in wanted:
        from accelerators.facemask import FACEMASK_AIZOO
        from accelerators.mediapipe_models import FACE_FULL_RANGE

        needed += [FACE_FULL_RANGE, FACEMASK_AIZOO.artifact]
    if "hands" in wanted:
        from accelerators.mediapipe_models import HAND_LANDMARK, PALM_DETECTION

        needed += [PALM_DETECTION, HAND_LANDMARK]
    for artifact in needed:
        if not store.is_present(artifact):
            raise refuse(f"{artifact.name} is not on this device (run 'wardsight models fetch {artifact.name}')")


def validate_config_text(
    text: str, config_path: Path, environ: Mapping[str, str], store: ArtifactStore | None
) -> DeviceConfig:
    """The configuration the agent would start with if ``text`` replaced its file (env overrides included)."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pushed-", suffix=".toml", dir=config_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        config = load_config(DeviceConfig, path=Path(tmp), env_prefix=ENV_PREFIX, environ=environ)
    except WardSightError as exc:
        raise ConfigRefusedError("config_invalid", str(exc).replace(tmp, "pushed config")) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    dry_run_config(config, store)
    return config


def check_local_settings(pushed: DeviceConfig, running: DeviceConfig | None) -> None:
    """Refuse a pushed configuration that changes what only the device's own file may set: the reboot command
    (a command the agent runs; a remote operator must not choose it) and the update gates (what a new model or
    system must show before the device keeps it: loosened from afar, a bad release would be committed)."""
    current = running.reboot_command if running is not None else list(DEFAULT_REBOOT_COMMAND)
    if pushed.reboot_command != current:
        raise ConfigRefusedError("reboot_command_is_local", "a pushed configuration may not change reboot_command")
    gates = running.updates if running is not None else UpdateGates()
    if pushed.updates != gates:
        raise ConfigRefusedError("updates_are_local", "a pushed configuration may not change [updates]")


def current_config(config_path: Path, environ: Mapping[str, str]) -> DeviceConfig | None:
    """The configuration the device's own file gives now (the defaults when it has none; env overrides included),
    or None when the file cannot be read as one."""
    try:
        path = config_path if config_path.is_file() else None
        return load_config(DeviceConfig, path=path, env_prefix=ENV_PREFIX, environ=environ)
    except (WardSightError, OSError):
        return None


def check_privacy(job: wire.Job, pushed: DeviceConfig, current: DeviceConfig | None) -> None:
    """Refuse (``privacy_change_not_approved``) a configuration that removes, shrinks or moves a privacy region or
    changes the camera source (:func:`wardsight.privacy_changes.config_reductions`, against the device's own file)
    unless the signed job carries a two-person approval (``wire.PrivacyApproval``). A file the device cannot read
    counts as such a change: nothing says what the new one keeps."""
    if current is None:
        reasons = ["the device cannot read its current configuration to compare"]
    else:
        reasons = config_reductions(current, pushed)
    if not reasons:
        return
    if wire.has_privacy_approval(job):
        assert job.privacy_approval is not None
        who = " and ".join(job.privacy_approval.approved_by)
        log.warning("job %s reduces privacy, approved by %s: %s", job.job_id, who, "; ".join(reasons))
        return
    raise ConfigRefusedError(
        "privacy_change_not_approved",
        "; ".join(reasons) + " (a change that reduces privacy needs a second admin's approval, signed by the server)",
    )


def recover_pushed_config(device_dir: Path, config_path: Path) -> str | None:
    """Call at every start, before the configuration is loaded.

    A pushed configuration gets one start: if the agent started with it before and did not get as far as
    :meth:`firmware.jobs.runner.JobRunner.resume` (the build failed and the supervisor started us again), the
    previous file is put back and the job is reported failed (``config_failed_at_start``). Returns what was done,
    or None.
    """
    path = ledger_path(device_dir)
    if not path.exists():
        return None
    ledger = JobLedger(path)
    try:
        for job_id, _, detail in ledger.in_state("config_applied"):
            starts = int(detail.get("starts", 0))
            if starts == 0:
                ledger.set_state(job_id, "config_applied", {**detail, "starts": 1})
                continue
            previous = previous_config_path(config_path)
            if detail.get("had_previous") and previous.exists():
                os.replace(previous, config_path)
                with contextlib.suppress(OSError):
                    fsync_dir(config_path.parent)
            elif not detail.get("had_previous"):
                config_path.unlink(missing_ok=True)
            ledger.finish(wire.JobReport(job_id=job_id, state="failed", reason="config_failed_at_start"))
            message = f"the configuration pushed by {job_id} did not start; the previous one is back"
            log.error("%s", message)
            return message
    finally:
        ledger.close()
    return None


def merged_config_text(edit_json: str, config_path: Path) -> str:
    """The device's ``device.toml`` (``config_path``; none: empty) with the zone editor's edit applied."""
    try:
        edit = LayoutEdit.model_validate_json(edit_json)
    except ValidationError as exc:
        raise ConfigRefusedError("edit_invalid", describe_validation_error(exc, "zones edit")) from None
    try:
        current = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigRefusedError("config_unreadable", f"cannot read {config_path}: {exc}") from None
    try:
        return merge_layout(current, edit)
    except LayoutEditError as exc:
        raise ConfigRefusedError(exc.reason, str(exc)) from None


def _pushed_text(job: wire.Job, config_path: Path) -> str:
    merge = job.params.get(MERGE_PARAM)
    if merge is None:
        return job.config or ""
    if merge != MERGE_ZONES:
        raise ConfigRefusedError("unknown_merge", f"push_config cannot merge {merge!r} (only {MERGE_ZONES!r})")
    return merged_config_text(job.config or "", config_path)


def push_config(ctx: JobContext, job: wire.Job) -> wire.JobReport | None:
    if job.config is None:
        return ctx.reports.final(wire.JobReport(job_id=job.job_id, state="refused", reason="no_config"))
    path = ctx.hooks.config_path
    try:
        text = _pushed_text(job, path)
        pushed = validate_config_text(text, path, ctx.hooks.environ, ctx.hooks.store)
        check_local_settings(pushed, ctx.hooks.config)
        check_privacy(job, pushed, current_config(path, ctx.hooks.environ))
    except ConfigRefusedError as exc:
        log.warning("pushed configuration (job %s) refused, the current one stays: %s", job.job_id, exc)
        return ctx.reports.final(wire.JobReport(job_id=job.job_id, state="refused", reason=exc.reason))
    had_previous = path.is_file()
    if had_previous:
        write_file_atomically(previous_config_path(path), path.read_bytes())
    ctx.ledger.set_state(job.job_id, "config_applied", {"had_previous": had_previous, "starts": 0})
    write_file_atomically(path, text.encode("utf-8"))
    ctx.halt()
    log.warning("configuration from job %s applied; restarting the agent with it", job.job_id)
    ctx.hooks.stop_agent(RESTART_EXIT_CODE)
    return None
