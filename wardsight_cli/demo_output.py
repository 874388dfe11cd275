"""What ``wardsight demo`` prints: how to reach the console and sign in, the commands that roll out a model update,
each event as the server stores it (:class:`EventPrinter`: metadata, never data) and the summary at the end; and the
terminal kept readable (:func:`quiet_terminal`: a log line that repeats is printed once a minute with a count)."""

from __future__ import annotations

import base64
import hashlib
import shlex
import sqlite3
import threading
import time
from pathlib import Path

import click

from firmware.supervisor import Supervision
from fleet import pki
from fleet.config import ServerConfig
from fleet.server import BackgroundServer, keys_dir
from fleet.store.db import FleetDB
from wardsight_cli.repeats import limit_repeats

DEMO_ROOM = "demo-room-101"
DEMO_USER = "demo"
ADMIN_NAME = "ward-admin"  # the account name in the printed 'fleet operator add' command
EVENT_POLL_S = 1.0


def quiet_terminal() -> None:
    """Each distinct warning (a refused request, a quarantined device's retries) at most once a minute in the
    terminal, with the count of those not shown (:mod:`wardsight_cli.repeats`): the events stay readable."""
    limit_repeats()


def print_console_access(
    server: BackgroundServer, config: ServerConfig, demo_dir: Path, password: str, role: str
) -> None:
    """The console's URL, the one-off account, how to get an admin account, and how the browser trusts the server."""
    click.echo(f"console: {server.url}/")
    if role == "admin":
        click.echo(f"sign in as {DEMO_USER} / {password} (an admin account for this demo only)")
    else:
        click.echo(f"sign in as {DEMO_USER} / {password} (a viewer account for this demo only: it changes nothing)")
        click.echo("for an admin account (zones, rollouts), run this while the demo runs; it asks for a password:")
        click.echo(f"  wardsight --data-dir {shlex.quote(str(demo_dir.resolve()))} fleet operator add {ADMIN_NAME}"
                   " --role admin")  # fmt: skip
        click.echo("  (or start the demo with --admin: its one-off account is then an admin)")
    if server.ca_path is None:
        return
    click.echo(f"fleet CA (the browser does not know it): {server.ca_path} (sha256 {server.ca_fingerprint})")
    click.echo("  open the console in a throwaway Chromium profile that accepts only this server's key (TLS kept):")
    click.echo(f'  chromium --user-data-dir="$(mktemp -d)" --ignore-certificate-errors-spki-list={_server_spki(config)}'
               f" {server.url}/")  # fmt: skip
    click.echo("  (or import the CA file as an authority in the browser; remove it after the demo: each run makes one)")


def _server_spki(config: ServerConfig) -> str:
    """The base64 SHA-256 of the server certificate's public key (what Chromium's SPKI list takes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate((keys_dir(config) / pki.SERVER_CERT).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class EventPrinter:
    """Prints each event the fleet server stores, as it arrives: one line of metadata (its time, kind, severity and
    room), never its data. Reads the server's database on its own thread, through its own connection."""

    def __init__(self, database: Path | str, interval: float = EVENT_POLL_S) -> None:
        self.database, self.interval, self.printed = database, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            db = FleetDB(self.database)
        except sqlite3.Error as exc:
            click.echo(f"events: cannot read the server's database ({exc}); not printing them", err=True)
            return
        try:
            last = 0
            while True:
                stopping = self._stop.wait(self.interval)
                last = self._print_new(db, last)  # once more after the stop: the events stored until then
                if stopping:
                    return
        except sqlite3.Error as exc:
            click.echo(f"events: reading them stopped ({exc})", err=True)
        finally:
            db.close()

    def _print_new(self, db: FleetDB, after: int) -> int:
        rows = db.db.conn.execute(
            "SELECT rowid, time, app, type, severity, room FROM events WHERE rowid > ? ORDER BY rowid", [after]
        ).fetchall()
        for rowid, at, app, kind, severity, room in rows:
            clock = time.strftime("%H:%M:%S", time.localtime(at))
            click.echo(f"event {clock} {app} {kind} ({severity}) in {room}")
            self.printed += 1
            after = rowid
        return after


def print_summary(server_config: ServerConfig, supervision: Supervision | None) -> None:
    db = FleetDB(server_config.store_location)
    try:
        stored = db.count_events()
    finally:
        db.close()
    if supervision is not None and supervision.runs:
        starts = f" (the agent was started {supervision.starts} times)" if supervision.starts > 1 else ""
        click.echo(
            f"frames: {supervision.frames_captured} captured, {supervision.frames_processed} processed, "
            f"{supervision.frames_dropped} dropped{starts}"
        )
    click.echo(f"events: {stored} stored by the fleet server")


def print_update_commands(url: str, ca_path: Path | None, api_token: str, keys: Path, model_file: Path) -> None:
    """The three commands that publish a new model version and roll it out to the demo device."""
    insecure = "" if ca_path is not None else " --insecure-http"
    env = f"WARDSIGHT_FLEET_URL={url} WARDSIGHT_API_TOKEN={api_token}"
    if ca_path is not None:
        env += f" WARDSIGHT_FLEET_CA={ca_path}"
    click.echo("publish a model update and roll it out to this device (demo keys and a demo admin token):")
    click.echo(f"  export {env}")
    click.echo(
        "  wardsight ota package --name movenet-multipose --version 1.1 --task pose --license Apache-2.0"
        f" --build cpu:litert:movenet_multipose:{model_file} --input long_side=256 --input multiple=32"
        " --input dtype=uint8 --out movenet-1.1.wsm"
    )
    click.echo(f"  wardsight ota publish movenet-1.1.wsm --keys {keys}{insecure}")
    click.echo(f"  wardsight ota rollout movenet-multipose 1.1 --room {DEMO_ROOM}{insecure}")
