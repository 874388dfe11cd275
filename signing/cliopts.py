"""What the ``wardsight ota`` commands share: the server options, the keys option and the passphrase prompt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from signing.client import Server


def prompt_passphrase(path: Path) -> bytes:
    return str(click.prompt(f"Passphrase for {path}", hide_input=True)).encode()


def server_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = (
        click.option("--server", "url", required=True, envvar="WARDSIGHT_FLEET_URL", help="Fleet server URL."),
        click.option(
            "--api-token", envvar="WARDSIGHT_API_TOKEN", default=None, help="Admin API token (or $WARDSIGHT_API_TOKEN)."
        ),
        click.option(
            "--ca",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            envvar="WARDSIGHT_FLEET_CA",
            help="The fleet CA certificate (PEM) to pin for https (or $WARDSIGHT_FLEET_CA).",
        ),
        click.option("--insecure-http", is_flag=True, help="Development only: allow a plain http:// server."),
    )
    for option in reversed(options):
        function = option(function)
    return function


def make_server(url: str, api_token: str | None, ca: Path | None, insecure_http: bool) -> Server:
    return Server(url, api_token, ca.read_text() if ca else None, insecure_http)


keys_option = click.option(
    "--keys",
    "keys_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory holding root.key and targets.key.",
)
