"""``wardsight device``: enroll this device and run the agent."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from firmware.assembly import device_dir
from firmware.exitcodes import RESTART_EXIT_CODE
from firmware.firstboot import FirstBootHooks, FirstBootPaths, StatusLed, first_boot, refresh_allowance, why_down
from firmware.identity import IdentityStore
from firmware.jobs.config import recover_pushed_config
from firmware.runtime import run_device
from wardsight.bundle import Bundle
from wardsight.clictx import Context, pass_context
from wardsight.clictx import config_option as clictx_config_option
from wardsight.device_config import DeviceConfig, load_device_config
from wardsight.errors import WardSightError

config_option = clictx_config_option("Device config file (TOML; default <data dir>/device.toml if present).")


@click.group()
def device() -> None:
    """The camera agent: enrollment and the capture -> model -> apps -> events loop.

    \b
    Example:
        wardsight device enroll --server https://fleet.example.org --token wst.abc.def
        wardsight device run
    """


@device.command()
@click.option("--server", help="Fleet server URL (or take it from --bundle).")
@click.option("--token", help="One-time enrollment token from 'wardsight fleet token create'.")
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Enrollment bundle written by 'wardsight provision bundle'.",
)
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Fleet CA certificate (PEM) to pin, with --server https://...",
)
@click.option("--insecure-http", is_flag=True, help="Development only: allow an http:// server.")
@click.option("--name", default=None, help="Device name shown in the console (default: hostname).")
@click.option("--room", default=None, help="The room this device is mounted in; refused if the token is for another.")
@config_option
@pass_context
def enroll(
    ctx: Context,
    server: str | None,
    token: str | None,
    bundle: Path | None,
    ca: Path | None,
    insecure_http: bool,
    name: str | None,
    room: str | None,
    config_path: Path | None,
) -> None:
    """Create this device's key (kept here, file mode 0600) and enroll it with a one-time token.

    \b
    Example:
        wardsight device enroll --server https://fleet.local:8765 --ca fleet-ca.pem --token wst.1a2b3c4d5e6f.SECRET
        wardsight device enroll --bundle /boot/firmware/wardsight-enroll.json
    """
    if bundle is not None:
        enrollment = Bundle.load(bundle)
    elif server and token:
        enrollment = Bundle(server, token, ca.read_text() if ca is not None else None, insecure_http)
    else:
        raise click.UsageError("give --bundle, or --server and --token (and --ca for https)")
    config = load_device_config(ctx.data_dir, config_path, ctx.environ)
    identity, status = IdentityStore(device_dir(ctx.data_dir)).enroll(enrollment, name or config.name, room=room)
    click.echo(f"enrolled as {identity.device_id} in room {identity.room} at {identity.server_url} ({status})")
    if status == "pending":
        click.echo("an operator must approve this device before it is trusted; the agent waits until then")


@device.command()
@click.option(
    "--boot-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="Holds wardsight/enrollment.json (from 'wardsight provision bundle'): the boot partition, or a copy of it.",
)
@click.option("--status-led", type=click.Path(dir_okay=False, path_type=Path), help="A sysfs LED brightness file.")
@click.option("--agent-user", default=None, help="When run as root: the user the device directory is given to.")
@click.option("--ssh-user", default=None, help="When run as root: the user the SSH authorized_keys file is given to.")
@click.option(
    "--firewall-file", type=click.Path(dir_okay=False, path_type=Path), help="Default <data dir>/firewall/fleet.nft."
)
@click.option(
    "--ssh-keys-file", type=click.Path(dir_okay=False, path_type=Path), help="Default <data dir>/ssh/authorized_keys."
)
@click.option("--name", default=None, help="Device name in the console (default: the bundle's, else configured).")
@config_option
@pass_context
def firstboot(
    ctx: Context,
    boot_dir: Path,
    status_led: Path | None,
    agent_user: str | None,
    ssh_user: str | None,
    firewall_file: Path | None,
    ssh_keys_file: Path | None,
    name: str | None,
    config_path: Path | None,
) -> None:
    """Enroll from the boot partition's bundle at the first boot, then erase the bundle (safe at every boot).

    Retries until the network and the server answer; idempotent (enrolled: nothing is enrolled again). A refused
    token leaves the device down (exit 0, no identity), state in <data dir>/device/firstboot.json, until a new
    bundle is written. Needs no privilege when run as the agent's user (as the image does, on a staged copy).

    \b
    Example:
        wardsight --data-dir /var/lib/wardsight device firstboot --boot-dir /run/wardsight-firstboot
        sudo wardsight --data-dir /var/lib/wardsight device firstboot --boot-dir /boot/firmware --agent-user wardsight
    """
    config = load_device_config(ctx.data_dir, config_path, ctx.environ)
    paths = FirstBootPaths(boot_dir, ctx.data_dir, firewall_file, ssh_keys_file)
    led = StatusLed(status_led) if status_led is not None else None
    hooks = FirstBootHooks(say=click.echo, led=led, agent_user=agent_user, ssh_user=ssh_user)
    first_boot(paths, config.name, hooks, name=name)


@device.command()
@pass_context
def show(ctx: Context) -> None:
    """Show this device's identity (never its private key), or why it is not enrolled.

    \b
    Example:
        wardsight device show
    """
    down = why_down(ctx.data_dir)
    if down is not None:
        raise WardSightError(f"this device is not enrolled ({down})")
    identity, _ = IdentityStore(device_dir(ctx.data_dir)).load()
    click.echo(f"device {identity.device_id} ({identity.name}) in room {identity.room}, server {identity.server_url}")


def apply_source_options(
    config: DeviceConfig, video: Path | None, camera: int | None, loop: bool, stream: str | None = None
) -> None:
    if sum(x is not None for x in (video, camera, stream)) > 1:
        raise click.UsageError("--video, --camera and --stream are exclusive")
    if stream is not None:
        config.source.kind, config.source.url = "stream", stream
    if video is not None:
        config.source.kind, config.source.path = "file", video
    if camera is not None:
        config.source.kind, config.source.camera_index = "camera", camera
    if loop:
        config.source.loop = True


source_options = [
    click.option("--video", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Video file."),
    click.option("--camera", type=click.IntRange(0, 63), default=None, help="Camera index (USB/V4L2)."),
    click.option("--stream", default=None, help="Network camera URL (rtsp://user:pass@host/path or http://...)."),
    click.option("--loop/--no-loop", default=False, help="Start a video file again at its end."),
]


F = TypeVar("F", bound=Callable[..., Any])


def with_source_options(fn: F) -> F:
    for option in reversed(source_options):
        fn = option(fn)
    return fn


@contextlib.contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """systemd stops the agent with SIGTERM: finish the frame, stop the services and close the camera, then die
    of that SIGTERM after all (the exit status a supervisor expects of a stopped service)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield
        return
    received = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        received.set()
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received.is_set():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


@device.command()
@with_source_options
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Stop after SECONDS.")
@click.option(
    "--reboot-command",
    default=None,
    help="What a reboot job runs (shell words; default: the configuration's reboot_command).",
)
@config_option
@pass_context
def run(
    ctx: Context,
    video: Path | None,
    camera: int | None,
    stream: str | None,
    loop: bool,
    duration: float | None,
    reboot_command: str | None,
    config_path: Path | None,
) -> None:
    """Run the agent: capture, blackout, detect people, run the apps, send signed events.

    \b
    Example:
        wardsight device run --camera 0
        wardsight device run --stream rtsp://cam:secret@10.1.2.3/stream1
        wardsight device run --video ward3.mp4 --duration 60
    """
    config_file = config_path or ctx.data_dir / "device.toml"
    recover_pushed_config(device_dir(ctx.data_dir), config_file)  # a pushed config that failed to start: undone
    refresh_allowance(ctx.data_dir)  # on the image: the server's name may resolve to new addresses
    config = load_device_config(ctx.data_dir, config_path, ctx.environ)
    apply_source_options(config, video, camera, loop, stream)
    stop = threading.Event()
    with stop_on_sigterm(stop):
        result = run_device(
            config,
            ctx.data_dir,
            duration=duration,
            stop=stop,
            config_path=config_file,
            environ=ctx.environ,
            reboot_command=shlex.split(reboot_command) if reboot_command else None,
        )
        click.echo(
            f"frames: {result.frames_captured} captured, {result.agent.processed} processed, "
            f"{result.frames_dropped} dropped; events: {result.agent.events} raised, {result.sent} sent, "
            f"{result.rejected} refused, {result.queued} unsent"
        )
    if result.restart is not None:
        click.echo(f"restarting: {result.restart} (exit {RESTART_EXIT_CODE}; the supervisor starts the agent again)")
        raise SystemExit(RESTART_EXIT_CODE)
    if result.exit_code is not None:  # factory reset: wiped, not to be started again before a new enrollment
        raise SystemExit(result.exit_code)
