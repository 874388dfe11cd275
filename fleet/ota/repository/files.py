"""Where a fleet server's OTA repository lives (``<data dir>/ota``) and how the app holds it (and who
hears of what it publishes).

:func:`bundle_root` gives the root metadata enrollment bundles carry (``Bundle.tuf_root``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from tuf.api.metadata import TargetFile

from fleet.config import ServerConfig
from fleet.ota.repository.keys import load_online_keys
from fleet.ota.repository.metadata import Repository
from fleet.store.connection import Database

OTA_DIR = "ota"
REPOSITORY_KEY = web.AppKey("ota_repository", Repository)
# Told (db, published targets, actor, now) after signed targets metadata was accepted (the model library listens).
OnPublished = Callable[[Database, dict[str, TargetFile], str, float], None]
ON_PUBLISHED_KEY: web.AppKey[list[OnPublished]] = web.AppKey("ota_on_published")


def ota_dir(config: ServerConfig) -> Path:
    """``ota_dir`` if set (a directory every worker shares), else ``<data dir>/ota``, next to the database."""
    if config.ota_dir is not None:
        return config.ota_dir
    if config.database is None:
        raise ValueError("config.database must be set (load_server_config sets it)")
    return config.database.parent / OTA_DIR


def open_repository(config: ServerConfig) -> Repository:
    """The repository of a server config (loads or makes the online keys in its keys directory)."""
    keys_dir = config.keys_dir or ota_dir(config).parent / "fleet-keys"
    return Repository(ota_dir(config), load_online_keys(keys_dir))


def bundle_root(source: web.Application | ServerConfig | Path) -> str | None:
    """The current root.json text for enrollment bundles (``Bundle.tuf_root``), None before ``ota init``.

    ``source`` is the app, its config, or the server's data directory (the one holding ``fleet.db``).
    """
    if isinstance(source, web.Application):
        directory = source[REPOSITORY_KEY].directory
    elif isinstance(source, ServerConfig):
        directory = ota_dir(source)
    else:
        directory = source / OTA_DIR
    try:
        return (directory / "metadata" / "root.json").read_text("utf-8")
    except FileNotFoundError:
        return None


def published_check(repo: Repository) -> Callable[[Database, str], bool]:
    """For rollouts (``fleet.ota.rollouts.appkeys.TARGET_CHECK_KEY``): a version may be rolled out only once
    signed targets metadata lists it."""

    def check(db: Database, target: str) -> bool:
        return target in repo.published()

    return check
