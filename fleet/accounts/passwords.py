"""Passwords: argon2id with the config's costs, at least 12 characters, hashed off the event loop.

Hashing is memory-hard (each computation takes ``password_memory_kib``), so the server runs at most
:data:`HASHING_SLOTS` at a time on worker threads (:func:`install` puts the slots on the app). An unknown
username costs a hash too (against a dummy hash), so timing does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fleet.accounts.rules import OperatorError
from fleet.config import ServerConfig
from fleet.web.appkeys import CONFIG_KEY

log = logging.getLogger("wardsight.fleet.operators")

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
HASHING_SLOTS = 2  # concurrent argon2 computations (memory-hard: each takes password_memory_kib)


def hasher(config: ServerConfig) -> PasswordHasher:
    """argon2id with the config's costs (other parameters: argon2-cffi's RFC 9106 defaults)."""
    return PasswordHasher(time_cost=config.password_time_cost, memory_cost=config.password_memory_kib)


def validate_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(400, f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise OperatorError(400, f"password must be at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str, config: ServerConfig) -> str:
    """Validate and hash ``password`` (slow on purpose: call it off the event loop)."""
    validate_password(password)
    return hasher(config).hash(password)


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_cost: int) -> str:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost).hash(secrets.token_urlsafe(16))


def verify_password(ph: PasswordHasher, stored: str | None, password: str) -> tuple[bool, bool]:
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


# ---- on the server: worker threads, at most HASHING_SLOTS at a time --------------------------------------


@dataclass
class HashingState:
    hasher: PasswordHasher
    slots: asyncio.Semaphore


STATE_KEY = web.AppKey("operators_state", HashingState)


def install(app: web.Application) -> None:
    """Put the hasher and its slots on ``app`` and make the dummy hash now, not during the first login."""
    config = app[CONFIG_KEY]
    app[STATE_KEY] = HashingState(hasher(config), asyncio.Semaphore(HASHING_SLOTS))
    _dummy_hash(config.password_time_cost, config.password_memory_kib)


async def verify_in_worker(app: web.Application, stored: str | None, password: str) -> tuple[bool, bool]:
    """:func:`verify_password` on a worker thread, in one of the app's hashing slots."""
    state = app[STATE_KEY]
    async with state.slots:
        return await asyncio.to_thread(verify_password, state.hasher, stored, password)


async def hash_in_worker(app: web.Application, password: str) -> str:
    """Hash an already validated ``password`` on a worker thread, in one of the app's hashing slots."""
    state = app[STATE_KEY]
    async with state.slots:
        return await asyncio.to_thread(state.hasher.hash, password)
