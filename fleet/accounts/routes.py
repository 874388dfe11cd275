"""The accounts' HTTP routes: the session (login, whoami, logout, own password), operators and API tokens.

Login CSRF is not possible because every body must be ``application/json``, which a cross-site form
cannot send and which needs a CORS preflight this server never grants.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet.accounts import lockout, passwords, service, sessions, store
from fleet.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from fleet.accounts.rules import LABEL_PATTERN, MAX_TOKEN_LIFETIME, USERNAME_PATTERN, OperatorError
from fleet.auth.operator import COOKIE_NAME, Role, authenticate, require, require_session
from fleet.config import ServerConfig
from fleet.store.connection import Database
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.body import M, read_json
from fleet.web.errors import RejectedError

Handler = Callable[[web.Request], Awaitable[web.Response]]

# ---- request bodies -----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
AnyPassword = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
Username = Annotated[str, Field(pattern=USERNAME_PATTERN)]


class LoginBody(_Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: AnyPassword


class NewOperatorBody(_Body):
    username: Username
    password: Password
    role: Role


class OperatorPatchBody(_Body):
    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None


class PasswordChangeBody(_Body):
    current_password: AnyPassword
    new_password: Password


class NewTokenBody(_Body):
    name: Annotated[str, Field(pattern=LABEL_PATTERN)]
    role: Role
    expires_in_seconds: Annotated[int, Field(ge=60, le=MAX_TOKEN_LIFETIME)] | None = None


async def _body(request: web.Request, model: type[M]) -> M:
    # The app-wide body limit, as for every JSON body.
    return await read_json(request, model)


def _refused(exc: OperatorError) -> RejectedError:
    return RejectedError(exc.status, str(exc))


def _locked_out(wait: float) -> RejectedError:
    retry = str(max(1, math.ceil(wait)))
    return RejectedError(429, "too many failed attempts; try again later", headers={"Retry-After": retry})


# ---- session routes -----------------------------------------------------------------------------------


def _set_cookie(response: web.StreamResponse, config: ServerConfig, value: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=config.session_max_seconds,
        path="/",
        secure=not config.insecure_http,
        httponly=True,
        samesite="Strict",
    )


def _fail(request: web.Request, attempt: lockout.Attempt, reason: str, action: str) -> None:
    lockout.record_failure(request.app[DB_KEY].db, attempt, reason=reason, action=action, now=request.app[CLOCK_KEY]())


async def _check_password(
    request: web.Request, username: str, password: str
) -> tuple[dict[str, Any] | None, str | None, bool, bool, lockout.Attempt]:
    """Count an attempt for ``username`` from the client's address (429 while throttled there), then check
    ``password`` against its stored hash: (its credentials row or None, the stored hash, whether it matches,
    whether to rehash it, the attempt for :func:`_fail` or the sign-in)."""
    app = request.app
    db = app[DB_KEY].db
    attempt = lockout.begin_attempt(db, app[lockout.THROTTLE_KEY], username, request.remote, app[CLOCK_KEY]())
    if attempt.wait > 0:
        raise _locked_out(attempt.wait)
    row = store.credentials(db, username)
    stored = row["password_hash"] if row is not None else None
    ok, rehash = await passwords.verify_in_worker(app, stored, password)
    return row, stored, ok, rehash, attempt


async def login(request: web.Request) -> web.Response:
    body = await _body(request, LoginBody)
    app = request.app
    db, config = app[DB_KEY].db, app[CONFIG_KEY]
    username = body.username.lower()
    row, stored, ok, rehash, attempt = await _check_password(request, username, body.password)
    if not ok or row is None or row["disabled"]:
        reason = "unknown user" if row is None else ("wrong password" if not ok else "account disabled")
        _fail(request, attempt, reason, "login.failure")
        raise RejectedError(401, "invalid username or password")
    new_hash = await passwords.hash_in_worker(app, body.password) if rehash else None
    opened = sessions.open_session(
        db,
        username,
        stored,
        new_hash=new_hash,
        old_cookie=request.cookies.get(COOKIE_NAME),
        attempt=attempt,
        guard=app[lockout.THROTTLE_KEY],
        now=app[CLOCK_KEY](),
        config=config,
    )
    if opened is None:
        raise RejectedError(401, "invalid username or password")  # disabled or changed while we were hashing
    response = web.json_response({"username": username, "role": opened.role, "csrf_token": opened.csrf_token})
    _set_cookie(response, config, opened.session_id)
    return response


async def whoami(request: web.Request) -> web.Response:
    """Who the caller is. Asking with no credential at all (the console's first question on every load) is not a
    refusal: ``{"signed_in": false}``. A credential that is refused (a session expired or ended, a revoked token)
    is answered 401 as on every other route."""
    if "Authorization" not in request.headers and not request.cookies.get(COOKIE_NAME):
        return web.json_response({"signed_in": False})
    principal, session = authenticate(request)
    body: dict[str, Any] = {
        "signed_in": True,
        "actor": principal.actor,
        "username": principal.username,
        "role": principal.role,
        "via": principal.via,
    }
    if session is not None:
        body["csrf_token"] = session.csrf_token
    return web.json_response(body)


async def logout(request: web.Request) -> web.Response:
    principal, session = require_session(request)
    config = request.app[CONFIG_KEY]
    sessions.close_session(request.app[DB_KEY].db, principal, session, request.app[CLOCK_KEY]())
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE_NAME, path="/", secure=not config.insecure_http, httponly=True, samesite="Strict")
    return response


async def change_password(request: web.Request) -> web.Response:
    principal, session = require_session(request)
    body = await _body(request, PasswordChangeBody)
    app = request.app
    db = app[DB_KEY].db
    username = principal.username
    assert username is not None
    _, stored, ok, _, attempt = await _check_password(request, username, body.current_password)
    if not ok:
        _fail(request, attempt, "wrong current password", "password.change_failure")
        raise RejectedError(403, "current password is wrong")
    if body.new_password == body.current_password:
        raise RejectedError(400, "the new password must differ from the current one")
    new_hash = await passwords.hash_in_worker(app, body.new_password)
    now = app[CLOCK_KEY]()
    guard = app[lockout.THROTTLE_KEY]
    if not sessions.change_own_password(db, principal, session, stored, new_hash, now, attempt, guard):
        raise RejectedError(409, "the account changed meanwhile; try again")
    return web.json_response({"username": username, "password_changed_at": now})


# ---- operator routes ----------------------------------------------------------------------------------


def _admin_list(key: str, rows: Callable[[Database], list[dict[str, Any]]]) -> Handler:
    """A GET handler for admins answering ``{key: rows(db)}``."""

    async def handler(request: web.Request) -> web.Response:
        await require(request, "admin")
        return web.json_response({key: rows(request.app[DB_KEY].db)})

    return handler


get_operators = _admin_list("operators", store.list_operators)


async def post_operator(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await _body(request, NewOperatorBody)
    db = request.app[DB_KEY].db
    if store.operator(db, body.username) is not None:
        raise RejectedError(409, f"operator '{body.username}' already exists")
    password_hash = await passwords.hash_in_worker(request.app, body.password)
    try:
        service.add_operator(db, body.username, password_hash, body.role, request.app[CLOCK_KEY](), principal.actor)
    except OperatorError as exc:
        raise _refused(exc) from None
    return web.json_response({"username": body.username, "role": body.role, "disabled": False}, status=201)


async def patch_operator(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await _body(request, OperatorPatchBody)
    if body.role is None and body.disabled is None and body.password is None:
        raise RejectedError(400, "nothing to change: give role, disabled or password")
    password_hash = await passwords.hash_in_worker(request.app, body.password) if body.password is not None else None
    try:
        view = service.apply_update(
            request.app[DB_KEY].db,
            request.match_info["username"],
            actor=principal.actor,
            now=request.app[CLOCK_KEY](),
            role=body.role,
            disabled=body.disabled,
            password_hash=password_hash,
        )
    except OperatorError as exc:
        raise _refused(exc) from None
    return web.json_response(view)


# ---- API token routes ---------------------------------------------------------------------------------


get_api_tokens = _admin_list("api_tokens", store.list_api_tokens)


async def post_api_token(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await _body(request, NewTokenBody)
    now = request.app[CLOCK_KEY]()
    expires_at = now + body.expires_in_seconds if body.expires_in_seconds is not None else None
    try:
        token = service.create_api_token(request.app[DB_KEY].db, body.name, body.role, principal.actor, now, expires_at)
    except OperatorError as exc:
        raise _refused(exc) from None
    token_id = token.split(".")[1]
    return web.json_response(
        {"id": token_id, "token": token, "name": body.name, "role": body.role, "expires_at": expires_at}, status=201
    )


async def delete_api_token(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    token_id, now = request.match_info["id"], request.app[CLOCK_KEY]()
    try:
        service.revoke_api_token(request.app[DB_KEY].db, token_id, actor=principal.actor, now=now)
    except OperatorError as exc:
        raise _refused(exc) from None
    return web.json_response({"id": token_id, "revoked_at": now})
