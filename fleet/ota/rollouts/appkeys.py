"""What the rollouts keep on the fleet application: how to check a target exists, and when devices polled."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from fleet.store.connection import Database

TargetCheck = Callable[[Database, str], "bool | None"]
TARGET_CHECK_KEY: web.AppKey[TargetCheck] = web.AppKey("rollout_target_check")
UPDATE_POLLS_KEY: web.AppKey[dict[str, float]] = web.AppKey("update_polls")  # device -> last offer poll
SYSTEM_POLLS_KEY: web.AppKey[dict[str, bool]] = web.AppKey("system_polls")  # device -> its last poll took system ones


def no_library(db: Database, target: str) -> bool | None:
    """The default target check until a model library is wired in: it cannot tell (None)."""
    return None
