"""``wardsight fleet``: run the server and administer enrollment tokens, devices and events."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from fleet.audit.log import cli_actor
from fleet.audit.log import verify as verify_audit_chain
from fleet.cliconfig import config_option, load_config, open_db
from fleet.config import ServerConfig
from fleet.devices import service as device_service
from fleet.enrollment import service as enrollment_service
from fleet.enrollment.bundle_url import bundle_server_url, bundle_url_warnings
from fleet.ota.repository.files import bundle_root
from fleet.pki import CA_CERT
from fleet.server import keys_dir, running_server, serve_forever
from fleet.store.transfer_cli import add_transfer_commands
from fleet.workers import serve_workers
from wardsight import wire
from wardsight.bundle import Bundle
from wardsight.clictx import Context, pass_context
from wardsight.errors import WardSightError


def create_token(
    config: ServerConfig,
    room: str,
    ttl: float | None,
    now: float | None = None,
    *,
    site: str | None = None,
    ward: str | None = None,
    require_approval: bool = False,
) -> str:
    """Create and store a one-time token for a room; return the plaintext (shown once, never stored)."""
    for what, value in (("room", room), ("site", site), ("ward", ward)):
        if value is not None and not wire.is_identifier(value):
            raise WardSightError(f"{what} '{value}' must be 1-64 letters, digits or _.:- characters")
    now = time.time() if now is None else now
    db = open_db(config)
    try:
        plaintext, _ = enrollment_service.create_token(
            db,
            config,
            room,
            actor=cli_actor(),
            now=now,
            ttl=ttl,
            site=site,
            ward=ward,
            require_approval=require_approval,
        )
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
@click.option("--insecure-http", is_flag=True, help="Development only: serve plain HTTP instead of TLS.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Server processes sharing the port (default 1; more need PostgreSQL: database_url).",
)
@config_option
@pass_context
def serve(
    ctx: Context, host: str | None, port: int | None, insecure_http: bool, workers: int | None, config_path: Path | None
) -> None:
    """Run the fleet server until Ctrl-C.

    \b
    Example:
        wardsight fleet serve
        WARDSIGHT_SERVER_PORT=9000 wardsight fleet serve
        wardsight fleet serve --workers 4        # with database_url = "postgresql://..." in server.toml
    """
    config = load_config(ctx, config_path)
    if host is not None:
        config.host = host
    if port is not None:
        config.port = port
    if insecure_http:
        config.insecure_http = True
    if workers is not None:
        config.workers = workers
    if config.workers > 1:
        serve_workers(config, config.workers, announce=click.echo)
    else:
        serve_forever(config, announce=click.echo)


@fleet.group()
def token() -> None:
    """One-time, expiring enrollment tokens.

    \b
    Example:
        wardsight fleet token create --room 3B-12
    """


@token.command("create")
@click.option("--room", required=True, help="Room the enrolled device will belong to.")
@click.option("--site", default=None, help="Site (hospital) the device will belong to.")
@click.option("--ward", default=None, help="Ward the device will belong to.")
@click.option("--ttl", type=click.IntRange(1, 30 * 24 * 3600), default=None, help="Lifetime in seconds.")
@click.option("--approval", is_flag=True, help="The enrolled device waits as pending until an operator approves it.")
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an enrollment bundle (server URL, token, fleet CA) to this file, mode 0600.",
)
@click.option(
    "--server",
    default=None,
    help="Server URL for the bundle (default: public_url, else the URL the server running on this data directory"
    " listens at, else the configured one: its host or a name its certificate has, and its port).",
)
@config_option
@pass_context
def token_create(
    ctx: Context,
    room: str,
    site: str | None,
    ward: str | None,
    ttl: int | None,
    approval: bool,
    bundle: Path | None,
    server: str | None,
    config_path: Path | None,
) -> None:
    """Create a one-time enrollment token scoped to a room and print it (it is stored only hashed).

    \b
    Example:
        wardsight fleet token create --site st-marys --ward 3B --room 3B-12 --ttl 3600
        wardsight fleet token create --room 3B-12 --approval --bundle /media/sd/wardsight-enroll.json
    """
    config = load_config(ctx, config_path)
    url = ca_pem = None
    if bundle is not None:  # refused before a token is made
        url = server or bundle_server_url(config, running_server(config))
        ca_path = keys_dir(config) / CA_CERT
        if url.startswith("https://") and not ca_path.exists():
            raise WardSightError(f"no fleet CA at {ca_path} yet: start the server once ('wardsight fleet serve')")
        ca_pem = ca_path.read_text() if url.startswith("https://") else None
    plaintext = create_token(config, room, ttl, site=site, ward=ward, require_approval=approval)
    click.echo(plaintext)
    if bundle is not None and url is not None:
        tuf_root = bundle_root(config)
        Bundle(url, plaintext, ca_pem, insecure_http=url.startswith("http://"), tuf_root=tuf_root).write(bundle)
        click.echo(f"wrote {bundle} for {url}")
        for line in [] if server else bundle_url_warnings(config, url):
            click.echo(line, err=True)


@token.command("revoke")
@click.argument("token_id")
@config_option
@pass_context
def token_revoke(ctx: Context, token_id: str, config_path: Path | None) -> None:
    """Revoke an unused token (its id is the part between the dots).

    \b
    Example:
        wardsight fleet token revoke 1a2b3c4d5e6f
    """
    db = open_db(load_config(ctx, config_path))
    try:
        if not enrollment_service.revoke_token(db, token_id, actor=cli_actor(), now=time.time()):
            raise WardSightError(f"no unused, unrevoked token {token_id}")
    finally:
        db.close()
    click.echo(f"revoked {token_id}")


@fleet.group("device")
def device_group() -> None:
    """Approve, quarantine, release or revoke an enrolled device.

    \b
    Example:
        wardsight fleet device quarantine dev-0123456789abcdef --reason "camera moved"
    """


def _device_action(action: str) -> None:
    role, _, allowed = device_service.TRANSITIONS[action]

    @device_group.command(
        action,
        help=f"{action.capitalize()} a device (as the {role} role would).\n\n"
        f"\b\nExample:\n    wardsight fleet device {action} dev-0123456789abcdef",
    )
    @click.argument("device_id")
    @click.option("--reason", default=None, help="Why, for the audit log.")
    @config_option
    @pass_context
    def command(ctx: Context, device_id: str, reason: str | None, config_path: Path | None) -> None:
        db = open_db(load_config(ctx, config_path))
        try:
            status = device_service.change_status(
                db, device_id, action, actor=cli_actor(), reason=reason, now=time.time()
            )
        except (device_service.NoSuchDeviceError, device_service.NotAllowedError):
            raise WardSightError(f"cannot {action} {device_id}: unknown, or not {' or '.join(allowed)}") from None
        finally:
            db.close()
        click.echo(f"{device_id}: {status}")


for _action in device_service.TRANSITIONS:
    _device_action(_action)


@fleet.command()
@config_option
@pass_context
def devices(ctx: Context, config_path: Path | None) -> None:
    """List enrolled devices as JSON lines.

    \b
    Example:
        wardsight fleet devices
    """
    db = open_db(load_config(ctx, config_path))
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
    db = open_db(load_config(ctx, config_path))
    try:
        for row in db.recent_events(limit):
            click.echo(json.dumps(row))
    finally:
        db.close()


add_transfer_commands(fleet, checks={"the audit chain": verify_audit_chain})  # migrate, export, import
