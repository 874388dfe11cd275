"""The fleet server's configuration (one validated model; file + WARDSIGHT_SERVER_* overrides)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from wardsight.settings import StrictModel, load_config

ENV_PREFIX = "WARDSIGHT_SERVER_"


class ServerConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address to bind; loopback by default.")
    port: Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 picks a free one.")] = 8765
    database: Path | None = Field(None, description="SQLite file; default <data dir>/fleet.db.")
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        1, description="Server processes on the port (SO_REUSEPORT); more than one needs database_url (PostgreSQL)."
    )
    database_url: str | None = Field(
        None,
        description="PostgreSQL instead of the SQLite file: postgresql://user@host:port/dbname (a password is"
        " better kept in ~/.pgpass or PGPASSWORD than here). Unset: SQLite.",
    )
    token_ttl_seconds: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] = 3600
    max_body_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    console_refresh_seconds: Annotated[float, Field(ge=0.5, le=300)] = 2.0
    keys_dir: Path | None = Field(None, description="Server keys and the fleet CA; default <data dir>/fleet-keys.")
    ota_dir: Path | None = Field(
        None, description="The OTA repository's files; default <data dir>/ota (several hosts: a shared directory)."
    )

    # TLS (the fleet's own CA by default); plain HTTP only with this explicit development flag.
    insecure_http: bool = False
    tls_hostnames: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"])
    public_url: str | None = Field(None, description="URL devices reach this server at (written into bundles).")

    # Connections, below HTTP (fleet.web.connections): slow clients are cut off, one address holds a few sockets.
    # Waiting for a response (the jobs long poll, the alert stream) is not slow: only a request's arrival is timed.
    header_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        10.0, description="A request's line and headers must arrive within this (408 if some of it came)."
    )
    body_idle_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        30.0, description="A request body that sends nothing for this long is cut off (408)."
    )
    body_min_bytes_per_second: Annotated[int, Field(ge=0, le=1024**3)] = Field(
        500, description="After its first body_idle_timeout_seconds a body must average this (0: no minimum)."
    )
    tls_handshake_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    keepalive_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        75.0, description="An idle connection between requests is closed after this."
    )
    max_connections_per_address: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        32, description="Open connections one client address may hold (0: no cap); more are closed at accept."
    )
    connection_cap_exempt: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks the per-address cap does not apply to (this machine: a local reverse proxy, tools).",
    )

    # Live alert streams (fleet.alerts.streams): a "token" is one login session or one API token.
    alert_streams_per_token: Annotated[int, Field(ge=1, le=1000)] = 4
    alert_streams_per_account: Annotated[int, Field(ge=1, le=1000)] = 8
    alert_streams_max: Annotated[int, Field(ge=1, le=100_000)] = 200
    alert_streams_admin_reserve: Annotated[int, Field(ge=0, le=100_000)] = Field(
        20, description="Streams only admins may open: viewers and operators share alert_streams_max minus this."
    )

    # Device identity.
    require_approval: bool = Field(False, description="New devices wait as pending until an operator approves.")
    credential_ttl_seconds: Annotated[int, Field(ge=300, le=30 * 24 * 3600)] = 24 * 3600
    nonce_ttl_seconds: Annotated[int, Field(ge=10, le=3600)] = 300

    # Health.
    offline_grace_seconds: Annotated[float, Field(ge=5, le=24 * 3600)] = 90.0
    offline_check_seconds: Annotated[float, Field(ge=0.05, le=600)] = 5.0

    # Operators.
    session_idle_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 30 * 60
    session_max_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = 12 * 3600
    password_memory_kib: Annotated[int, Field(ge=1024, le=4 * 1024 * 1024)] = 64 * 1024  # argon2id
    password_time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    max_login_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_seconds: Annotated[int, Field(ge=1, le=24 * 3600)] = 300

    # Webhook delivery (Standard Webhooks schedule by default: now, 5 s, 5 min, 30 min, 2, 5, 10, 14, 20, 24 h).
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 15.0
    webhook_retry_schedule: list[Annotated[float, Field(ge=0, le=7 * 24 * 3600)]] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0],
        min_length=1,
    )
    webhook_allow_insecure: bool = Field(
        False, description="Development only: allow http:// and loopback webhook targets."
    )

    @field_validator("connection_cap_exempt")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network: {network!r}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url must start with postgresql:// (SQLite is the 'database' file setting)")
        return value

    @property
    def store_location(self) -> Path | str:
        """Where the fleet database is: the PostgreSQL URL if set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url
        if self.database is None:
            raise ValueError("config.database must be set (load_server_config sets it)")
        return self.database

    @model_validator(mode="after")
    def _reserve_below_max(self) -> Self:
        if self.alert_streams_admin_reserve >= self.alert_streams_max:
            raise ValueError("alert_streams_admin_reserve must be below alert_streams_max")
        return self


def load_server_config(data_dir: Path, path: Path | None, environ: Mapping[str, str]) -> ServerConfig:
    """Load ``path`` (or ``<data dir>/server.toml`` if it exists) with environment overrides."""
    if path is None and (data_dir / "server.toml").is_file():
        path = data_dir / "server.toml"
    config = load_config(ServerConfig, path=path, env_prefix=ENV_PREFIX, environ=environ)
    if config.database is None:
        config.database = data_dir / "fleet.db"
    elif not config.database.is_absolute():
        config.database = data_dir / config.database
    if config.ota_dir is not None and not config.ota_dir.is_absolute():
        config.ota_dir = data_dir / config.ota_dir
    if config.keys_dir is None:
        config.keys_dir = data_dir / "fleet-keys"
    elif not config.keys_dir.is_absolute():
        config.keys_dir = data_dir / config.keys_dir
    return config
