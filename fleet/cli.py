"""``wardsight fleet``: run the server and administer enrollment tokens, devices and events."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import click

from fleet import tokens
from fleet.config import ServerConfig, load_server_config
from fleet.db import FleetDB
from fleet.server import BackgroundServer
from wardsight import wire
from wardsight.clictx import Context, pass_context
from wardsight.errors import WardSightError

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Server config file (TOML; default <data dir>/server.toml if present).",
)


def _config(ctx: Context, config_path: Path | None) -> ServerConfig:
    return load_server_config(ctx.data_dir, config_path, ctx.environ)


def _db(config: ServerConfig) -> FleetDB:
    assert config.database is not None
    return FleetDB(config.database)


def create_token(config: ServerConfig, room: str, ttl: float | None, now: float | None = None) -> str:
    """Create and store a one-time token for ``room``; return the plaintext (shown once, never stored)."""
    if not wire.is_identifier(room):
        raise WardSightError(f"room '{room}' must be 1-64 letters, digits or _.:- characters")
    plaintext, record = tokens.new_token(
        room, time.time() if now is None else now, ttl if ttl is not None else config.token_ttl_seconds
    )
    db = _db(config)
    try:
        db.add_token(record)
    finally:
        db.close()
    return plaintext


@click.group()
def fleet() -> None:
    """The fleet server: enrollment, signed event intake and the web console.

    \b
    Example:
        wardsight fleet serve --port 8765
    """


@fleet.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="TCP port (default 8765).")
@config_option
@pass_context
def serve(ctx: Context, host: str | None, port: int | None, config_path: Path | None) -> None:
    """Run the fleet server until Ctrl-C.

    \b
    Example:
        wardsight fleet serve
        WARDSIGHT_SERVER_PORT=9000 wardsight fleet serve
    """
    config = _config(ctx, config_path)
    if host is not None:
        config.host = host
    if port is not None:
        config.port = port
    try:
        server = BackgroundServer(config).start()
    except OSError as exc:
        raise WardSightError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    click.echo(f"fleet server on {server.url} (console: {server.url}/), database {config.database}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@fleet.group()
def token() -> None:
    """One-time, expiring enrollment tokens.

    \b
    Example:
        wardsight fleet token create --room 3B-12
    """


@token.command("create")
@click.option("--room", required=True, help="Room the enrolled device will belong to.")
@click.option("--ttl", type=click.IntRange(1, 30 * 24 * 3600), default=None, help="Lifetime in seconds.")
@config_option
@pass_context
def token_create(ctx: Context, room: str, ttl: int | None, config_path: Path | None) -> None:
    """Create a one-time enrollment token for a room and print it (it is stored only hashed).

    \b
    Example:
        wardsight fleet token create --room 3B-12 --ttl 3600
    """
    click.echo(create_token(_config(ctx, config_path), room, ttl))


@fleet.command()
@config_option
@pass_context
def devices(ctx: Context, config_path: Path | None) -> None:
    """List enrolled devices as JSON lines.

    \b
    Example:
        wardsight fleet devices
    """
    db = _db(_config(ctx, config_path))
    try:
        for row in db.list_devices():
            click.echo(json.dumps(row))
    finally:
        db.close()


@fleet.command()
@click.option("--limit", type=click.IntRange(1, 10000), default=20, help="How many, newest first.")
@config_option
@pass_context
def events(ctx: Context, limit: int, config_path: Path | None) -> None:
    """List recent events as JSON lines, newest first.

    \b
    Example:
        wardsight fleet events --limit 50
    """
    db = _db(_config(ctx, config_path))
    try:
        for row in db.recent_events(limit):
            click.echo(json.dumps(row))
    finally:
        db.close()
