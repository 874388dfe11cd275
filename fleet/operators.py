"""Operator accounts, roles, sessions with CSRF, and API tokens; the audit log's routes.

Roles are ordered ``viewer < operator < admin``. Other route modules call :func:`require`, which
authenticates the request and checks the role on the server for every request:

- a browser session: cookie ``wardsight_session`` (256 random bits; the database stores only its
  sha256) with idle and absolute expiry from the config. Unsafe methods (anything but GET, HEAD,
  OPTIONS) also need the header ``X-CSRF-Token`` equal to the session's CSRF token. The cookie is
  HttpOnly, SameSite=Strict and Secure unless the server runs with ``insecure_http``.
- an API token: ``Authorization: Bearer wsa.<id>.<secret>`` (192-bit secret, stored as sha256); no CSRF.

Passwords are argon2id with the config's memory and time costs (rehashed on login when those change),
at least 12 characters. Hashing runs on worker threads, at most two at a time. An unknown username
costs a hash too, so timing does not tell which usernames exist. After ``max_login_failures`` failed
logins for a username within ``login_lockout_seconds``, logins for it are refused (429 with
Retry-After) for ``login_lockout_seconds``. A disabled user's sessions, a revoked or expired token and a
changed role take effect on the next request. Every change goes into the audit log (``fleet.audit``).

Login CSRF is not possible because every body must be ``application/json``, which a cross-site form
cannot send and which needs a CORS preflight this server never grants.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, TypeVar, cast

import sqlite_utils
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet import audit
from fleet.auth.operator import (
    API_PREFIX,
    COOKIE_NAME,
    ROLES,
    Role,
    authenticate,
    one,
    require,
    require_session,
    sha256,
)
from fleet.config import ServerConfig
from fleet.store.schema import transaction
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.errors import RejectedError
from fleet.web.query import check_query_params, query_number

log = logging.getLogger("wardsight.fleet.operators")

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$"
MAX_TOKEN_LIFETIME = 366 * 24 * 3600
HASHING_SLOTS = 2  # concurrent argon2 computations (memory-hard: each takes password_memory_kib)
AUDIT_PAGE_LIMIT = 500


class OperatorError(Exception):
    """A refused change (unknown user, duplicate, weak password, last admin); ``str(exc)`` is for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---- schema -------------------------------------------------------------------------------------------


# ---- passwords ----------------------------------------------------------------------------------------


def hasher(config: ServerConfig) -> PasswordHasher:
    """argon2id with the config's costs (other parameters: argon2-cffi's RFC 9106 defaults)."""
    return PasswordHasher(time_cost=config.password_time_cost, memory_cost=config.password_memory_kib)


def validate_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(400, f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise OperatorError(400, f"password must be at most {MAX_PASSWORD_LENGTH} characters")


def validate_username(username: str) -> None:
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise OperatorError(400, "username must be 1-64 lowercase letters, digits or . _ - (starting with one)")


def validate_role(role: str) -> Role:
    if role not in ROLES:
        raise OperatorError(400, f"role must be one of {', '.join(ROLES)}")
    return cast(Role, role)


def hash_password(password: str, config: ServerConfig) -> str:
    """Validate and hash ``password`` (slow on purpose: call it off the event loop)."""
    validate_password(password)
    return hasher(config).hash(password)


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_cost: int) -> str:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost).hash(secrets.token_urlsafe(16))


def _verify_password(ph: PasswordHasher, stored: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs rehash). An unknown user (``stored`` None) costs the same as a known one."""
    target = stored if stored is not None else _dummy_hash(ph.time_cost, ph.memory_cost)
    try:
        ph.verify(target, password)
    except VerifyMismatchError:
        return False, False
    except (VerificationError, InvalidHashError):
        log.error("stored password hash could not be checked (corrupt or unsupported)")
        return False, False
    return stored is not None, stored is not None and ph.check_needs_rehash(stored)


# ---- operators ----------------------------------------------------------------------------------------


def _insert_operator(
    db: sqlite_utils.Database, username: str, password_hash: str, role: Role, now: float, actor: str
) -> None:
    with transaction(db.conn) as conn:
        if conn.execute("SELECT 1 FROM operators WHERE username = ?", [username]).fetchone():
            raise OperatorError(409, f"operator '{username}' already exists")
        conn.execute(
            "INSERT INTO operators (username, password_hash, role, disabled, created_at, created_by, updated_at,"
            " password_changed_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
            [username, password_hash, role, now, actor, now, now],
        )
        audit.record(
            db, actor=actor, action="operator.create", target=f"user:{username}", details={"role": role}, now=now
        )


def create_operator(
    db: sqlite_utils.Database,
    username: str,
    password: str,
    role: Role,
    now: float,
    config: ServerConfig,
    *,
    actor: str = "system",
) -> None:
    """Add an enabled operator (recorded in the audit log as done by ``actor``); OperatorError if refused."""
    validate_username(username)
    validate_role(role)
    _insert_operator(db, username, hash_password(password, config), role, now, actor)


def _operator_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": row["username"],
        "role": row["role"],
        "disabled": bool(row["disabled"]),
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "updated_at": row["updated_at"],
        "password_changed_at": row["password_changed_at"],
        "last_login_at": row["last_login_at"],
    }


def list_operators(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every operator without the password hash, by username."""
    return [_operator_view(row) for row in db.query("SELECT * FROM operators ORDER BY username")]


def _apply_update(
    db: sqlite_utils.Database,
    username: str,
    *,
    actor: str,
    now: float,
    role: Role | None = None,
    disabled: bool | None = None,
    password_hash: str | None = None,
) -> dict[str, Any]:
    with transaction(db.conn) as conn:
        row = one(db, "SELECT * FROM operators WHERE username = ?", [username])
        if row is None:
            raise OperatorError(404, f"no operator '{username}'")
        new_role = role if role is not None else row["role"]
        new_disabled = disabled if disabled is not None else bool(row["disabled"])
        if row["role"] == "admin" and not row["disabled"] and (new_role != "admin" or new_disabled):
            (admins,) = conn.execute("SELECT COUNT(*) FROM operators WHERE role = 'admin' AND disabled = 0").fetchone()
            if admins <= 1:
                raise OperatorError(409, "cannot demote or disable the last enabled admin")
        conn.execute(
            "UPDATE operators SET role = ?, disabled = ?, updated_at = ?, password_hash = COALESCE(?, password_hash),"
            " password_changed_at = CASE WHEN ? IS NULL THEN password_changed_at ELSE ? END WHERE username = ?",
            [new_role, int(new_disabled), now, password_hash, password_hash, now, username],
        )
        if new_disabled or password_hash is not None:
            conn.execute("DELETE FROM sessions WHERE username = ?", [username])
        details: dict[str, Any] = {}
        if new_role != row["role"]:
            details["role"] = {"from": row["role"], "to": new_role}
        if new_disabled != bool(row["disabled"]):
            details["disabled"] = new_disabled
        if password_hash is not None:
            details["password_reset"] = True
        audit.record(db, actor=actor, action="operator.update", target=f"user:{username}", details=details, now=now)
        updated = one(db, "SELECT * FROM operators WHERE username = ?", [username])
    assert updated is not None
    return _operator_view(updated)


def update_operator(
    db: sqlite_utils.Database,
    username: str,
    *,
    actor: str,
    now: float,
    config: ServerConfig,
    role: Role | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Change an operator's role, enabled state or password (disabling or a new password ends their
    sessions at once). Refuses to demote or disable the last enabled admin (OperatorError 409)."""
    if role is not None:
        validate_role(role)
    password_hash = hash_password(password, config) if password is not None else None
    return _apply_update(db, username, actor=actor, now=now, role=role, disabled=disabled, password_hash=password_hash)


# ---- API tokens ---------------------------------------------------------------------------------------


def create_api_token(
    db: sqlite_utils.Database,
    name: str,
    role: Role,
    created_by: str,
    now: float,
    expires_at: float | None = None,
) -> str:
    """Store a new API token and return its plaintext ``wsa.<id>.<secret>`` (shown once, stored hashed)."""
    if not isinstance(name, str) or not re.fullmatch(LABEL_PATTERN, name):
        raise OperatorError(400, "token name must be 1-64 letters, digits, spaces or . _ : - (starting with one)")
    validate_role(role)
    if expires_at is not None and expires_at <= now:
        raise OperatorError(400, "expires_at must be in the future")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(24)  # 192 bits
    with transaction(db.conn) as conn:
        conn.execute(
            "INSERT INTO api_tokens (id, name, secret_hash, role, created_by, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [token_id, name, sha256(secret), role, created_by, now, expires_at],
        )
        audit.record(
            db,
            actor=created_by,
            action="apitoken.create",
            target=f"apitoken:{token_id}",
            details={"name": name, "role": role, "expires_at": expires_at},
            now=now,
        )
    return f"{API_PREFIX}.{token_id}.{secret}"


def list_api_tokens(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every API token, newest first, without any secret material."""
    cols = "id, name, role, created_by, created_at, expires_at, revoked_at, revoked_by, last_used_at"
    return list(db.query(f"SELECT {cols} FROM api_tokens ORDER BY created_at DESC, id"))  # noqa: S608 (constant)


def revoke_api_token(db: sqlite_utils.Database, token_id: str, *, actor: str, now: float) -> None:
    """Revoke a token at once; OperatorError 404 if unknown, 409 if already revoked."""
    with transaction(db.conn) as conn:
        row = one(db, "SELECT revoked_at FROM api_tokens WHERE id = ?", [token_id])
        if row is None:
            raise OperatorError(404, f"no API token '{token_id}'")
        if row["revoked_at"] is not None:
            raise OperatorError(409, f"API token '{token_id}' is already revoked")
        conn.execute("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?", [now, actor, token_id])
        audit.record(db, actor=actor, action="apitoken.revoke", target=f"apitoken:{token_id}", now=now)


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


B = TypeVar("B", bound=_Body)


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown field '{where}'"
    if err["type"] == "missing":
        return f"missing field '{where}'"
    if not where:
        return "body must be a JSON object"
    return f"invalid value for '{where}': {err['msg']}"


async def _body(request: web.Request, model: type[B]) -> B:
    if request.content_type != "application/json":
        raise RejectedError(415, "content type must be application/json")
    raw = await request.read()  # larger than client_max_size: 413 from the app's middleware
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise RejectedError(400, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RejectedError(400, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RejectedError(400, _describe(exc)) from None


def _refused(exc: OperatorError) -> RejectedError:
    return RejectedError(exc.status, str(exc))


# ---- app state ----------------------------------------------------------------------------------------


@dataclass
class _State:
    hasher: PasswordHasher
    slots: asyncio.Semaphore


STATE_KEY = web.AppKey("operators_state", _State)


async def _verify(app: web.Application, stored: str | None, password: str) -> tuple[bool, bool]:
    state = app[STATE_KEY]
    async with state.slots:
        return await asyncio.to_thread(_verify_password, state.hasher, stored, password)


async def _hash(app: web.Application, password: str) -> str:
    state = app[STATE_KEY]
    async with state.slots:
        return await asyncio.to_thread(state.hasher.hash, password)


# ---- login lockout ------------------------------------------------------------------------------------


def _begin_attempt(db: sqlite_utils.Database, username: str, now: float, config: ServerConfig) -> tuple[float, bool]:
    """Count an attempt before the (slow) check, so parallel guesses cannot exceed the limit.

    Returns (seconds the caller must wait, or 0 to go ahead; whether this attempt started a lockout).
    A successful login clears the count (:func:`_clear_attempts`).
    """
    window = config.login_lockout_seconds
    with transaction(db.conn) as conn:
        conn.execute(
            "DELETE FROM login_failures WHERE last_attempt_at <= ? AND (locked_until IS NULL OR locked_until <= ?)",
            [now - window, now],
        )
        row = one(db, "SELECT failures, locked_until FROM login_failures WHERE username = ?", [username])
        if row is not None and row["locked_until"] is not None and row["locked_until"] > now:
            return row["locked_until"] - now, False
        failures = (row["failures"] if row is not None else 0) + 1
        locks = failures >= config.max_login_failures
        conn.execute(
            "INSERT INTO login_failures (username, failures, last_attempt_at, locked_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (username) DO UPDATE SET failures = excluded.failures,"
            " last_attempt_at = excluded.last_attempt_at, locked_until = excluded.locked_until",
            [username, 0 if locks else failures, now, now + window if locks else None],
        )
    return 0.0, locks


def _locked_out(wait: float) -> RejectedError:
    retry = str(max(1, math.ceil(wait)))
    return RejectedError(429, "too many failed attempts; try again later", headers={"Retry-After": retry})


def _fail_attempt(
    db: sqlite_utils.Database, request: web.Request, username: str, reason: str, locks: bool, action: str
) -> None:
    now, config = request.app[CLOCK_KEY](), request.app[CONFIG_KEY]
    actor = f"user:{username}"
    with transaction(db.conn):
        audit.record(
            db, actor=actor, action=action, target=actor, details={"reason": reason, "remote": request.remote}, now=now
        )
        if locks:
            details = {"seconds": config.login_lockout_seconds, "after_failures": config.max_login_failures}
            audit.record(db, actor="system", action="login.locked", target=actor, details=details, now=now)


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


async def login(request: web.Request) -> web.Response:
    body = await _body(request, LoginBody)
    app = request.app
    db, config = app[DB_KEY].db, app[CONFIG_KEY]
    username = body.username.lower()
    wait, locks = _begin_attempt(db, username, app[CLOCK_KEY](), config)
    if wait > 0:
        raise _locked_out(wait)
    row = one(db, "SELECT password_hash, role, disabled FROM operators WHERE username = ?", [username])
    stored = row["password_hash"] if row is not None else None
    ok, rehash = await _verify(app, stored, body.password)
    if not ok or row is None or row["disabled"]:
        reason = "unknown user" if row is None else ("wrong password" if not ok else "account disabled")
        _fail_attempt(db, request, username, reason, locks, "login.failure")
        raise RejectedError(401, "invalid username or password")
    new_hash = await _hash(app, body.password) if rehash else None
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = app[CLOCK_KEY]()
    with transaction(db.conn) as conn:
        current = one(db, "SELECT password_hash, role, disabled FROM operators WHERE username = ?", [username])
        if current is not None and not current["disabled"] and current["password_hash"] == stored:
            conn.execute("DELETE FROM login_failures WHERE username = ?", [username])
            conn.execute(
                "DELETE FROM sessions WHERE last_seen_at <= ? OR created_at <= ?",
                [now - config.session_idle_seconds, now - config.session_max_seconds],
            )
            old = request.cookies.get(COOKIE_NAME)
            if old:
                conn.execute("DELETE FROM sessions WHERE id_hash = ?", [sha256(old)])
            conn.execute(
                "INSERT INTO sessions (id_hash, username, csrf_token, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
                [sha256(session_id), username, csrf, now, now],
            )
            conn.execute(
                "UPDATE operators SET last_login_at = ?, password_hash = COALESCE(?, password_hash) WHERE username = ?",
                [now, new_hash, username],
            )
            details = {"remote": request.remote, "rehashed": new_hash is not None}
            actor = f"user:{username}"
            audit.record(db, actor=actor, action="login.success", target=actor, details=details, now=now)
    if current is None or current["disabled"] or current["password_hash"] != stored:
        raise RejectedError(401, "invalid username or password")  # disabled or changed while we were hashing
    response = web.json_response({"username": username, "role": current["role"], "csrf_token": csrf})
    _set_cookie(response, config, session_id)
    return response


async def whoami(request: web.Request) -> web.Response:
    principal, session = authenticate(request)
    body: dict[str, Any] = {
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
    db, config, now = request.app[DB_KEY].db, request.app[CONFIG_KEY], request.app[CLOCK_KEY]()
    with transaction(db.conn) as conn:
        conn.execute("DELETE FROM sessions WHERE id_hash = ?", [session.id_hash])
        audit.record(db, actor=principal.actor, action="logout", target=principal.actor, now=now)
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE_NAME, path="/", secure=not config.insecure_http, httponly=True, samesite="Strict")
    return response


async def change_password(request: web.Request) -> web.Response:
    principal, session = require_session(request)
    body = await _body(request, PasswordChangeBody)
    app = request.app
    db, config = app[DB_KEY].db, app[CONFIG_KEY]
    username = principal.username
    assert username is not None
    wait, locks = _begin_attempt(db, username, app[CLOCK_KEY](), config)
    if wait > 0:
        raise _locked_out(wait)
    row = one(db, "SELECT password_hash FROM operators WHERE username = ?", [username])
    stored = row["password_hash"] if row is not None else None
    ok, _ = await _verify(app, stored, body.current_password)
    if not ok:
        _fail_attempt(db, request, username, "wrong current password", locks, "password.change_failure")
        raise RejectedError(403, "current password is wrong")
    if body.new_password == body.current_password:
        raise RejectedError(400, "the new password must differ from the current one")
    new_hash = await _hash(app, body.new_password)
    now = app[CLOCK_KEY]()
    with transaction(db.conn) as conn:
        cur = conn.execute(
            "UPDATE operators SET password_hash = ?, password_changed_at = ?, updated_at = ?"
            " WHERE username = ? AND password_hash = ? AND disabled = 0",
            [new_hash, now, now, username, stored],
        )
        if cur.rowcount != 1:
            raise RejectedError(409, "the account changed meanwhile; try again")
        conn.execute("DELETE FROM login_failures WHERE username = ?", [username])
        # Other sessions (perhaps an attacker's) end; this one stays.
        conn.execute("DELETE FROM sessions WHERE username = ? AND id_hash != ?", [username, session.id_hash])
        audit.record(db, actor=principal.actor, action="password.change", target=principal.actor, now=now)
    return web.json_response({"username": username, "password_changed_at": now})


# ---- operator routes ----------------------------------------------------------------------------------


async def get_operators(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response({"operators": list_operators(request.app[DB_KEY].db)})


async def post_operator(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await _body(request, NewOperatorBody)
    db = request.app[DB_KEY].db
    if one(db, "SELECT 1 AS x FROM operators WHERE username = ?", [body.username]) is not None:
        raise RejectedError(409, f"operator '{body.username}' already exists")
    password_hash = await _hash(request.app, body.password)
    try:
        _insert_operator(db, body.username, password_hash, body.role, request.app[CLOCK_KEY](), principal.actor)
    except OperatorError as exc:
        raise _refused(exc) from None
    return web.json_response({"username": body.username, "role": body.role, "disabled": False}, status=201)


async def patch_operator(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await _body(request, OperatorPatchBody)
    if body.role is None and body.disabled is None and body.password is None:
        raise RejectedError(400, "nothing to change: give role, disabled or password")
    password_hash = await _hash(request.app, body.password) if body.password is not None else None
    try:
        view = _apply_update(
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


async def get_api_tokens(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response({"api_tokens": list_api_tokens(request.app[DB_KEY].db)})


async def post_api_token(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await _body(request, NewTokenBody)
    now = request.app[CLOCK_KEY]()
    expires_at = now + body.expires_in_seconds if body.expires_in_seconds is not None else None
    try:
        token = create_api_token(request.app[DB_KEY].db, body.name, body.role, principal.actor, now, expires_at)
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
        revoke_api_token(request.app[DB_KEY].db, token_id, actor=principal.actor, now=now)
    except OperatorError as exc:
        raise _refused(exc) from None
    return web.json_response({"id": token_id, "revoked_at": now})


# ---- audit routes -------------------------------------------------------------------------------------

_AUDIT_PARAMS = frozenset({"actor", "action", "target", "q", "since", "until", "limit", "before"})


async def get_audit(request: web.Request) -> web.Response:
    await require(request, "operator")
    check_query_params(request, _AUDIT_PARAMS)
    limit = query_number(request, "limit", int)
    limit = 100 if limit is None else limit
    if not 1 <= limit <= AUDIT_PAGE_LIMIT:
        raise RejectedError(400, f"limit must be between 1 and {AUDIT_PAGE_LIMIT}")
    before = query_number(request, "before", int)
    entries = audit.query(
        request.app[DB_KEY].db,
        actor=request.query.get("actor") or None,
        action=request.query.get("action") or None,
        target=request.query.get("target") or None,
        text=request.query.get("q") or None,
        since=query_number(request, "since", float),
        until=query_number(request, "until", float),
        limit=limit,
        before_seq=before,
    )
    next_before = entries[-1]["seq"] if len(entries) == limit else None
    return web.json_response({"entries": entries, "next_before": next_before})


async def get_audit_verify(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response(audit.verify(request.app[DB_KEY].db).as_dict())


def setup(app: web.Application) -> None:
    """Add the session, operator, API token and audit routes to ``app``."""
    config = app[CONFIG_KEY]
    app[STATE_KEY] = _State(hasher(config), asyncio.Semaphore(HASHING_SLOTS))
    _dummy_hash(config.password_time_cost, config.password_memory_kib)  # now, not during the first login
    app.router.add_post("/api/v1/session", login)
    app.router.add_get("/api/v1/session", whoami)
    app.router.add_delete("/api/v1/session", logout)
    app.router.add_post("/api/v1/session/password", change_password)
    app.router.add_get("/api/v1/operators", get_operators)
    app.router.add_post("/api/v1/operators", post_operator)
    app.router.add_patch("/api/v1/operators/{username}", patch_operator)
    app.router.add_get("/api/v1/api-tokens", get_api_tokens)
    app.router.add_post("/api/v1/api-tokens", post_api_token)
    app.router.add_delete("/api/v1/api-tokens/{id}", delete_api_token)
    app.router.add_get("/api/v1/audit", get_audit)
    app.router.add_get("/api/v1/audit/verify", get_audit_verify)
