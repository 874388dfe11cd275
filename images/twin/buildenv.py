"""What the twin and the arm64 check hand the layers' hooks: the Pi config's settings (``IGconf_<section>_<key>``,
as rpi-image-gen does) with the build host's paths replaced by the test's own: the agent's .deb just built, and a
throwaway RAUC CA certificate instead of the hospital's (made once with openssl and kept in the cache, key 0600; it
signs nothing the devices trust: the twin's image only needs a keyring to install).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from layers import Layer, config_env, tree_digest

KEYRING_SUBJECT = "/O=WardSight twin (test only)/CN=WardSight twin RAUC CA"


def test_keyring(cache: Path) -> Path:
    """The twin's RAUC CA certificate (and its key beside it, 0600), made on first use."""
    out = cache / "rauc-test-ca"
    cert, key = out / "ca.cert.pem", out / "ca.key.pem"
    if cert.is_file() and key.is_file():
        return cert
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", KEYRING_SUBJECT,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            check=True, capture_output=True,
        )  # fmt: skip
    finally:
        os.umask(old)
    cert.chmod(0o644)
    return cert


def hook_env(config: Path, layers: list[Layer], deb: Path, cache: Path) -> dict[str, str]:
    """The environment for the layers' hooks: the config's settings, the .deb and the test keyring."""
    env = config_env(config, layers)
    env.update({"WARDSIGHT_DEB": str(deb), "IGconf_wardsight_deb": str(deb)})
    if any(layer.var_prefix == "rauc" for layer in layers):
        env["IGconf_rauc_keyring"] = str(test_keyring(cache))
    return env


def env_digest(env: dict[str, str]) -> str:
    """For a cache key: the settings and the contents of the files they name."""
    files = [Path(v) for v in env.values() if v.startswith("/") and Path(v).is_file()]
    return "\0".join(f"{k}={v}" for k, v in sorted(env.items())) + tree_digest(files)
