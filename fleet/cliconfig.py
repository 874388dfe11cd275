"""What every ``wardsight fleet ...`` command shares: the ``--config`` option, the server configuration it
names (with the data directory and the environment), and the database that configuration points at.

The fleet's own commands (:mod:`fleet.cli`) and a feature's commands (``fleet.accounts.cli``) both use it.
"""

from __future__ import annotations

from pathlib import Path

from fleet.config import ServerConfig, load_server_config
from fleet.store.db import FleetDB
from wardsight import clictx
from wardsight.clictx import Context

config_option = clictx.config_option("Server config file (TOML; default <data dir>/server.toml if present).")


def load_config(ctx: Context, config_path: Path | None) -> ServerConfig:
    """The server configuration for a command: ``--config``, else ``<data dir>/server.toml``, then the environment."""
    return load_server_config(ctx.data_dir, config_path, ctx.environ)


def open_db(config: ServerConfig) -> FleetDB:
    """The fleet database ``config`` names (the caller closes it)."""
    assert config.database is not None
    return FleetDB(config.store_location)
