"""``wardsight ota publish-system`` and ``withdraw-system``: RAUC bundles as signed TUF targets
(:mod:`signing.bundles`); ``system-floor``: the lowest system version devices may install (:mod:`signing.floors`).
Added to the ``ota`` group by :mod:`signing.commands`."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from signing.bundles import publish_bundle, read_manifest, sha256_file, withdraw_bundle
from signing.cliopts import keys_option, make_server, prompt_passphrase, server_options
from signing.floors import set_floor
from signing.metadata import DEFAULT_TARGETS_DAYS


@click.command("publish-system")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@keys_option
@server_options
@click.option("--compatible", default=None, help="The bundle's RAUC compatible (read from it where rauc is).")
@click.option("--version", "version", default=None, help="The bundle's version (likewise).")
@click.option("--keyring", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The devices' RAUC keyring: check the bundle's signature as they will, first.")  # fmt: skip
@click.option("--sbom", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The image's SBOM (its sha256 is signed with the bundle).")  # fmt: skip
@click.option("--rauc", "rauc_command", default="rauc", show_default=True, help="The rauc command to read it with.")
@click.option("--targets-days", type=click.IntRange(1, 3660), default=DEFAULT_TARGETS_DAYS, help="Targets lifetime.")
def publish_system_command(
    bundle: Path,
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    compatible: str | None,
    version: str | None,
    keyring: Path | None,
    sbom: Path | None,
    rauc_command: str,
    targets_days: int,
) -> None:
    """Upload a RAUC bundle and sign targets metadata that publishes it as a system update.

    \b
    Example:
        wardsight ota publish-system wardsight-pi5-2026.12.1.raucb --keys ./keys --keyring release-ca.pem \\
            --sbom sbom.cdx.json --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    read = functools.partial(read_manifest, rauc=(rauc_command,), keyring=keyring)
    summary = publish_bundle(
        bundle, keys_dir, make_server(url, api_token, ca, insecure_http), compatible=compatible, version=version,
        sbom_sha256=sha256_file(sbom) if sbom is not None else None, read=read, targets_days=targets_days,
        passphrase=prompt_passphrase, warn=lambda text: click.echo(f"Warning: {text}", err=True),
    )  # fmt: skip
    click.echo(json.dumps(summary))


@click.command("withdraw-system")
@click.argument("compatible")
@click.argument("version")
@keys_option
@server_options
def withdraw_system_command(
    compatible: str, version: str, keys_dir: Path, url: str, api_token: str | None, ca: Path | None, insecure_http: bool
) -> None:
    """Sign targets metadata without a system version (devices will not install it, nor be rolled back to it).

    \b
    Example:
        wardsight ota withdraw-system wardsight-rpi5 2026.12.1 --keys ./keys --server https://fleet:8765 --ca ca.pem
    """
    server = make_server(url, api_token, ca, insecure_http)
    click.echo(json.dumps(withdraw_bundle(compatible, version, keys_dir, server, passphrase=prompt_passphrase)))


@click.command("system-floor")
@click.argument("compatible")
@click.argument("version", required=False)
@keys_option
@server_options
@click.option("--remove", is_flag=True, help="Remove the floor (rollbacks may go to any published version).")
@click.option("--targets-days", type=click.IntRange(1, 3660), default=DEFAULT_TARGETS_DAYS, help="Targets lifetime.")
def system_floor_command(
    compatible: str,
    version: str | None,
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    remove: bool,
    targets_days: int,
) -> None:
    """Sign the lowest system version devices of a RAUC compatible may install: they refuse any system update below
    it, a rollout's rollback too (the rollback flag is the fleet server's word; the floor is signed here).

    \b
    Example:
        wardsight ota system-floor wardsight-rpi5 2026.12.1 --keys ./keys --server https://fleet:8765 --ca ca.pem
        wardsight ota system-floor wardsight-rpi5 --remove --keys ./keys --server https://fleet:8765 --ca ca.pem
    """
    if (version is None) != remove:
        raise click.UsageError("give a VERSION, or --remove (not both)")
    server = make_server(url, api_token, ca, insecure_http)
    summary = set_floor(compatible, version, keys_dir, server, targets_days=targets_days, passphrase=prompt_passphrase)
    click.echo(json.dumps(summary))


COMMANDS = (publish_system_command, withdraw_system_command, system_floor_command)
