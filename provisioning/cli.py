"""``wardsight provision``: prepare what new devices need to enroll themselves, a ward at a time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from provisioning import batch, flash, imagefile, imager
from provisioning.errors import ProvisionError
from provisioning.fleetapi import FleetApi
from provisioning.roster import read_roster
from wardsight.bundle import Bundle
from wardsight.paths import write_file_atomically

FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


@click.group()
def provision() -> None:
    """Prepare devices for enrollment: bundles for a ward, images carrying them, SD cards, an Imager list.

    \b
    Example:
        export WARDSIGHT_FLEET_URL=https://fleet.example.org:8765 WARDSIGHT_FLEET_CA=fleet-ca.pem
        export WARDSIGHT_API_TOKEN=wsa.ID.SECRET   # an operator's API token
        wardsight provision bundles --csv ward-3b.csv --out ward-3b/
        wardsight provision flash --image wardsight.img --bundle ward-3b/3B-12.json --device /dev/sdb
    """


@provision.command()
@click.option("--server", required=True, help="Fleet server URL the device will enroll with.")
@click.option("--token", required=True, help="One-time token from 'wardsight fleet token create'.")
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The fleet CA certificate (PEM) the device will pin; required for https.",
)
@click.option("--insecure-http", is_flag=True, help="Development only: allow an http:// server.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file to write.")
def bundle(server: str, token: str, ca: Path | None, insecure_http: bool, out: Path) -> None:
    """Write an enrollment bundle (mode 0600) for 'wardsight device enroll --bundle'.

    \b
    Example:
        wardsight provision bundle --server https://fleet.local:8765 --ca ~/.local/share/wardsight/fleet-keys/ca.crt \\
            --token wst.1a2b.SECRET --out bundle.json
    """
    Bundle(server.rstrip("/"), token, ca.read_text() if ca is not None else None, insecure_http).write(out)
    click.echo(f"wrote {out}")


def _server_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = (
        click.option("--server", "url", required=True, envvar="WARDSIGHT_FLEET_URL", help="Fleet server URL."),
        click.option(
            "--api-token",
            envvar="WARDSIGHT_API_TOKEN",
            default=None,
            help="An operator's API token (or $WARDSIGHT_API_TOKEN).",
        ),
        click.option(
            "--ca",
            type=FILE,
            default=None,
            envvar="WARDSIGHT_FLEET_CA",
            help="The fleet CA certificate (PEM) to pin, also put in each bundle (or $WARDSIGHT_FLEET_CA).",
        ),
        click.option("--insecure-http", is_flag=True, help="Development only: allow a plain http:// server."),
    )
    for option in reversed(options):
        function = option(function)
    return function


@provision.command("bundles")
@_server_options
@click.option("--csv", "csv_path", required=True, type=FILE, help="The ward's devices: site,ward,room[,name][,tags].")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="New directory.")
@click.option("--ttl", type=click.IntRange(1, 30 * 24 * 3600), default=None, help="Token lifetime in seconds.")
@click.option("--approval", is_flag=True, help="Enrolled devices wait as pending until an operator approves them.")
@click.option("--device-server", default=None, help="Server URL the devices use, if not the same as --server.")
def bundles(
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    csv_path: Path,
    out: Path,
    ttl: int | None,
    approval: bool,
    device_server: str | None,
) -> None:
    """One enrollment token and bundle per device of a ward's CSV, and a sheet of QR labels for the installer.

    The CSV is checked whole before any token is made. OUT gets <name or room>.json per device (mode 0600:
    each holds a one-time token), devices.csv (what was made, no tokens) and labels.png / labels.pdf (A4,
    3 x 7 labels; the QR code names site, ward, room, device name and the token's public id, never the token).

    \b
    Example:
        printf 'site,ward,room,name,tags\\nst-marys,3B,3B-12,,\\nst-marys,3B,3B-14,cam-3b14,window\\n' > 3b.csv
        wardsight provision bundles --server https://fleet:8765 --ca fleet-ca.pem --csv 3b.csv --out 3b/ --ttl 604800
    """
    devices = read_roster(csv_path)
    batch.check_out_dir(out)
    if api_token is None:
        raise ProvisionError("an operator's API token is needed: --api-token or $WARDSIGHT_API_TOKEN")
    ca_pem = ca.read_text() if ca is not None else None
    api = FleetApi(url.rstrip("/"), api_token, ca_pem, insecure_http)
    device_url = (device_server or url).rstrip("/")
    http = insecure_http and device_url.startswith("http://")  # a plain-http device URL needs the flag too
    settings = batch.BundleSettings(device_url, ca_pem, http, ttl, approval)
    made = batch.provision_ward(devices, api, settings, out)
    click.echo(f"made {len(made)} bundles in {out} (tokens expire; keep the files private until the cards are made)")
    click.echo(f"labels: {out / 'labels.pdf'}")


@provision.command("image")
@click.option("--image", "image_path", required=True, type=FILE, help="The device image (raw .img).")
@click.option("--bundle", "bundle_path", required=True, type=FILE, help="The device's enrollment bundle.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Image to write.")
@click.option("--ssh-key", type=FILE, default=None, help="Public key(s) for key-only SSH (authorized_keys format).")
def image(image_path: Path, bundle_path: Path, out: Path | None, ssh_key: Path | None) -> None:
    """Copy an image with the bundle as wardsight/enrollment.json on its first FAT partition (no root needed).

    The copy holds a token: it is written mode 0600. Default OUT: IMAGE-BUNDLE.img next to the image.

    \b
    Example:
        wardsight provision image --image wardsight-2026.12.img --bundle 3b/3B-12.json --out 3B-12.img
    """
    device_bundle = _load_bundle(bundle_path, ssh_key)
    target = out or imagefile.default_out(image_path, bundle_path)
    part = imagefile.image_with_bundle(image_path, device_bundle, target)
    click.echo(f"wrote {target} (bundle in partition {part.number}, {part.scheme.upper()}, at byte {part.start})")


def _load_bundle(path: Path, ssh_key: Path | None) -> Bundle:
    loaded = Bundle.load(path)
    return imagefile.with_ssh_keys(loaded, imagefile.read_ssh_keys(ssh_key)) if ssh_key else loaded


@provision.command("flash")
@click.option("--image", "image_path", required=True, type=FILE, help="The device image (raw .img).")
@click.option("--bundle", "bundle_path", required=True, type=FILE, help="The device's enrollment bundle.")
@click.option("--device", required=True, type=click.Path(path_type=Path), help="Whole disk, e.g. /dev/sdb.")
@click.option("--ssh-key", type=FILE, default=None, help="Public key(s) for key-only SSH (authorized_keys format).")
@click.option("--yes", is_flag=True, help="Do not ask before overwriting the disk.")
@click.option("--tmp-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Where the temporary copy goes (default: $TMPDIR); it is sparse.")  # fmt: skip
@click.option("--to-file", is_flag=True, hidden=True, help="Rehearsal/tests: DEVICE is a regular file.")
def flash_command(
    image_path: Path,
    bundle_path: Path,
    device: Path,
    ssh_key: Path | None,
    yes: bool,
    tmp_dir: Path | None,
    to_file: bool,
) -> None:
    """Write the image, with the bundle in it, to an SD card or NVMe drive with bmaptool.

    Refuses the disk this machine runs from, disks with anything mounted, partitions and non-block devices.

    \b
    Example:
        sudo wardsight provision flash --image wardsight-2026.12.img --bundle 3b/3B-12.json --device /dev/sdb
    """
    device_bundle = _load_bundle(bundle_path, ssh_key)
    imagefile.check_image(image_path)
    size = image_path.stat().st_size
    target = flash.file_target(device) if to_file else flash.block_target(device, size)
    done = flash.flash(
        image_path,
        device_bundle,
        target,
        confirm=lambda question: yes or click.confirm(question, default=False),
        tmp_dir=tmp_dir,
    )
    if not done:
        raise click.ClickException("nothing written")
    click.echo(f"wrote {image_path.name} with {bundle_path.name} to {target.path}")


@provision.command("imager-manifest")
@click.option("--image", "images", required=True, multiple=True, type=FILE, help="A built image (repeatable).")
@click.option("--url-base", required=True, help="Where the images will be downloaded from (https://...).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The OS list to write.")
@click.option("--name", default="WardSight", show_default=True, help="Name shown in Imager's OS list.")
@click.option("--description", default=imager.DEFAULT_DESCRIPTION, help="Description shown in Imager.")
@click.option("--icon", default=None, help="Icon URL (default: URL_BASE/wardsight.png).")
@click.option("--release-date", default=None, help="YYYY-MM-DD (default: the image file's date).")
@click.option("--device", "devices", multiple=True, default=imager.DEFAULT_DEVICES, show_default=True,
              help="Imager device tag (repeatable).")  # fmt: skip
def imager_manifest(
    images: tuple[Path, ...],
    url_base: str,
    out: Path,
    name: str,
    description: str,
    icon: str | None,
    release_date: str | None,
    devices: tuple[str, ...],
) -> None:
    """Write a Raspberry Pi Imager OS list for built images (open it with 'rpi-imager --repo URL').

    \b
    Example:
        wardsight provision imager-manifest --image wardsight-2026.12.img.xz \\
            --url-base https://it.example.org/wardsight --out os-list.json
    """
    listing = imager.os_list(
        list(images),
        url_base=url_base,
        name=name,
        description=description,
        icon=icon,
        release_date=release_date,
        devices=devices,
    )
    write_file_atomically(out, (json.dumps(listing, indent=2) + "\n").encode(), mode=0o644)
    click.echo(f"wrote {out} ({len(images)} image(s)); put it and the images under {url_base}")
