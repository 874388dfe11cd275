"""Maintenance jobs: operators run them on one device, a list or a selection; devices fetch, run and report.

A *batch* (one operator request) holds one job per targeted device; :mod:`fleet.jobs.logic` decides, as pure
functions, when jobs are released (rate limit), when a batch stops (error threshold), when jobs expire and
what a device's report may change; :mod:`fleet.jobs.privacy` which configuration jobs reduce privacy and so wait for a
second admin's approval. :mod:`fleet.jobs.store` and :mod:`fleet.jobs.device_store` keep batches
and jobs in SQL with their audit entries, :mod:`fleet.jobs.routes` is the operator API,
:mod:`fleet.jobs.device_routes` the device API (long poll, reports, key rotation), :mod:`fleet.jobs.wakeup`
the long polls waiting for news and :mod:`fleet.jobs.release` the pass that expires and releases jobs (every
second in the background, and on every route that touches a batch) and wakes waiting devices.
"""

from __future__ import annotations

from aiohttp import web

from fleet.jobs import device_routes, release, routes, wakeup
from wardsight import wire


def setup(app: web.Application) -> None:
    """Add the job routes and the task that expires and releases jobs (started and stopped with the app)."""
    wakeup.waiters(app)
    app.cleanup_ctx.append(release.ticker)
    app.router.add_get(wire.JOBS_PATH, device_routes.poll)
    app.router.add_post(wire.JOBS_PATH + "/{job_id}", device_routes.report)
    app.router.add_post(wire.ROTATE_PATH, device_routes.rotate_key)
    app.router.add_get("/api/v1/jobs", routes.list_batches)
    app.router.add_post("/api/v1/jobs", routes.create_jobs)
    app.router.add_get("/api/v1/jobs/{batch_id}", routes.get_batch)
    app.router.add_post("/api/v1/jobs/{batch_id}/cancel", routes.cancel_batch)
    app.router.add_post("/api/v1/jobs/{batch_id}/approve", routes.approve_batch)
    app.router.add_post("/api/v1/jobs/{batch_id}/reject", routes.reject_batch)
    app.router.add_get("/api/v1/jobs/{batch_id}/devices/{device_id}/output", routes.get_output)
