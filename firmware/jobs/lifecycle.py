"""The jobs that end this process: ``restart_agent``, ``reboot`` and ``factory_reset``.

A restart or a reboot records where it is in the ledger and is reported ``succeeded`` after the next start
(:meth:`firmware.jobs.runner.JobRunner.resume`); a factory reset reports first, then wipes the device directory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time
from pathlib import Path

from firmware.erase import erase_file
from firmware.exitcodes import FACTORY_RESET_EXIT_CODE, RESTART_EXIT_CODE
from firmware.jobs.config import previous_config_path
from firmware.jobs.context import JobContext
from firmware.transport import NotAuthorizedError, UnreachableError
from wardsight import wire
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.jobs")


def restart(ctx: JobContext, job: wire.Job) -> None:
    ctx.ledger.set_state(job.job_id, "restarting")  # reported "succeeded" after the next start
    ctx.halt()
    log.warning("restarting the agent (job %s)", job.job_id)
    ctx.hooks.stop_agent(RESTART_EXIT_CODE)


def reboot(ctx: JobContext, job: wire.Job) -> wire.JobReport | None:
    ctx.ledger.set_state(job.job_id, "rebooting")  # reported "succeeded" after the next start
    command = list(ctx.hooks.reboot_command)
    log.warning("rebooting the device (job %s): %s", job.job_id, " ".join(command))
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("reboot command failed: %s", exc)
        return ctx.reports.fail(job, "reboot_command_failed")
    if done.returncode != 0:
        log.error("reboot command exited %d: %s", done.returncode, done.stderr[-200:].decode(errors="replace"))
        return ctx.reports.fail(job, "reboot_command_failed")
    return None  # the machine is going down; "succeeded" is reported after it is back


def factory_reset(ctx: JobContext, job: wire.Job) -> None:
    log.warning("factory reset (job %s): wiping the identity, keys, credential, outbox and configuration", job.job_id)
    ctx.halt()
    path = ctx.hooks.config_path
    for config_file in (path, previous_config_path(path)):
        config_file.unlink(missing_ok=True)
    report = wire.JobReport(job_id=job.job_id, state="succeeded")
    for attempt in range(3):  # the last thing this identity says; it cannot report afterwards
        try:
            ctx.reports.post(report)
            break
        except (UnreachableError, NotAuthorizedError) as exc:
            log.warning("factory reset not reported (%s)%s", exc, "; retrying" if attempt < 2 else "")
            time.sleep(1.0)
    ctx.ledger.close()
    wipe_device_dir(ctx.device_dir)
    ctx.hooks.stop_agent(FACTORY_RESET_EXIT_CODE)


def wipe_device_dir(device_dir: Path) -> None:
    """Delete everything in the device directory; private key files are overwritten in place first (best effort)."""
    for key_file in device_dir.glob("key.pem*"):
        with contextlib.suppress(WardSightError):
            erase_file(key_file)
    shutil.rmtree(device_dir, ignore_errors=True)
