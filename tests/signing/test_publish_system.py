"""Publishing a RAUC bundle as a system update (``wardsight ota publish-system``, :mod:`signing.bundles`): against the
real fleet server on loopback with the offline keys, the bundle's manifest read by ``rauc info`` (the fake ``rauc``
of tests/device/fakes/rauc; and RAUC itself where this machine has it), the library and the repository serving it.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuf.api.metadata import Metadata, TargetFile, Targets

from signing.bundles import BundleManifest, bundle_manifest, publish_bundle, read_manifest, sha256_file, withdraw_bundle
from signing.commands import ota
from signing.errors import OtaCliError
from signing.metadata import resign_targets
from tests.device.fakes.rauc import ENV, FakeRaucSystem, make_bundle
from tests.fleet.ota.test_ota_repository import http_get, start_fleet

BOARD = "wardsight-rpi5"
TARGET = f"system/{BOARD}/1.1.0.raucb"


@pytest.fixture
def fleet(tmp_path):
    running = start_fleet(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def rauc(tmp_path, monkeypatch) -> FakeRaucSystem:
    """The fake ``rauc`` on the signing machine (its keyring is the release key the fake bundles are signed with)."""
    fake = FakeRaucSystem(tmp_path / "rauc", compatible=BOARD)
    monkeypatch.setenv(ENV, str(fake.path))
    return fake


def bundle(tmp_path: Path, version: str = "1.1.0", compatible: str = BOARD, payload: bytes = b"", **kwargs) -> Path:
    (tmp_path / "bundles").mkdir(parents=True, exist_ok=True)
    return make_bundle(tmp_path / "bundles" / f"{compatible}-{version}.raucb", compatible=compatible, version=version,
                       payload=payload or f"rootfs {version} ".encode() * 4096, **kwargs)  # fmt: skip


def served_targets(fleet) -> Targets:
    return Metadata[Targets].from_bytes((fleet.metadata / "targets.json").read_bytes()).signed


def library(fleet) -> dict:
    return fleet.conn.get_json("/api/v1/models")


def test_a_bundle_is_published_as_a_signed_target_that_says_what_it_is(fleet, rauc, tmp_path):
    made = bundle(tmp_path)
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_text('{"bomFormat": "CycloneDX"}')
    read = functools.partial(read_manifest, rauc=rauc.command)
    summary = publish_bundle(made, fleet.keys, fleet.conn, read=read, sbom_sha256=sha256_file(sbom))
    assert (summary["target"], summary["compatible"], summary["version"]) == (TARGET, BOARD, "1.1.0")
    assert rauc.calls("info")[-1][:3] == ["info", "--output-format=json", "--no-verify"]

    listed = served_targets(fleet).targets[TARGET]
    assert (listed.length, listed.hashes) == (made.stat().st_size, {"sha256": sha256_file(made)})
    assert listed.custom == {"kind": "system", "compatible": BOARD, "version": "1.1.0",
                             "sbom_sha256": sha256_file(sbom)}  # fmt: skip
    assert fleet.download(TARGET) == made.read_bytes(), "a device verifies it through TUF"
    ranged = http_get(f"{fleet.url}/tuf/targets/{TARGET}", {"Range": "bytes=100-"})
    assert ranged.status == 206 and ranged.data == made.read_bytes()[100:], "served with resume"

    (system,) = library(fleet)["systems"]
    (entry,) = system["versions"]
    assert (system["kind"], system["compatible"]) == ("system", BOARD)
    assert (entry["status"], entry["sha256"], entry["sbom_sha256"]) == ("published", sha256_file(made),
                                                                       sha256_file(sbom))  # fmt: skip
    assert entry["published_by"] and entry["uploaded_by"]

    with pytest.raises(OtaCliError, match="already published"):
        publish_bundle(made, fleet.keys, fleet.conn, read=read)
    other = bundle(tmp_path / "other", "1.1.0", payload=b"another rootfs" * 4096)  # same version, other bytes
    with pytest.raises(OtaCliError, match="HTTP 409"):
        publish_bundle(other, fleet.keys, fleet.conn, compatible=BOARD, version="1.1.0", read=lambda path: None)

    same = bundle(tmp_path / "same", "1.1", payload=b"a third rootfs" * 4096)  # 1.1 orders as 1.1.0
    with pytest.raises(OtaCliError, match=r"HTTP 409.*1\.1 for .* is the same version as 1\.1\.0 in the library"):
        publish_bundle(same, fleet.keys, fleet.conn, read=read)

    withdraw_bundle(BOARD, "1.1.0", fleet.keys, fleet.conn)
    assert TARGET not in served_targets(fleet).targets
    assert library(fleet)["systems"][0]["versions"][0]["status"] == "withdrawn"
    assert http_get(f"{fleet.url}/tuf/targets/{TARGET}").status == 404


def test_the_compatible_and_version_are_the_bundle_s_own(fleet, rauc, tmp_path):
    made = bundle(tmp_path, compatible="wardsight-rpi4")
    read = functools.partial(read_manifest, rauc=rauc.command)
    with pytest.raises(OtaCliError, match="the bundle's compatible is 'wardsight-rpi4', not 'wardsight-rpi5'"):
        publish_bundle(made, fleet.keys, fleet.conn, compatible=BOARD, read=read)
    with pytest.raises(OtaCliError, match="the bundle's version is '1.1.0', not '1.2.0'"):
        bundle_manifest(made, None, "1.2.0", read)
    assert bundle_manifest(made, "wardsight-rpi4", "1.1.0", read) == BundleManifest("wardsight-rpi4", "1.1.0")
    # RAUC refuses a bundle whose signature does not verify: RAUC's own words, and nothing is uploaded.
    forged = bundle(tmp_path / "forged", key=b"not the release key".ljust(32))
    with pytest.raises(OtaCliError, match="rauc info refused .*signature verification failed"):
        publish_bundle(forged, fleet.keys, fleet.conn, read=read)
    assert library(fleet)["systems"] == []
    # Without rauc on this machine: the compatible and version must be given.
    nowhere = functools.partial(read_manifest, rauc=(str(tmp_path / "no-rauc"),))
    assert nowhere(made) is None
    with pytest.raises(OtaCliError, match="give --compatible and --version"):
        bundle_manifest(made, BOARD, None, nowhere)
    with pytest.raises(OtaCliError, match="is not a RAUC compatible"):
        publish_bundle(made, fleet.keys, fleet.conn, compatible="Pi 5", version="1.1.0", read=nowhere)


def test_the_server_refuses_a_bundle_target_whose_signed_metadata_says_otherwise(fleet, rauc, tmp_path):
    made = bundle(tmp_path)
    publish_bundle(made, fleet.keys, fleet.conn, read=functools.partial(read_manifest, rauc=rauc.command))
    for custom in ({"kind": "system", "compatible": "wardsight-rpi4", "version": "1.1.0"},
                   {"kind": "model", "compatible": BOARD, "version": "1.1.0"}, None):  # fmt: skip
        def relabel(targets: Targets, custom=custom) -> None:
            info = targets.targets[TARGET]
            relabelled = TargetFile(info.length, dict(info.hashes), TARGET)
            if custom is not None:
                relabelled.unrecognized_fields["custom"] = custom
            targets.targets[TARGET] = relabelled

        with pytest.raises(OtaCliError, match="HTTP 400: target system/wardsight-rpi5/1.1.0.raucb: its custom"):
            resign_targets(fleet.keys, fleet.conn, relabel)
    # A file that is no signed bundle is not taken into the library at all.
    unsigned = bundle(tmp_path / "unsigned", "1.2.0", key=None)
    with pytest.raises(OtaCliError, match="HTTP 400: not a usable RAUC bundle: it is not signed"):
        publish_bundle(unsigned, fleet.keys, fleet.conn, compatible=BOARD, version="1.2.0", read=lambda path: None)


def test_the_publish_system_command(fleet, rauc, tmp_path):
    made = bundle(tmp_path, "1.2.0")
    args = ["publish-system", str(made), "--keys", str(fleet.keys), "--server", fleet.url, "--insecure-http",
            "--rauc", str(tmp_path / "no-rauc"), "--compatible", BOARD, "--version", "1.2.0"]  # fmt: skip
    env = {"WARDSIGHT_API_TOKEN": fleet.conn.api_token}
    result = CliRunner().invoke(ota, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["target"] == f"system/{BOARD}/1.2.0.raucb"
    args = ["withdraw-system", BOARD, "1.2.0", "--keys", str(fleet.keys), "--server", fleet.url, "--insecure-http"]
    result = CliRunner().invoke(ota, args, env=env)
    assert result.exit_code == 0, result.output
    assert "publish-system" in CliRunner().invoke(ota, ["--help"]).output


def test_a_version_with_build_metadata_is_refused_before_anything_is_uploaded(fleet, rauc, tmp_path):
    """System versions carry no "+build" (RAUC compares without it; the target path cannot hold it): the bundle's
    own version, or one given by hand, is refused with the rule and what to build instead, and nothing is sent."""
    made = bundle(tmp_path, "1.2.0+20261208")
    rule = r"the version '1\.2\.0\+20261208' carries build metadata '\+20261208', and system versions carry no " \
           r"'\+build' metadata .*drop it and build the image and bundle as '1\.2\.0'"  # fmt: skip
    with pytest.raises(OtaCliError, match=rule):
        publish_bundle(made, fleet.keys, fleet.conn, read=functools.partial(read_manifest, rauc=rauc.command))
    args = ["publish-system", str(made), "--keys", str(fleet.keys), "--server", fleet.url, "--insecure-http",
            "--rauc", str(tmp_path / "no-rauc"), "--compatible", BOARD, "--version", "1.2.0+20261208"]  # fmt: skip
    result = CliRunner().invoke(ota, args, env={"WARDSIGHT_API_TOKEN": fleet.conn.api_token})
    assert result.exit_code == 1 and "system versions carry no '+build' metadata" in result.output, result.output
    assert library(fleet)["systems"] == [], "nothing uploaded"
    assert not list(fleet.repo.targets_dir.rglob("*.raucb"))
    padded = bundle(tmp_path, "1.2.00")  # (orders as 1.2.0: two bundles, one version)
    with pytest.raises(OtaCliError, match=r"the version '1\.2\.00' has the number '00'"):
        publish_bundle(padded, fleet.keys, fleet.conn, read=functools.partial(read_manifest, rauc=rauc.command))
    assert library(fleet)["systems"] == [], "nothing uploaded"


# ---- RAUC itself, where this machine has it ---------------------------------------------------------------------


@pytest.fixture
def real_bundle(tmp_path) -> tuple[Path, Path, Path]:
    """A real RAUC bundle (plain format) signed by a throwaway release key: (bundle, its keyring, another keyring)."""
    missing = [tool for tool in ("rauc", "mksquashfs", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (the fake rauc covers the rest)")
    for name in ("release", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
                        tmp_path / f"{name}.key.pem", "-out", tmp_path / f"{name}.cert.pem", "-subj",
                        f"/O=WardSight test/CN={name}"], check=True, capture_output=True)  # fmt: skip
    content = tmp_path / "content"
    content.mkdir()
    (content / "rootfs.img").write_bytes(b"rootfs" * 1024)
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={BOARD}\nversion=2026.12.1\n\n[bundle]\n"
                                            "format=plain\n\n[image.rootfs]\nfilename=rootfs.img\n")  # fmt: skip
    out = tmp_path / "wardsight-2026.12.1.raucb"
    subprocess.run(["rauc", f"--cert={tmp_path / 'release.cert.pem'}", f"--key={tmp_path / 'release.key.pem'}",
                    "bundle", content, out], check=True, capture_output=True)  # fmt: skip
    return out, tmp_path / "release.cert.pem", tmp_path / "other.cert.pem"


def test_the_real_rauc_reads_the_manifest_and_checks_the_signature(real_bundle):
    made, keyring, other = real_bundle
    assert read_manifest(made, keyring=keyring) == BundleManifest(BOARD, "2026.12.1")
    assert read_manifest(made) == BundleManifest(BOARD, "2026.12.1")  # --no-verify
    with pytest.raises(OtaCliError, match="rauc info refused .*signature verification failed"):
        read_manifest(made, keyring=other)
