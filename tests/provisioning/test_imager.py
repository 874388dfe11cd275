import gzip
import hashlib
import json
import lzma
import zipfile
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from wardsight_cli.main import cli

SCHEMA = json.loads((Path(__file__).parent / "data" / "os-list-schema.json").read_text())
RAW = bytes(range(256)) * 4096 + b"the end"  # 1 MiB and a bit


def validate(listing):
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(listing)


def manifest(tmp_path, *args):
    out = tmp_path / "os-list.json"
    result = CliRunner().invoke(cli, ["provision", "imager-manifest", *args, "--out", str(out)])
    return result, (json.loads(out.read_text()) if out.exists() else None)


def test_the_os_list_validates_against_imagers_schema_with_right_sizes_and_hashes(tmp_path):
    raw = tmp_path / "wardsight-2026.12.img"
    raw.write_bytes(RAW)
    packed = tmp_path / "wardsight-2026.12.img.xz"
    packed.write_bytes(lzma.compress(RAW))
    base = ["--url-base", "https://it.example.org/wardsight/", "--release-date", "2026-12-07"]
    result, listing = manifest(tmp_path, "--image", str(raw), "--image", str(packed), *base)
    assert result.exit_code == 0, result.output
    validate(listing)
    plain, xz = listing["os_list"]
    raw_sha = hashlib.sha256(RAW).hexdigest()
    assert plain["url"] == "https://it.example.org/wardsight/wardsight-2026.12.img"
    assert (plain["extract_size"], plain["extract_sha256"]) == (len(RAW), raw_sha)
    assert (plain["image_download_size"], plain["image_download_sha256"]) == (len(RAW), raw_sha)
    assert (xz["extract_size"], xz["extract_sha256"]) == (len(RAW), raw_sha)
    assert xz["image_download_size"] == packed.stat().st_size
    assert xz["image_download_sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert xz["name"] == "WardSight (wardsight-2026.12.img.xz)" and xz["release_date"] == "2026-12-07"
    assert xz["devices"] == ["pi5", "pi4"] and xz["init_format"] == "none"
    assert xz["icon"] == "https://it.example.org/wardsight/wardsight.png"


@pytest.mark.parametrize("kind", ["gz", "zip"])
def test_gzip_and_zip_images_are_measured_inside(tmp_path, kind):
    path = tmp_path / f"w.img.{kind}"
    if kind == "gz":
        path.write_bytes(gzip.compress(RAW))
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("w.img", RAW)
    result, listing = manifest(tmp_path, "--image", str(path), "--url-base", "https://x.example/w", "--name", "Ward")
    assert result.exit_code == 0, result.output
    validate(listing)
    entry = listing["os_list"][0]
    assert entry["name"] == "Ward" and entry["extract_sha256"] == hashlib.sha256(RAW).hexdigest()
    assert len(entry["release_date"]) == 10


def test_the_schema_check_catches_what_imager_would_reject(tmp_path):
    raw = tmp_path / "w.img"
    raw.write_bytes(RAW)
    _, listing = manifest(tmp_path, "--image", str(raw), "--url-base", "https://x.example/w")
    del listing["os_list"][0]["icon"]
    with pytest.raises(jsonschema.ValidationError):
        validate(listing)


@pytest.mark.parametrize(
    "name, content, extra, message",
    [
        ("w.img.zst", b"\x28\xb5\x2f\xfd", [], "publish .img.xz instead"),
        ("w.img.xz", b"not xz at all", [], "cannot read the image"),
        ("w.img", RAW, ["--release-date", "7.12.2026"], "is not YYYY-MM-DD"),
        ("w.img", RAW, ["--url-base", "ftp://x"], "must be an http(s) URL"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, name, content, extra, message):
    path = tmp_path / name
    path.write_bytes(content)
    base = [] if "--url-base" in extra else ["--url-base", "https://x.example/w"]
    result, listing = manifest(tmp_path, "--image", str(path), *base, *extra)
    assert result.exit_code == 1 and message in result.output and listing is None
