"""images/bundle/wardsight-bundle: a RAUC bundle (verity) of a built image's slot, signed with the hospital's RAUC
key, checked here with Debian's real RAUC (``rauc info`` verifies the signature against the image's keyring)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware.system.raucconf import IMAGE_ROTA, RaucSettings, compatible_for, render_system_conf
from tests.images.conftest import IMAGES, need

BUNDLE = IMAGES / "bundle/wardsight-bundle"


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(top: Path, name: str) -> tuple[Path, Path, Path]:
    """What images/README.md has the hospital make offline: a RAUC CA (the devices' keyring) and a signing
    certificate under it, keys 0600. Returns (CA certificate, signing certificate, signing key)."""
    top.mkdir(parents=True)
    ca_key, ca_cert = top / "ca.key.pem", top / "ca.cert.pem"
    key, csr, cert, ext = top / "signing.key.pem", top / "signing.csr", top / "signing.cert.pem", top / "ext"
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *curve, "-keyout", ca_key, "-out", ca_cert, "-days", "3650", "-subj",
            f"/O={name}/CN=WardSight RAUC CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", *curve, "-keyout", key, "-out", csr, "-subj", f"/O={name}/CN=WardSight RAUC signing")
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "730",
            "-out", cert, "-extfile", ext)  # fmt: skip
    for private in (ca_key, key):
        private.chmod(0o600)
    return ca_cert, cert, key


def image_tree(top: Path, keyring: Path, version: str = "2026.12.1") -> Path:
    """The files of a built root the bundle reads: system-release, system.conf (rendered as the layer does), the
    keyring and the SBOM; plus some bytes that do not compress (RAUC wants more than 4 KiB of squashfs)."""
    root = top / "rootfs"
    (root / "etc/wardsight").mkdir(parents=True)
    (root / "etc/rauc").mkdir(parents=True)
    (root / "usr/share/wardsight").mkdir(parents=True)
    sbom = root / "usr/share/wardsight/sbom.cdx.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "components": []}))
    digest = hashlib.sha256(sbom.read_bytes()).hexdigest()
    (root / "etc/wardsight/system-release").write_text(f"# image\nVERSION={version}\nSBOM_SHA256={digest}\n")
    (root / "etc/rauc/system.conf").write_text(render_system_conf(IMAGE_ROTA, RaucSettings(compatible_for("pi5"))))
    shutil.copy(keyring, root / "etc/rauc/keyring.pem")
    (root / "usr/share/wardsight/payload").write_bytes(os.urandom(64 * 1024))
    return root


def fat(path: Path) -> Path:
    subprocess.run(["truncate", "-s", "4M", str(path)], check=True)
    subprocess.run([need("mkfs.vfat"), "-n", "BOOT", str(path)], check=True, capture_output=True)
    return path


def erofs_stand_in(path: Path) -> Path:
    """A file with erofs's superblock magic (0xE0F5E1E2 at byte 1024) for the runs that read the root from
    --rootfs: RAUC writes system.img as it is, so its contents matter only to the kernel."""
    path.write_bytes(b"\0" * 1024 + bytes.fromhex("e2e1f5e0") + os.urandom(64 * 1024))
    return path


@pytest.fixture
def tools() -> None:
    for tool in ("rauc", "mksquashfs", "openssl"):
        need(tool)


def bundle(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUNDLE), *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)


def info(bundle_path: Path, keyring: Path) -> subprocess.CompletedProcess[str]:
    command = ["rauc", f"--keyring={keyring}", "info", "--output-format=json", str(bundle_path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.usefixtures("tools")
def test_the_bundle_carries_the_slot_says_what_the_image_says_and_verifies_under_the_keyring(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path / "keys", "St Marys")
    root = image_tree(tmp_path, ca)
    system, boot = erofs_stand_in(tmp_path / "system.erofs"), fat(tmp_path / "boot.vfat")
    done = bundle(tmp_path, "--system", system, "--boot", boot, "--rootfs", root, "--cert", cert, "--key", key)
    assert done.returncode == 0, done.stderr
    made = tmp_path / "wardsight-rpi5-2026.12.1.raucb"
    assert f"sha256 {sha256(made)}" in done.stdout
    assert f"wardsight ota publish-system {made.name}" in done.stdout
    checked = info(made, ca)
    assert checked.returncode == 0, checked.stderr
    manifest = json.loads(checked.stdout)
    assert (manifest["compatible"], manifest["version"]) == ("wardsight-rpi5", "2026.12.1")
    images = {slot: fields for entry in manifest["images"] for slot, fields in entry.items()}
    assert images["rootfs"]["filename"] == "system.img" and images["rootfs"]["checksum"] == sha256(system)
    assert images["boot"]["filename"] == "boot.vfat" and images["boot"]["checksum"] == sha256(boot)
    text = subprocess.run(["rauc", f"--keyring={ca}", "info", str(made)], capture_output=True, text=True, check=True)
    assert "Bundle Format: \tverity" in text.stdout
    other_ca, _, _ = make_ca(tmp_path / "other", "Elsewhere")
    assert info(made, other_ca).returncode != 0  # another hospital's devices refuse it


@pytest.mark.usefixtures("tools")
def test_nothing_is_written_for_a_key_others_can_read_a_foreign_signer_or_a_wrong_sbom(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path / "keys", "St Marys")
    _, other_cert, other_key = make_ca(tmp_path / "other", "Elsewhere")
    root = image_tree(tmp_path, ca)
    system, boot = erofs_stand_in(tmp_path / "system.erofs"), fat(tmp_path / "boot.vfat")
    common = ("--system", system, "--boot", boot, "--rootfs", root)
    key.chmod(0o644)
    done = bundle(tmp_path, *common, "--cert", cert, "--key", key)
    assert done.returncode == 1 and "chmod 600" in done.stderr
    key.chmod(0o600)
    done = bundle(tmp_path, *common, "--cert", other_cert, "--key", other_key)  # not under the image's keyring
    assert done.returncode == 1 and "rauc bundle failed" in done.stderr
    (root / "usr/share/wardsight/sbom.cdx.json").write_text("{}")
    done = bundle(tmp_path, *common, "--cert", cert, "--key", key)
    assert done.returncode == 1 and "SBOM" in done.stderr
    done = bundle(tmp_path, "--system", fat(tmp_path / "not-erofs"), "--boot", boot, "--rootfs", root,
                  "--cert", cert, "--key", key)  # fmt: skip
    assert done.returncode == 1 and "not an erofs image" in done.stderr
    assert not list(tmp_path.glob("*.raucb"))


@pytest.mark.usefixtures("tools")
def test_the_version_and_compatible_are_read_from_the_erofs_itself(tmp_path: Path) -> None:
    mkfs, fsck = need("mkfs.erofs"), need("fsck.erofs")
    ca, cert, key = make_ca(tmp_path / "keys", "St Marys")
    root = image_tree(tmp_path, ca, version="2027.1.0-rc1")
    (tmp_path / "out").mkdir()
    subprocess.run([mkfs, str(tmp_path / "out/system.erofs"), str(root)], check=True, capture_output=True)
    fat(tmp_path / "out/boot.vfat")
    assert fsck
    done = bundle(tmp_path, "--image-dir", tmp_path / "out", "--cert", cert, "--key", key, "--out", "next.raucb")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(info(tmp_path / "next.raucb", ca).stdout)
    assert (manifest["compatible"], manifest["version"]) == ("wardsight-rpi5", "2027.1.0-rc1")
