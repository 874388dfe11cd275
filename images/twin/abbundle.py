"""The A/B twin's system images and RAUC bundles, made on the host from the twin's own rootfs.

Each version is the same build with its own ``/etc/wardsight/system-release`` (``VERSION=``), as a release of the
image would be; the "broken" one is the same again with one defect in the agent it carries: its self-test allows an
inference a billionth of its configured limit, so the self-test on the device fails (``too_slow``) whatever
``device.toml`` says, while the agent otherwise runs.
Bundles are signed by a throwaway release certificate under the twin's throwaway RAUC CA (the keyring its image
carries, buildenv.test_keyring), in RAUC's verity format, compatible ``wardsight-twin-amd64``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from abdisk import COMPATIBLE
from assemble import mke2fs
from buildenv import test_keyring

SIGNER_SUBJECT = "/O=WardSight twin (test only)/CN=WardSight twin release signer"
SIGNER_EXT = "keyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning,emailProtection\n"
DEFECT = (
    "        if slowest > max_invoke_seconds:\n",
    "        if slowest > max_invoke_seconds / 1e9:  # the twin's broken release (images/twin/abbundle.py)\n",
)


def signer(cache: Path) -> tuple[Path, Path]:
    """The release signing certificate and key (0600), issued by the twin's test CA; made once."""
    ca_cert = test_keyring(cache)
    ca_key = ca_cert.with_name("ca.key.pem")
    cert, key, csr = (ca_cert.with_name(n) for n in ("signer.cert.pem", "signer.key.pem", "signer.csr"))
    if cert.is_file() and key.is_file():
        return cert, key
    ext = ca_cert.with_name("signer.ext")
    ext.write_text(SIGNER_EXT)
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", str(key), "-out", str(csr), "-subj", SIGNER_SUBJECT],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650", "-out", str(cert),
                        "-extfile", str(ext)], check=True, capture_output=True)  # fmt: skip
    finally:
        os.umask(old)
    cert.chmod(0o644)
    return cert, key


@contextmanager
def release(rootfs: Path, version: str, *, broken: bool = False) -> Iterator[None]:
    """The rootfs as release ``version`` (and, if ``broken``, with the agent's self-test defect) while inside."""
    release_file = rootfs / "etc/wardsight/system-release"
    original = release_file.read_text()
    if not re.search(r"^VERSION=", original, re.M):
        raise SystemExit(f"twin: {release_file} has no VERSION= line")
    patched: list[tuple[Path, str]] = []
    try:
        release_file.write_text(re.sub(r"^VERSION=.*$", f"VERSION={version}", original, flags=re.M))
        if broken:
            patched = [(p, p.read_text()) for p in rootfs.glob("opt/wardsight/venv/lib/python3*/site-packages/"
                                                               "firmware/ota/selftest.py")]  # fmt: skip
            if not patched:
                raise SystemExit("twin: no firmware/ota/selftest.py in the rootfs's agent venv")
            for path, text in patched:
                if text.count(DEFECT[0]) != 1:
                    raise SystemExit(f"twin: not exactly one {DEFECT[0].strip()!r} in {path}")
                path.write_text(text.replace(*DEFECT))
        yield
    finally:
        release_file.write_text(original)
        for path, text in patched:
            path.write_text(text)


def slot_image(rootfs: Path, version: str, out: Path, size_mib: int, *, broken: bool = False) -> Path:
    with release(rootfs, version, broken=broken):
        mke2fs(rootfs, out, "wardsight-root", size_mib)
    return out


def bundle(image: Path, version: str, out: Path, cache: Path) -> Path:
    """A verity bundle of ``image`` for the twin's slots (``rauc bundle``)."""
    cert, key = signer(cache)
    content = out.with_suffix(".content")
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir(parents=True)
    os.link(image, content / "rootfs.ext4")
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={COMPATIBLE}\nversion={version}\n\n[bundle]\nformat=verity\n\n"
        "[image.rootfs]\nfilename=rootfs.ext4\n"
    )
    out.unlink(missing_ok=True)
    subprocess.run(["rauc", f"--cert={cert}", f"--key={key}", "bundle", str(content), str(out)],
                   check=True, capture_output=True)  # fmt: skip
    shutil.rmtree(content)
    return out
