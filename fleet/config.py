"""The fleet server's configuration (one validated model; file + WARDSIGHT_SERVER_* overrides)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field

from wardsight.settings import StrictModel, load_config

ENV_PREFIX = "WARDSIGHT_SERVER_"


class ServerConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address to bind; loopback by default.")
    port: Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 picks a free one.")] = 8765
    database: Path | None = Field(None, description="SQLite file; default <data dir>/fleet.db.")
    token_ttl_seconds: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] = 3600
    max_body_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    console_refresh_seconds: Annotated[float, Field(ge=0.5, le=300)] = 2.0


def load_server_config(data_dir: Path, path: Path | None, environ: Mapping[str, str]) -> ServerConfig:
    """Load ``path`` (or ``<data dir>/server.toml`` if it exists) with environment overrides."""
    if path is None and (data_dir / "server.toml").is_file():
        path = data_dir / "server.toml"
    config = load_config(ServerConfig, path=path, env_prefix=ENV_PREFIX, environ=environ)
    if config.database is None:
        config.database = data_dir / "fleet.db"
    elif not config.database.is_absolute():
        config.database = data_dir / config.database
    return config
