"""``wardsight provision``: prepare what a new device needs to enroll itself."""

from __future__ import annotations

import json
from pathlib import Path

import click

from wardsight.errors import WardSightError
from wardsight.paths import write_private_file


def write_bundle(path: Path, server_url: str, token: str) -> None:
    """Write an enrollment bundle (server URL + one-time token) readable only by its owner."""
    if not server_url.startswith(("http://", "https://")):
        raise WardSightError(f"server URL must start with http:// or https://, got '{server_url}'")
    if not token.startswith("wst."):
        raise WardSightError("token must be one printed by 'wardsight fleet token create' (wst.<id>.<secret>)")
    body = json.dumps({"server_url": server_url.rstrip("/"), "token": token}, indent=2).encode()
    write_private_file(path, body)


@click.group()
def provision() -> None:
    """Prepare devices for enrollment (SD-card flashing comes with the image recipe).

    \b
    Example:
        wardsight provision bundle --server https://fleet.example.org --token wst.abc.def --out bundle.json
    """


@provision.command()
@click.option("--server", required=True, help="Fleet server URL the device will enroll with.")
@click.option("--token", required=True, help="One-time token from 'wardsight fleet token create'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file to write.")
def bundle(server: str, token: str, out: Path) -> None:
    """Write an enrollment bundle (mode 0600) for 'wardsight device enroll --bundle'.

    \b
    Example:
        wardsight provision bundle --server http://127.0.0.1:8765 --token wst.1a2b.SECRET --out bundle.json
    """
    write_bundle(out, server, token)
    click.echo(f"wrote {out}")
