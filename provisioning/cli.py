"""``wardsight provision``: prepare what a new device needs to enroll itself."""

from __future__ import annotations

from pathlib import Path

import click

from wardsight.bundle import Bundle


@click.group()
def provision() -> None:
    """Prepare devices for enrollment (SD-card flashing comes with the image recipe).

    \b
    Example:
        wardsight provision bundle --server https://fleet.example.org:8765 --ca fleet-ca.pem \\
            --token wst.abc.def --out bundle.json
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
