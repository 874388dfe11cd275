"""``wardsight provision bundles``: a ward's devices from a CSV, all or nothing.

The CSV is checked whole first (:mod:`provisioning.roster`); then one enrollment token per device is made
through the fleet API; if the server refuses one, the tokens already made are revoked and nothing is written.
Then, in a new directory: one bundle per device (``<name or room>.json``, mode 0600, the only place the token
is), ``devices.csv`` (what was made, without tokens) and the label sheet (``labels.png`` / ``labels-N.png``
and ``labels.pdf``). If writing fails, the files are removed and the tokens revoked.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import ProvisionError
from provisioning.fleetapi import FleetApi, IssuedToken
from provisioning.labels import Label, pdf_bytes, render_pages, write_pngs
from provisioning.roster import Device
from wardsight.bundle import Bundle
from wardsight.paths import write_file_atomically


@dataclass(frozen=True)
class BundleSettings:
    device_url: str  # the server URL the devices use (often the same as the admin's)
    ca_pem: str | None
    insecure_http: bool = False
    ttl_seconds: int | None = None
    require_approval: bool = False


@dataclass(frozen=True)
class Made:
    device: Device
    issued: IssuedToken
    bundle: Path


def bundle_for(settings: BundleSettings, token: str, tuf_root: str | None, name: str | None) -> Bundle:
    """The device's bundle (its name, when the CSV gives one, becomes the device's name at first boot)."""
    url = settings.device_url.rstrip("/")
    return Bundle(url, token, settings.ca_pem, settings.insecure_http, tuf_root, name=name).check()


def check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProvisionError(f"{out} exists and is not an empty directory; give a new directory for each batch")


def provision_ward(devices: list[Device], api: FleetApi, settings: BundleSettings, out: Path) -> list[Made]:
    """Tokens, bundles, devices.csv and labels for ``devices`` (already checked) into the new directory ``out``."""
    check_out_dir(out)
    bundle_for(settings, "wst.check.only", None, None)  # refuse a bad URL or CA before any token exists
    tuf_root = api.tuf_root()
    issued = create_tokens(devices, api, settings)
    made = [Made(d, t, out / f"{d.file_stem}.json") for d, t in zip(devices, issued, strict=True)]
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for item in made:
            bundle_for(settings, item.issued.token, tuf_root, item.device.name).write(item.bundle)
        write_file_atomically(out / "devices.csv", devices_csv(made), mode=0o644)
        write_labels(made, out)
    except BaseException:
        remove_outputs(made, out)
        revoke_all(api, issued)
        raise
    return made


def remove_outputs(made: list[Made], out: Path) -> None:
    """Undo a batch that failed while writing (``out`` was new or empty before it)."""
    written = [item.bundle for item in made] + [out / "devices.csv", out / "labels.pdf"]
    for path in [*written, *out.glob("labels*.png")]:
        path.unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def create_tokens(devices: list[Device], api: FleetApi, settings: BundleSettings) -> list[IssuedToken]:
    issued: list[IssuedToken] = []
    try:
        for device in devices:
            issued.append(
                api.create_token(
                    device.room,
                    site=device.site,
                    ward=device.ward,
                    ttl_seconds=settings.ttl_seconds,
                    require_approval=settings.require_approval,
                )
            )
    except ProvisionError as exc:
        line = devices[len(issued)].line
        undone = revoke_all(api, issued)
        raise ProvisionError(f"line {line}: {exc}; {undone} (nothing was written)") from None
    return issued


def revoke_all(api: FleetApi, issued: list[IssuedToken]) -> str:
    """Revoke every token made so far; say how that went (ids only, never a token)."""
    failed = []
    for token in issued:
        try:
            api.revoke_token(token.id)
        except ProvisionError:
            failed.append(token.id)
    if failed:
        return f"could not revoke token(s) {', '.join(failed)}: revoke them with 'wardsight fleet token revoke'"
    return f"revoked the {len(issued)} token(s) made before it" if issued else "no token was made"


def devices_csv(made: list[Made]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["site", "ward", "room", "name", "tags", "bundle_file", "bundle_id", "expires_at_utc"])
    for item in made:
        d = item.device
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.issued.expires_at))
        writer.writerow([d.site, d.ward, d.room, d.name or "", " ".join(d.tags), item.bundle.name, item.issued.id,
                         expires])  # fmt: skip
    return out.getvalue().encode()


def sheet_title(made: list[Made]) -> str:
    places = sorted({f"{item.device.site} / {item.device.ward}" for item in made})
    where = places[0] if len(places) == 1 else f"{len(places)} wards"
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(min(item.issued.expires_at for item in made)))
    return f"WardSight  {where}  {len(made)} devices  enroll before {until}"


def write_labels(made: list[Made], out: Path) -> list[Path]:
    pages = render_pages([Label(item.device, item.issued.id) for item in made], sheet_title(made))
    paths = write_pngs(pages, out / "labels")
    pdf = out / "labels.pdf"
    write_file_atomically(pdf, pdf_bytes(pages), mode=0o644)
    for path in paths:
        os.chmod(path, 0o644)
    return [*paths, pdf]
