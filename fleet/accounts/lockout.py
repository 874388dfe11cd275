"""Failed sign-ins and known addresses, kept in the ``login_failures`` table (the decisions are
:mod:`fleet.accounts.throttle`'s).

The table's ``username`` column holds a key, not a user name:

- ``pair:<h(account, network)>``, ``addr:<h(network)>``, ``acct:<h(account)>``: the three scopes' counters
  (``failures``; ``last_attempt_at``, the last counted failure; ``locked_until``);
- ``known:<h(account)>:<h(account, network)>``: a known address (``last_attempt_at``, its last successful
  sign-in), at most :data:`~fleet.accounts.throttle.KNOWN_ADDRESSES_PER_ACCOUNT` per account, for 90 days.

``h`` is HMAC-SHA256 under a key derived from the server's credential signing key, so the table holds neither
addresses nor attempted names (sometimes a password typed in the wrong field) in the clear, and a copy of the
database alone does not give them back. A client's *network* is its IPv4 address, or the /64 of its IPv6
address (one host usually holds a whole /64); an IPv4-mapped IPv6 address counts as IPv4.

Each attempt is counted before the (slow) password check, in one transaction with the decision, so parallel
guesses cannot exceed the limits; the right password takes its count back (:func:`signed_in`). Unknown
usernames are throttled exactly like real ones.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from fleet.accounts import throttle
from fleet.accounts.throttle import Counter, Policy, Scope
from fleet.audit import log as audit
from fleet.keys import ServerKeys
from fleet.store.connection import Connection, Database
from fleet.store.schema import transaction
from fleet.web.appkeys import CONFIG_KEY, KEYS_KEY

_KNOWN = "known:"


@dataclass(frozen=True)
class Throttle:
    """The app's throttling: the HMAC key for the table's keys and the policy from the config."""

    secret: bytes = field(repr=False)
    policy: Policy

    def digest(self, *parts: str) -> str:
        message = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]


THROTTLE_KEY = web.AppKey("login_throttle", Throttle)


def derive_secret(keys: ServerKeys) -> bytes:
    raw = keys.credentials.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return hashlib.sha256(b"wardsight login throttle v1\0" + raw).digest()


def install(app: web.Application) -> None:
    """Put the app's :class:`Throttle` under :data:`THROTTLE_KEY` (after the config and keys are set)."""
    app[THROTTLE_KEY] = Throttle(derive_secret(app[KEYS_KEY]), Policy.from_config(app[CONFIG_KEY]))


def client_network(remote: str | None) -> str:
    """The network a client counts as (see the module docstring); the text itself if it is no IP address."""
    text = (remote or "unknown").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class Attempt:
    """One sign-in attempt: who, from where, its keys, and what counting it did."""

    account: str
    remote: str | None
    keys: dict[Scope, str]
    known_key: str
    known: bool = False
    wait: float = 0.0  # > 0: refused, nothing counted
    counted: dict[Scope, tuple[Counter | None, Counter]] = field(default_factory=dict)  # (before, after)
    lockouts: dict[Scope, float] = field(default_factory=dict)  # started if this attempt fails: scope -> until


def _attempt(guard: Throttle, account: str, remote: str | None) -> Attempt:
    network = client_network(remote)
    keys: dict[Scope, str] = {
        "account+address": "pair:" + guard.digest(account, network),
        "address": "addr:" + guard.digest(network),
        "account": "acct:" + guard.digest(account),
    }
    known_key = f"{_KNOWN}{guard.digest(account)}:{guard.digest(account, network)}"
    return Attempt(account, remote, keys, known_key)


def _read(conn: Connection, key: str) -> Counter | None:
    row = conn.execute(
        "SELECT failures, last_attempt_at, locked_until FROM login_failures WHERE username = ?", [key]
    ).fetchone()
    return Counter(int(row[0]), float(row[1]), row[2]) if row is not None else None


def _write(conn: Connection, key: str, counter: Counter | None) -> None:
    if counter is None:
        conn.execute("DELETE FROM login_failures WHERE username = ?", [key])
        return
    conn.execute(
        "INSERT INTO login_failures (username, failures, last_attempt_at, locked_until) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (username) DO UPDATE SET failures = excluded.failures,"
        " last_attempt_at = excluded.last_attempt_at, locked_until = excluded.locked_until",
        [key, counter.failures, counter.last_failure_at, counter.locked_until],
    )


def _forget(conn: Connection, now: float, policy: Policy) -> None:
    unlocked_before, locked_before = throttle.forget_before(now, policy)
    conn.execute(
        "DELETE FROM login_failures WHERE username NOT LIKE 'known:%'"
        " AND ((locked_until IS NULL AND last_attempt_at <= ?) OR locked_until <= ?)",
        [unlocked_before, locked_before],
    )
    conn.execute(
        "DELETE FROM login_failures WHERE username LIKE 'known:%' AND last_attempt_at <= ?",
        [now - throttle.KNOWN_ADDRESS_SECONDS],
    )


def begin_attempt(db: Database, guard: Throttle, account: str, remote: str | None, now: float) -> Attempt:
    """Judge and count an attempt for ``account`` from ``remote`` before its (slow) check.

    ``wait`` > 0 means refuse it (nothing counted); otherwise it is counted in every scope that applies, and
    ``lockouts`` says which lockouts start if it fails (:func:`record_failure` audits them).
    """
    attempt = _attempt(guard, account, remote)
    with transaction(db.conn) as conn:
        _forget(conn, now, guard.policy)
        attempt.known = _read(conn, attempt.known_key) is not None
        scopes = [scope for scope in throttle.SCOPES if throttle.applies(scope, attempt.known)]
        before = {scope: _read(conn, attempt.keys[scope]) for scope in scopes}
        attempt.wait = throttle.wait(before, now)
        if attempt.wait > 0:
            return attempt
        for scope in scopes:
            after, until = throttle.count(before[scope], scope, now, guard.policy)
            _write(conn, attempt.keys[scope], after)
            attempt.counted[scope] = (before[scope], after)
            if until is not None:
                attempt.lockouts[scope] = until
    return attempt


def signed_in(conn: Connection, guard: Throttle, attempt: Attempt, now: float) -> None:
    """The attempt had the right password (inside the caller's transaction): its account's failures from this
    address are forgotten, its count is taken back from the other scopes, and the address becomes known."""
    for scope, (before, after) in attempt.counted.items():
        key = attempt.keys[scope]
        current = _read(conn, key)
        if scope == "account+address" or current is None:
            _write(conn, key, None)
        else:
            _write(conn, key, throttle.uncount(current, after, before, scope, guard.policy))
    _write(conn, attempt.known_key, Counter(0, now))
    prefix = attempt.known_key.rsplit(":", 1)[0] + ":"
    conn.execute(
        "DELETE FROM login_failures WHERE username LIKE ? AND username NOT IN (SELECT username FROM login_failures"
        " WHERE username LIKE ? ORDER BY last_attempt_at DESC LIMIT ?)",
        [prefix + "%", prefix + "%", throttle.KNOWN_ADDRESSES_PER_ACCOUNT],
    )


def record_failure(db: Database, attempt: Attempt, *, reason: str, action: str, now: float) -> None:
    """Audit a failed attempt (``action``) and, if it started lockouts, one ``login.locked`` entry naming the
    account, the address and until when (per scope too)."""
    actor = f"user:{attempt.account}"
    with transaction(db.conn):
        details = {"reason": reason, "remote": attempt.remote}
        audit.record(db, actor=actor, action=action, target=actor, details=details, now=now)
        if attempt.lockouts:
            locked = {
                "account": attempt.account,
                "address": attempt.remote,
                "until": max(attempt.lockouts.values()),
                "scopes": dict(attempt.lockouts),
                "failures": {scope: attempt.counted[scope][1].failures for scope in attempt.lockouts},
            }
            audit.record(db, actor="system", action="login.locked", target=actor, details=locked, now=now)
