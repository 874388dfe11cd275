"""Sign-in throttling decisions: counters and a clock in, a decision out (no I/O; :mod:`fleet.accounts.lockout`
keeps the counters).

Failed sign-ins are counted three ways, each with its own *scope*:

- ``account+address``: one account from one client address (the real user's typos, or one attacker's guesses);
- ``address``: one client address across all accounts (password spraying);
- ``account``: one account from every address (guessing spread over many addresses).

A scope's first failures are free; from its threshold on, each failure makes the next attempt in that scope wait
1 s, 2 s, 4 s, ... up to a cap, and an attempt that comes too early is refused (429 with Retry-After) without
being checked or counted. Every such wait is a *lockout*; each one started is an audit entry.

The ``account+address`` scope applies to everyone. The ``address`` and ``account`` scopes neither judge nor count
an attempt from an address the account signed in from recently (a *known* address): failures from elsewhere, or
someone spraying from elsewhere, never keep the real user out where they signed in before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from fleet.config import ServerConfig

Scope = Literal["account+address", "address", "account"]
SCOPES: tuple[Scope, ...] = ("account+address", "address", "account")
EXEMPT_WHEN_KNOWN: frozenset[Scope] = frozenset({"address", "account"})

SCOPE_FACTOR = 4  # the address and account scopes allow this many times the per-pair free failures
LOCKED_MEMORY_SECONDS = 24 * 3600.0  # a scope that reached a lockout keeps its count this long after it
KNOWN_ADDRESS_SECONDS = 90 * 24 * 3600.0  # a successful sign-in address stays known this long
KNOWN_ADDRESSES_PER_ACCOUNT = 16


@dataclass(frozen=True)
class Policy:
    free: dict[Scope, int]  # failures before the first wait, per scope
    max_wait: float  # the cap on a wait (seconds)
    quiet: float  # failures that never caused a lockout are forgotten after this long without one

    @classmethod
    def from_config(cls, config: ServerConfig) -> Policy:
        """``max_login_failures`` free failures per account and address (four times that per address and per
        account), waits capped at ``login_lockout_seconds``, which is also how long failures below the threshold
        are remembered."""
        pair, wide = config.max_login_failures, config.max_login_failures * SCOPE_FACTOR
        free: dict[Scope, int] = {"account+address": pair, "address": wide, "account": wide}
        return cls(free=free, max_wait=float(config.login_lockout_seconds), quiet=float(config.login_lockout_seconds))


@dataclass(frozen=True)
class Counter:
    """One scope's failures: how many, when the last was counted, and until when the scope waits (None: free)."""

    failures: int
    last_failure_at: float
    locked_until: float | None = None


def wait_after(failures: int, free: int, cap: float) -> float:
    """How long the next attempt waits after ``failures`` (0 below ``free``; then 1, 2, 4 ... s, at most ``cap``)."""
    if failures < free:
        return 0.0
    return float(min(cap, 2.0 ** min(failures - free, 62)))


def forget_before(now: float, policy: Policy) -> tuple[float, float]:
    """When counters are dropped: (a counter that never locked, last failure at or before this; one that locked,
    its last lockout ended at or before this). A lockout is remembered for a day, so waiting one out does not
    make the next guesses free again."""
    return now - policy.quiet, now - max(policy.quiet, LOCKED_MEMORY_SECONDS)


def applies(scope: Scope, known: bool) -> bool:
    """Whether ``scope`` judges (and counts) an attempt from an address that is ``known`` for its account."""
    return not (known and scope in EXEMPT_WHEN_KNOWN)


def wait(counters: dict[Scope, Counter | None], now: float) -> float:
    """Seconds the attempt must still wait (0: go ahead): the longest lockout among ``counters`` (the scopes
    that apply)."""
    waits = [0.0]
    for counter in counters.values():
        if counter is not None and counter.locked_until is not None:
            waits.append(counter.locked_until - now)
    return max(waits)


def count(counter: Counter | None, scope: Scope, now: float, policy: Policy) -> tuple[Counter, float | None]:
    """Count one attempt (before its check, so parallel guesses cannot exceed the limit): the new counter, and
    the end of the lockout this starts (None if it starts none)."""
    failures = (counter.failures if counter is not None else 0) + 1
    delay = wait_after(failures, policy.free[scope], policy.max_wait)
    if delay <= 0:
        return Counter(failures, now, counter.locked_until if counter is not None else None), None
    return Counter(failures, now, now + delay), now + delay


def uncount(current: Counter, counted: Counter, prior: Counter | None, scope: Scope, policy: Policy) -> Counter | None:
    """Take back an attempt that :func:`count` turned from ``prior`` into ``counted`` and that turned out to be the
    right password: ``prior`` again if nothing else was counted since, else ``current`` with one failure less."""
    if current == counted:
        return prior
    failures = max(0, current.failures - 1)
    delay = wait_after(failures, policy.free[scope], policy.max_wait)
    if delay <= 0:
        return replace(current, failures=failures, locked_until=None)
    return replace(current, failures=failures, locked_until=current.last_failure_at + delay)
