"""Enrollment: one-time tokens (operators make them, a device spends one with its key to join), the nonces and
short-lived credentials a device then authenticates with, and the nonce/time stamp on every device reply."""

from __future__ import annotations

from aiohttp import web

from fleet.auth import device_requests
from fleet.enrollment import routes, token_routes
from wardsight import wire


def setup(app: web.Application) -> None:
    device_requests.install(app)
    app.router.add_post(wire.ENROLL_PATH, routes.enroll)
    app.router.add_get(wire.NONCE_PATH, routes.nonce)
    app.router.add_post(wire.CREDENTIAL_PATH, routes.credential)
    app.router.add_get("/api/v1/tokens", token_routes.list_tokens)
    app.router.add_post("/api/v1/tokens", token_routes.create_token)
    app.router.add_delete("/api/v1/tokens/{id}", token_routes.revoke_token)
