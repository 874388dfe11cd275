"""The ``rotate_key`` job: a new device key, proven to the server (``wire.sign_rotation_proof``) before it is used.

The new key is written beside the old one (``key.pem.next``) and becomes ``key.pem`` only once the server has
answered with a credential bound to it; events signed with the old key are drained first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

from firmware.jobs.context import JobContext
from firmware.transport import NotAuthorizedError, UnreachableError
from wardsight import wire
from wardsight.paths import fsync_dir

log = logging.getLogger("wardsight.device.jobs")


def rotate_key(ctx: JobContext, job: wire.Job) -> wire.JobReport:
    pending = ctx.hooks.pending_events
    deadline = time.monotonic() + 15.0
    while pending is not None and pending() > 0 and time.monotonic() < deadline:  # signed with the old key
        time.sleep(0.1)
    key_path = ctx.device_dir / "key.pem"
    next_path = ctx.device_dir / "key.pem.next"
    new_key = wire.generate_key()
    wire.write_private_key(new_key, next_path)  # 0600; becomes key.pem only once the server has it
    public = wire.encode_public_key(new_key.public_key())
    device_id = ctx.identity.device_id

    def body(nonce: str) -> bytes:
        possession = wire.sign_rotation_proof(new_key, device_id, job.job_id, nonce)
        return json.dumps({"job_id": job.job_id, "public_key": public, "possession": possession}).encode()

    try:
        reply = ctx.client.request_bound("POST", wire.ROTATE_PATH, body, "application/json")
    except NotAuthorizedError:
        next_path.unlink(missing_ok=True)
        raise
    except UnreachableError:
        # The server may have taken the new key; keep it beside the old one for an operator to recover.
        log.error("key rotation (job %s): no answer; the new key is kept in %s", job.job_id, next_path)
        return ctx.reports.fail(job, "rotation_unconfirmed")
    if reply.status != 200:
        next_path.unlink(missing_ok=True)
        log.warning("key rotation refused (HTTP %d): %s", reply.status, reply.error)
        return ctx.reports.fail(job, "rotation_refused")
    try:
        wire.CredentialGrant.model_validate(reply.body)
    except ValueError:
        log.error("key rotation (job %s): malformed credential in the reply; new key kept", job.job_id)
        return ctx.reports.fail(job, "rotation_unconfirmed")
    os.replace(next_path, key_path)  # the old key is revoked: the new one is the device's key from now
    with contextlib.suppress(OSError):
        fsync_dir(ctx.device_dir)
    ctx.client.adopt_key(new_key, reply)  # the credential from the reply, saved
    log.warning("device key rotated (job %s)", job.job_id)
    return ctx.reports.ok(job)
