"""The hospital's offline keys (signing.keys) and ``wardsight ota keys``: private files, optionally encrypted.

Moved from tests/test_ota_repository.py (it needs no fleet server).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from signing.commands import ota
from signing.errors import OtaCliError
from signing.keys import generate_keys, load_signer


def test_offline_keys_are_private_files_and_can_be_encrypted(tmp_path):
    plain = generate_keys(tmp_path / "plain")
    for name in ("root.key", "targets.key"):
        assert stat.S_IMODE((tmp_path / "plain" / name).stat().st_mode) == 0o600
    assert plain["root"] != plain["targets"]
    assert load_signer(tmp_path / "plain" / "root.key").public_key.keyid == plain["root"]
    with pytest.raises(OtaCliError, match="refusing to overwrite"):
        generate_keys(tmp_path / "plain")

    sealed = generate_keys(tmp_path / "sealed", b"long hospital passphrase")
    pem = (tmp_path / "sealed" / "targets.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    with pytest.raises(OtaCliError, match="passphrase is needed"):
        load_signer(tmp_path / "sealed" / "targets.key")
    with pytest.raises(OtaCliError, match="wrong passphrase"):
        load_signer(tmp_path / "sealed" / "targets.key", b"guess")
    asked: list[Path] = []
    signer = load_signer(tmp_path / "sealed" / "targets.key", lambda p: asked.append(p) or b"long hospital passphrase")
    assert signer.public_key.keyid == sealed["targets"] and asked == [tmp_path / "sealed" / "targets.key"]

    result = CliRunner().invoke(
        ota, ["keys", "--out", str(tmp_path / "cli"), "--encrypt"], input="pw-123456\npw-123456\n"
    )
    assert result.exit_code == 0, result.output
    assert b"ENCRYPTED" in (tmp_path / "cli" / "root.key").read_bytes()
