"""``wardsight provision flash`` onto a regular file standing in for the card (--to-file): bmaptool really runs."""

import json
import subprocess

import pytest
from click.testing import CliRunner

from tests.provisioning.helpers import MIB, make_image, need, read_from_image, root_disk
from wardsight.bundle import Bundle
from wardsight_cli.main import cli

TOKEN = "wst.0123456789ab.secret-part-of-the-token"


@pytest.fixture
def prepared(tmp_path):
    need("mcopy", "bmaptool")
    image = tmp_path / "wardsight.img"
    offset = make_image(image, "gpt")
    bundle = tmp_path / "3B-12.json"
    Bundle("http://127.0.0.1:8765", TOKEN, insecure_http=True, name="cam-3b12").write(bundle)
    work = tmp_path / "work"
    work.mkdir()
    return image, offset, bundle, work


def flash(image, bundle, target, work, *extra, answer=None):
    args = ["provision", "flash", "--image", str(image), "--bundle", str(bundle), "--device", str(target),
            "--to-file", "--tmp-dir", str(work), *extra]  # fmt: skip
    return CliRunner().invoke(cli, args, input=answer)


def same_outside_fat(image, target, offset):
    a, b = image.read_bytes(), target.read_bytes()
    return len(a) == len(b) and a[:offset] == b[:offset] and a[offset + 32 * MIB :] == b[offset + 32 * MIB :]


def test_the_card_gets_the_image_with_the_bundle_and_the_temporary_copy_is_gone(prepared, tmp_path):
    image, offset, bundle, work = prepared
    card = tmp_path / "card.bin"
    result = flash(image, bundle, card, work, "--yes")
    assert result.exit_code == 0, result.output
    assert json.loads(read_from_image(card, offset, "/wardsight/enrollment.json")) == json.loads(bundle.read_text())
    assert same_outside_fat(image, card, offset)
    assert list(work.iterdir()) == []  # the copy held a token


def test_a_shipped_bmap_is_replaced_by_one_of_the_copy(prepared, tmp_path):
    image, offset, bundle, work = prepared
    subprocess.run(["bmaptool", "create", "-o", str(image) + ".bmap", str(image)], check=True, capture_output=True)
    card = tmp_path / "card.bin"
    card.write_bytes(b"\xff" * (64 * MIB))  # old contents: bmaptool writes only mapped blocks
    result = flash(image, bundle, card, work, "--yes")
    assert result.exit_code == 0, result.output
    # The image's own bmap does not map the new bundle's blocks; the copy's bmap does, so the file is there.
    assert json.loads(read_from_image(card, offset, "/wardsight/enrollment.json"))["token"] == TOKEN
    assert list(work.iterdir()) == []


def test_nothing_is_written_unless_the_user_says_yes(prepared, tmp_path):
    image, _, bundle, work = prepared
    card = tmp_path / "card.bin"
    card.write_bytes(b"old card")
    refused = flash(image, bundle, card, work, answer="n\n")
    assert refused.exit_code == 1 and "Everything on it will be lost" in refused.output
    assert "nothing written" in refused.output and card.read_bytes() == b"old card"
    agreed = flash(image, bundle, card, work, answer="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert card.stat().st_size == image.stat().st_size


@pytest.mark.parametrize("device", ["/dev/null", "regular-file"])
def test_only_block_devices_are_flashed_without_the_rehearsal_flag(prepared, tmp_path, device):
    image, _, bundle, _ = prepared
    target = tmp_path / "card.bin" if device == "regular-file" else device
    if device == "regular-file":
        target.write_bytes(b"old")
    args = ["provision", "flash", "--image", str(image), "--bundle", str(bundle), "--device", str(target), "--yes"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "is not a block device" in result.output
    assert device != "regular-file" or target.read_bytes() == b"old"


def test_the_disk_this_machine_runs_from_is_refused_before_any_question(prepared):
    image, _, bundle, _ = prepared
    args = ["provision", "flash", "--image", str(image), "--bundle", str(bundle), "--device", root_disk()]
    result = CliRunner().invoke(cli, args)  # no --yes and no input: a missed refusal would abort at the question
    assert result.exit_code == 1 and "holds the running system" in result.output
    assert "Everything on it will be lost" not in result.output
