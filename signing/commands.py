"""``wardsight ota``: the click group and its commands, thin wrappers over the signing functions.

What the commands do, and why the keys stay offline: see :mod:`signing`. A :class:`WardSightError`
(e.g. :class:`~signing.errors.OtaCliError`) from any command becomes click's error message and exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from signing.client import start_rollout, upload_package
from signing.cliopts import keys_option, make_server, prompt_passphrase, server_options
from signing.keys import generate_key, generate_keys
from signing.metadata import DEFAULT_ROOT_DAYS, DEFAULT_TARGETS_DAYS, init_repository, publish, withdraw
from signing.package import build_package
from signing.rotation import rotate_root
from signing.system_commands import COMMANDS as SYSTEM_COMMANDS
from wardsight import modelpkg
from wardsight.errors import WardSightError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WardSightError as exc:
            raise click.ClickException(str(exc)) from None


@click.group("ota", cls=_Group)
def ota() -> None:
    """Signed model updates (TUF): the hospital's offline root and targets keys.

    \b
    Example:
        wardsight ota keys --out /media/offline/wardsight-keys
        wardsight ota init --keys /media/offline/wardsight-keys --server https://fleet:8765 --ca fleet-ca.pem
        wardsight ota publish movenet-1.1.wsm --keys /media/offline/wardsight-keys --server https://fleet:8765 \\
            --ca fleet-ca.pem
    """


@ota.command("keys")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the keys.")
@click.option("--encrypt", is_flag=True, help="Encrypt the keys with a passphrase (asked for twice).")
def keys_command(out: Path, encrypt: bool) -> None:
    """Make the offline root and targets keys (0600 files; keep them off the server).

    \b
    Example:
        wardsight ota keys --out /media/offline/wardsight-keys --encrypt
    """
    secret = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True).encode() if encrypt else None
    for role, keyid in generate_keys(out, secret).items():
        click.echo(f"{role}: {out / (role + '.key')} (key id {keyid})")


@ota.command("new-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--encrypt", is_flag=True, help="Encrypt the key with a passphrase (asked for twice).")
def new_key_command(path: Path, encrypt: bool) -> None:
    """Make one more Ed25519 key, e.g. the next root key for rotate-root.

    \b
    Example:
        wardsight ota new-key /media/offline/root-2026.key
    """
    secret = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True).encode() if encrypt else None
    click.echo(f"{path} (key id {generate_key(path, secret)})")


@ota.command("init")
@keys_option
@server_options
@click.option("--root-days", type=click.IntRange(1, 3660), default=DEFAULT_ROOT_DAYS, help="Root lifetime (days).")
@click.option("--targets-days", type=click.IntRange(1, 3660), default=DEFAULT_TARGETS_DAYS, help="Targets lifetime.")
def init_command(
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    root_days: int,
    targets_days: int,
) -> None:
    """Create the server's TUF repository (root v1, empty targets v1) signed with the offline keys.

    \b
    Example:
        wardsight ota init --keys ./keys --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = make_server(url, api_token, ca, insecure_http)
    summary = init_repository(
        keys_dir, server, root_days=root_days, targets_days=targets_days, passphrase=prompt_passphrase
    )
    click.echo(json.dumps(summary))


@ota.command("upload")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@server_options
def upload_command(package: Path, url: str, api_token: str | None, ca: Path | None, insecure_http: bool) -> None:
    """Stage a model package in the library (published only once signed with 'publish').

    \b
    Example:
        wardsight ota upload movenet-1.1.wsm --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    click.echo(json.dumps(upload_package(package, make_server(url, api_token, ca, insecure_http))))


@ota.command("publish")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@keys_option
@server_options
@click.option("--targets-days", type=click.IntRange(1, 3660), default=DEFAULT_TARGETS_DAYS, help="Targets lifetime.")
def publish_command(
    package: Path,
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    targets_days: int,
) -> None:
    """Upload a model package and sign targets metadata that publishes it.

    \b
    Example:
        wardsight ota publish movenet-1.1.wsm --keys ./keys --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = make_server(url, api_token, ca, insecure_http)
    summary = publish(package, keys_dir, server, targets_days=targets_days, passphrase=prompt_passphrase)
    click.echo(json.dumps(summary))


@ota.command("withdraw")
@click.argument("name")
@click.argument("version")
@keys_option
@server_options
def withdraw_command(
    name: str, version: str, keys_dir: Path, url: str, api_token: str | None, ca: Path | None, insecure_http: bool
) -> None:
    """Sign targets metadata without a model version (devices stop offering to install it).

    \b
    Example:
        wardsight ota withdraw movenet 1.1 --keys ./keys --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = make_server(url, api_token, ca, insecure_http)
    click.echo(json.dumps(withdraw(name, version, keys_dir, server, passphrase=prompt_passphrase)))


@ota.command("rotate-root")
@keys_option
@server_options
@click.option("--new-root-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--new-targets-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--root-days", type=click.IntRange(1, 3660), default=DEFAULT_ROOT_DAYS, help="Root lifetime (days).")
def rotate_root_command(
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    new_root_key: Path | None,
    new_targets_key: Path | None,
    root_days: int,
) -> None:
    """Sign the next root version: new root/targets keys, the server's current online keys, a new expiry.

    \b
    Example:
        wardsight ota new-key ./root-next.key
        wardsight ota rotate-root --keys ./keys --new-root-key ./root-next.key \\
            --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = make_server(url, api_token, ca, insecure_http)
    summary = rotate_root(
        keys_dir,
        server,
        new_root_key=new_root_key,
        new_targets_key=new_targets_key,
        root_days=root_days,
        passphrase=prompt_passphrase,
    )
    click.echo(json.dumps(summary))


@ota.command("status")
@server_options
def status_command(url: str, api_token: str | None, ca: Path | None, insecure_http: bool) -> None:
    """Show the repository's role versions, expiry dates and key ids (viewer token is enough).

    \b
    Example:
        wardsight ota status --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    click.echo(json.dumps(make_server(url, api_token, ca, insecure_http).get_json("/api/v1/ota/status"), indent=2))


@ota.command("package")
@click.option("--name", required=True, help="Model name, e.g. movenet-multipose.")
@click.option("--version", "version", required=True, help="Dotted numeric version, e.g. 1.2.")
@click.option("--task", required=True, help="What the model does, e.g. pose.")
@click.option("--license", "licence", required=True, help="The model's licence, e.g. Apache-2.0.")
@click.option("--min-agent-version", default="0.1", show_default=True, help="Oldest agent that can run it.")
@click.option(
    "--build",
    "builds",
    multiple=True,
    required=True,
    help="BACKEND:RUNTIME:DECODER:FILE[:HARDWARE[:RUNTIME_VERSION]], once per build (e.g. "
    "cpu:litert:movenet_multipose:m.tflite; a HEF names its chip and HailoRT: ...:pose.hef:hailo8l:4.23.0).",
)
@click.option("--input", "inputs", multiple=True, help="KEY=VALUE input setting for every build (long_side=256).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .wsm to write.")
def package_command(out: Path, **spec: Any) -> None:
    """Build a model package (.wsm): a manifest and one file per backend build, checked by sha256.

    \b
    Example:
        wardsight ota package --name movenet-multipose --version 1.1 --task pose --license Apache-2.0 \\
            --build cpu:litert:movenet_multipose:movenet.tflite \\
            --build hailo:hailort:yolov8_pose:yolov8s_pose.hef:hailo8l:4.23.0 \\
            --build coral:edgetpu:ssd_postprocess:ssd_edgetpu.tflite \\
            --input long_side=256 --input multiple=32 --input dtype=uint8 --out movenet-1.1.wsm
    """
    count = build_package(out, **spec)  # the options but --out are build_package's keyword arguments
    click.echo(f"wrote {out} ({count} build(s), sha256 {modelpkg.describe_file(out)[0]})")


for _command in SYSTEM_COMMANDS:
    ota.add_command(_command)


@ota.command("rollout")
@click.argument("model")
@click.argument("version")
@server_options
@click.option("--system", is_flag=True, help="A system update: MODEL is the bundle's RAUC compatible.")
@click.option("--on-system-version", default=None, help="Only devices that report this system version.")
@click.option("--site", default=None, help="Only devices of this site.")
@click.option("--ward", default=None, help="Only devices of this ward.")
@click.option("--room", default=None, help="Only the device(s) of this room.")
@click.option("--tag", "tags", multiple=True, help="Only devices with this tag (repeatable: all must match).")
@click.option(
    "--group",
    "groups",
    type=click.FloatRange(0, 100, min_open=True),
    multiple=True,
    help="A group's size in percent of the selection, in order (repeatable); a last group takes the rest.",
)
@click.option("--success", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Fraction of a group that must report healthy before the next starts.")  # fmt: skip
@click.option("--max-failures", type=click.IntRange(0), default=0, show_default=True,
              help="Failures across the rollout it tolerates before it stops.")  # fmt: skip
@click.option("--timeout", "timeout_s", type=click.IntRange(60, 7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds a device may stay in one step before it counts as failed.")  # fmt: skip
def rollout_command(
    model: str,
    version: str,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    site: str | None,
    ward: str | None,
    room: str | None,
    tags: tuple[str, ...],
    groups: tuple[float, ...],
    success: float,
    max_failures: int,
    timeout_s: int,
    system: bool,
    on_system_version: str | None,
) -> None:
    """Start a staged rollout of a published model version, or with --system of a system bundle (needs an operator
    or admin API token).

    \b
    Example:
        wardsight ota rollout movenet-multipose 1.1 --ward 3B --group 10 --group 100 --server https://fleet:8765 \\
            --ca fleet-ca.pem
        wardsight ota rollout --system wardsight-rpi5 2026.12.1 --ward 3B --group 10 --server https://fleet:8765
    """
    selector: dict[str, Any] = {k: v for k, v in (("site", site), ("ward", ward), ("room", room)) if v}
    if tags:
        selector["tags"] = list(tags)
    if on_system_version:
        selector["system_version"] = on_system_version
    sizes = groups if groups and groups[-1] == 100 else (*groups, 100.0)
    view = start_rollout(
        make_server(url, api_token, ca, insecure_http), model, version, selector,
        groups=sizes, success_threshold=success, max_failures=max_failures, timeout_s=timeout_s,
        kind="system" if system else "model",
    )  # fmt: skip
    click.echo(f"rollout {view['id']}: {view['model']} {view['version']} to {view['devices_total']} device(s), "
               f"{view['status']}")  # fmt: skip
    for device in view.get("devices", []):
        click.echo(f"  {device['device_id']}: {device.get('explain', device['status'])}")
