"""System updates: a RAUC bundle (``.raucb``) published as a TUF target, signed by the offline targets key like a
model package.

The target is ``system/<compatible>/<version>.raucb`` (``wardsight.wire.system_target_path``) with its length and
sha256 computed here from the local file (streamed) and the custom metadata devices trust before they download:
``{"kind": "system", "compatible", "version", "sbom_sha256"?}``. The compatible and version are the bundle's own,
read from its manifest with ``rauc info --output-format=json`` (``--keyring=`` checks RAUC's signature as the
devices will; without one, ``--no-verify``); given by hand as well, they must agree. Where this machine has no
``rauc``, they must be given: a device compares them with the bundle's manifest (``rauc info`` on the device)
before installing and refuses a bundle that says otherwise, so a wrong one is refused, never installed. A version
with ``+build`` metadata is refused before anything is uploaded (``wardsight.sysversion.RULE``: system versions
carry none).

The bundle is uploaded first (``POST /api/v1/system-bundles``, streamed from the file), then the targets metadata
that lists it is signed and sent (:func:`signing.metadata.resign_targets`, which keeps the hospital's system floors,
:mod:`signing.floors`; a bundle below its board's floor is published with a warning: devices will refuse it).
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

from tuf.api.metadata import TargetFile, Targets

from signing.client import Server, parse_json
from signing.errors import OtaCliError
from signing.floors import below_floor_warning
from signing.metadata import Signing, publish_staged, resign_targets
from wardsight import sysversion, wire
from wardsight.modelpkg import file_sha256 as sha256_file

UPLOAD_PATH = "/api/v1/system-bundles"
RaucRunner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class BundleManifest:
    compatible: str
    version: str


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=600, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def read_manifest(
    bundle: Path, *, rauc: Sequence[str] = ("rauc",), keyring: Path | None = None, runner: RaucRunner = _run
) -> BundleManifest | None:
    """The bundle's compatible and version by ``rauc info`` (None: no ``rauc`` here). With ``keyring`` RAUC checks the
    bundle's signature against it first (as a device does); a refusal is an :class:`OtaCliError` with RAUC's words."""
    check = [f"--keyring={keyring}"] if keyring is not None else ["--no-verify"]
    try:
        done = runner([*rauc, "info", "--output-format=json", *check, str(bundle)])
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise OtaCliError(f"rauc info refused {bundle.name}: {lines[-1] if lines else f'exit {done.returncode}'}")
    try:
        doc = json.loads(done.stdout)
        return BundleManifest(str(doc["compatible"]), str(doc["version"]))
    except (ValueError, KeyError, TypeError):
        raise OtaCliError(f"rauc info printed no compatible and version for {bundle.name}") from None


def bundle_manifest(
    bundle: Path, compatible: str | None, version: str | None, read: Callable[[Path], BundleManifest | None]
) -> BundleManifest:
    """The compatible and version to sign: the bundle's (``read``), and those given must agree with it."""
    found = read(bundle)
    if found is None:
        if compatible is None or version is None:
            raise OtaCliError("no rauc here to read the bundle's manifest: give --compatible and --version")
        return BundleManifest(compatible, version)
    for what, given, have in (("compatible", compatible, found.compatible), ("version", version, found.version)):
        if given is not None and given != have:
            raise OtaCliError(f"the bundle's {what} is '{have}', not '{given}'")
    return found


def bundle_target_info(bundle: Path, manifest: BundleManifest, sbom_sha256: str | None = None) -> TargetFile:
    """The TargetFile of a bundle, from the local file (streamed): path, length, sha256 and the custom metadata."""
    try:
        sysversion.refuse_ambiguous(manifest.version)
        path = wire.system_target_path(manifest.compatible, manifest.version)
    except ValueError as exc:
        raise OtaCliError(str(exc)) from None
    if sbom_sha256 is not None and (len(sbom_sha256) != 64 or set(sbom_sha256) - set("0123456789abcdef")):
        raise OtaCliError("--sbom-sha256 must be 64 lowercase hex digits")
    info = TargetFile(bundle.stat().st_size, {"sha256": sha256_file(bundle)}, path)
    custom: dict[str, Any] = {"kind": "system", "compatible": manifest.compatible, "version": manifest.version}
    if sbom_sha256 is not None:
        custom["sbom_sha256"] = sbom_sha256
    info.unrecognized_fields["custom"] = custom
    return info


def upload_bundle(bundle: Path, manifest: BundleManifest, server: Server) -> dict[str, Any]:
    """Stage a bundle in the server's library, streamed from the file (not installable until published)."""
    query = urllib.parse.urlencode({"compatible": manifest.compatible, "version": manifest.version})
    with open(bundle, "rb") as fh:
        raw = server.request("POST", f"{UPLOAD_PATH}?{query}", fh, "application/octet-stream", bundle.stat().st_size)
    result: dict[str, Any] = parse_json(raw, UPLOAD_PATH)
    return result


def publish_bundle(
    bundle: Path,
    keys: Path,
    server: Server,
    *,
    compatible: str | None = None,
    version: str | None = None,
    sbom_sha256: str | None = None,
    read: Callable[[Path], BundleManifest | None] = read_manifest,
    warn: Callable[[str], None] | None = None,
    **signing: Unpack[Signing],
) -> dict[str, Any]:
    """Upload ``bundle`` and publish it: targets metadata listing it, signed with the offline targets key (an existing
    system floor is kept). A bundle below its compatible's signed floor is still published, with a warning (``warn``
    and the summary's ``warning``): devices refuse it until the floor is lowered."""
    manifest = bundle_manifest(bundle, compatible, version, read)
    info = bundle_target_info(bundle, manifest, sbom_sha256)
    warnings: list[str] = []

    def inspect(targets: Targets) -> None:
        warning = below_floor_warning(targets, manifest.compatible, manifest.version)
        if warning is not None:
            warnings.append(warning)
            if warn is not None:
                warn(warning)

    summary = publish_staged(info, upload_bundle(bundle, manifest, server), keys, server, inspect=inspect, **signing)
    result = {**summary, "target": info.path, "compatible": manifest.compatible, "version": manifest.version}
    return {**result, "warning": warnings[0]} if warnings else result


def withdraw_bundle(
    compatible: str, version: str, keys: Path, server: Server, **signing: Unpack[Signing]
) -> dict[str, Any]:
    """Sign targets metadata that no longer lists the bundle (devices will not install it, nor roll back to it); a
    system floor is kept."""
    try:
        path = wire.system_target_path(compatible, version)
    except ValueError as exc:
        raise OtaCliError(str(exc)) from None

    def remove(targets: Targets) -> None:
        if targets.targets.pop(path, None) is None:
            raise OtaCliError(f"{path} is not published")

    return resign_targets(keys, server, remove, **signing)
