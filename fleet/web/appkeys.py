"""Typed keys for what the fleet application holds (database, config, clock), shared by its route modules."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from fleet.config import ServerConfig
from fleet.keys import ServerKeys
from fleet.store.db import FleetDB

Clock = Callable[[], float]
DB_KEY = web.AppKey("db", FleetDB)
CONFIG_KEY = web.AppKey("config", ServerConfig)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock")
KEYS_KEY = web.AppKey("keys", ServerKeys)
