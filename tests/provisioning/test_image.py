import hashlib
import json
import lzma

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning.imagefile import default_out
from tests.provisioning.helpers import make_image, need, read_from_image
from wardsight.bundle import Bundle
from wardsight_cli.main import cli

TOKEN = "wst.0123456789ab.secret-part-of-the-token"


def provision(*args):
    return CliRunner().invoke(cli, ["provision", *args])


def ssh_key_line(comment="installer@laptop"):
    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{raw} {comment}"


@pytest.fixture
def bundle_file(tmp_path):
    path = tmp_path / "3B-12.json"
    Bundle("http://127.0.0.1:8765", TOKEN, insecure_http=True, name="cam-3b12").write(path)
    return path


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("scheme", ["mbr", "gpt"])
def test_the_bundle_lands_on_the_first_fat_partition_of_a_private_copy(tmp_path, bundle_file, scheme):
    need("mcopy")
    image = tmp_path / "wardsight.img"
    offset = make_image(image, scheme, fat_first=scheme == "mbr")
    before = sha(image)
    out = tmp_path / "card.img"
    result = provision("image", "--image", str(image), "--bundle", str(bundle_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"at byte {offset}" in result.output and TOKEN not in result.output
    written = json.loads(read_from_image(out, offset, "/wardsight/enrollment.json"))
    assert written == json.loads(bundle_file.read_text())
    assert out.stat().st_mode & 0o777 == 0o600
    assert sha(image) == before and out.stat().st_size == image.stat().st_size
    assert out.stat().st_blocks * 512 < out.stat().st_size // 2  # the copy stays sparse
    again = provision("image", "--image", str(out), "--bundle", str(bundle_file), "--out", str(tmp_path / "b.img"))
    assert again.exit_code == 0, again.output  # the directory exists already: the bundle is replaced
    assert json.loads(read_from_image(tmp_path / "b.img", offset, "/wardsight/enrollment.json"))["token"] == TOKEN


def test_ssh_keys_are_added_to_the_written_bundle(tmp_path, bundle_file):
    need("mcopy")
    image = tmp_path / "wardsight.img"
    offset = make_image(image, "gpt")
    keys = tmp_path / "authorized_keys"
    lines = [ssh_key_line(), ssh_key_line("second")]
    keys.write_text(f"# the ward's IT\n{lines[0]}\n\n{lines[1]}\n")
    result = provision("image", "--image", str(image), "--bundle", str(bundle_file), "--ssh-key", str(keys))
    assert result.exit_code == 0, result.output
    out = default_out(image, bundle_file)
    assert out.name == "wardsight-3B-12.img"
    written = json.loads(read_from_image(out, offset, "/wardsight/enrollment.json"))
    assert written["ssh_authorized_keys"] == lines and written["name"] == "cam-3b12"
    assert json.loads(bundle_file.read_text()).get("ssh_authorized_keys") is None  # the bundle file is unchanged


@pytest.mark.parametrize(
    "content, message",
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n", "is a private key"),
        ("ssh-ed25519 not-base64!! x\n", "key 1"),
        ("# only a comment\n", "give 1 to 32 public keys"),
    ],
)
def test_bad_ssh_key_files_are_refused_before_anything_is_written(tmp_path, bundle_file, content, message):
    need("mcopy")
    image = tmp_path / "wardsight.img"
    make_image(image, "mbr")
    keys = tmp_path / "keys"
    keys.write_text(content)
    out = tmp_path / "out.img"
    result = provision("image", "--image", str(image), "--bundle", str(bundle_file), "--ssh-key", str(keys),
                       "--out", str(out))  # fmt: skip
    assert result.exit_code == 1 and message in result.output
    assert not out.exists()


def test_images_it_cannot_use_are_refused_and_leave_nothing(tmp_path, bundle_file):
    need("mcopy")
    image = tmp_path / "wardsight.img"
    make_image(image, "gpt")
    with open(image, "r+b") as fh:  # no FAT left: the partition's boot sector wiped
        fh.seek(1024 * 1024)
        fh.write(bytes(512))
    out = tmp_path / "out.img"
    result = provision("image", "--image", str(image), "--bundle", str(bundle_file), "--out", str(out))
    assert result.exit_code == 1 and "has no FAT partition" in result.output and not out.exists()
    packed = tmp_path / "wardsight.img.xz"
    packed.write_bytes(lzma.compress(b"not an image"))
    result = provision("image", "--image", str(packed), "--bundle", str(bundle_file), "--out", str(out))
    assert result.exit_code == 1 and "compressed with xz; decompress it first" in result.output


def test_an_existing_output_is_neither_overwritten_nor_removed(tmp_path, bundle_file):
    need("mcopy")
    image = tmp_path / "wardsight.img"
    make_image(image, "mbr")
    out = tmp_path / "out.img"
    out.write_bytes(b"keep me")
    result = provision("image", "--image", str(image), "--bundle", str(bundle_file), "--out", str(out))
    assert result.exit_code == 1 and "exists" in result.output
    assert out.read_bytes() == b"keep me"
    same = provision("image", "--image", str(image), "--bundle", str(bundle_file), "--out", str(image))
    assert same.exit_code == 1 and "exists" in same.output and image.stat().st_size > 1000


def test_a_bad_bundle_is_refused(tmp_path):
    image = tmp_path / "wardsight.img"
    image.write_bytes(bytes(1024))
    bad = tmp_path / "bundle.json"
    bad.write_text(json.dumps({"server_url": "http://fleet:8765", "token": TOKEN}))
    result = provision("image", "--image", str(image), "--bundle", str(bad))
    assert result.exit_code == 1 and "plain HTTP" in result.output and TOKEN not in result.output
