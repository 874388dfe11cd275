"""Operator accounts, roles, sessions with CSRF, and API tokens.

Roles are ordered ``viewer < operator < admin``; every route checks them per request through
:func:`fleet.auth.operator.require` (a browser session: cookie ``wardsight_session`` with idle and absolute
expiry and, for unsafe methods, the ``X-CSRF-Token`` header; or ``Authorization: Bearer wsa.<id>.<secret>``).
The cookie is HttpOnly, SameSite=Strict and Secure unless the server runs with ``insecure_http``.

Passwords are argon2id with the config's memory and time costs (rehashed on login when those change),
at least 12 characters. Hashing runs on worker threads, at most two at a time. An unknown username
costs a hash too, so timing does not tell which usernames exist. Failed sign-ins are throttled per account and
client address, per address and per account with growing waits (1 s, 2 s, 4 s ... up to
``login_lockout_seconds``; an early attempt gets 429 with Retry-After), and an address the account signed in
from before is not held up by failures from elsewhere (:mod:`fleet.accounts.throttle`); every lockout started
is an audit entry. A disabled user's sessions, a revoked or expired token and a
changed role take effect on the next request. Every change goes into the audit log (:mod:`fleet.audit`).

- ``rules``: valid usernames, roles, token names; ``OperatorError``.
- ``passwords``: hashing, checking, the app's hashing slots.
- ``store``: SQL over operators, API tokens and sessions.
- ``service``: create/update operators, create/revoke API tokens (routes and CLI), each with its audit entry.
- ``sessions``: login, logout and the own-password change.
- ``throttle``: the sign-in throttling decisions; ``lockout``: their counters and known addresses.
- ``routes``: the HTTP handlers; ``cli``: ``wardsight fleet operator``.
"""

from __future__ import annotations

from aiohttp import web

from fleet.accounts import lockout, passwords, routes


def setup(app: web.Application) -> None:
    """Add the session, operator and API token routes (the password hashing slots and the sign-in throttle)
    to ``app``."""
    passwords.install(app)
    lockout.install(app)
    app.router.add_post("/api/v1/session", routes.login)
    app.router.add_get("/api/v1/session", routes.whoami)
    app.router.add_delete("/api/v1/session", routes.logout)
    app.router.add_post("/api/v1/session/password", routes.change_password)
    app.router.add_get("/api/v1/operators", routes.get_operators)
    app.router.add_post("/api/v1/operators", routes.post_operator)
    app.router.add_patch("/api/v1/operators/{username}", routes.patch_operator)
    app.router.add_get("/api/v1/api-tokens", routes.get_api_tokens)
    app.router.add_post("/api/v1/api-tokens", routes.post_api_token)
    app.router.add_delete("/api/v1/api-tokens/{id}", routes.delete_api_token)
