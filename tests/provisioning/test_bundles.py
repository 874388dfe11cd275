"""``wardsight provision bundles`` against a real fleet server on loopback (TLS with its own CA)."""

import csv
import json
import time

import cv2
import pytest
from click.testing import CliRunner

from fleet.accounts import service as operators
from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from provisioning import batch, labels
from provisioning.errors import ProvisionError
from provisioning.fleetapi import FleetApi
from provisioning.roster import parse_roster
from wardsight.bundle import Bundle
from wardsight_cli.main import cli

WARD = """site,ward,room,name,tags
st-marys,3B,3B-12,,
st-marys,3B,3B-14,cam-3b14,window corner
st-marys,3B,3B-16,cam-3b16-bed1,
st-marys,3B,3B-16,cam-3b16-bed2,
"""


class Fleet:
    def __init__(self, tmp_path):
        self.config = ServerConfig(port=0, database=tmp_path / "server" / "fleet.db")
        self.server = BackgroundServer(self.config).start()
        self.operator = self.api_token("operator")

    def api_token(self, role):
        db = FleetDB(self.config.database)
        try:
            return operators.create_api_token(db.db, f"prov-{role}", role, "alice", time.time())
        finally:
            db.close()

    def tokens(self):
        db = FleetDB(self.config.database)
        try:
            return db.list_tokens(time.time(), include_finished=True)
        finally:
            db.close()

    def env(self, api_token=None):
        return {"WARDSIGHT_FLEET_URL": self.server.url, "WARDSIGHT_FLEET_CA": str(self.server.ca_path),
                "WARDSIGHT_API_TOKEN": api_token or self.operator}  # fmt: skip

    def api(self):
        return FleetApi(self.server.url, self.operator, self.server.ca_pem)


@pytest.fixture
def fleet(tmp_path):
    running = Fleet(tmp_path)
    try:
        yield running
    finally:
        running.server.stop()


def bundles(tmp_path, env, *extra, text=WARD):
    ward = tmp_path / "ward-3b.csv"
    ward.write_text(text)
    args = ["--data-dir", str(tmp_path / "data"), "provision", "bundles", "--csv", str(ward), "--out",
            str(tmp_path / "3b"), *extra]  # fmt: skip
    return CliRunner().invoke(cli, args, env=env)


def test_a_ward_gets_scoped_tokens_private_bundles_and_labels_without_tokens(tmp_path, fleet):
    result = bundles(tmp_path, fleet.env(), "--ttl", "3600", "--approval")
    assert result.exit_code == 0, result.output
    out = tmp_path / "3b"
    tokens = {t["id"]: t for t in fleet.tokens()}
    assert len(tokens) == 4
    made = {}
    for stem in ("3B-12", "cam-3b14", "cam-3b16-bed1", "cam-3b16-bed2"):
        path = out / f"{stem}.json"
        assert path.stat().st_mode & 0o777 == 0o600
        bundle = Bundle.load(path)
        made[stem] = bundle
        token = tokens[bundle.token.split(".")[1]]
        assert (token["site"], token["ward"], token["require_approval"]) == ("st-marys", "3B", True)
        assert token["expires_at"] - token["created_at"] == 3600
        assert bundle.server_url == fleet.server.url and bundle.ca_pem == fleet.server.ca_pem
        assert bundle.name == (None if stem == "3B-12" else stem)
        assert bundle.token not in result.output
    assert tokens[made["cam-3b14"].token.split(".")[1]]["room"] == "3B-14"
    listed = list(csv.DictReader((out / "devices.csv").open()))
    assert [r["bundle_file"] for r in listed] == ["3B-12.json", "cam-3b14.json", "cam-3b16-bed1.json",
                                                  "cam-3b16-bed2.json"]  # fmt: skip
    assert listed[1]["tags"] == "window corner" and set(r["bundle_id"] for r in listed) == set(tokens)
    printed = (out / "devices.csv").read_text() + (out / "labels.pdf").read_bytes().decode("latin-1")
    assert not any(b.token.split(".")[2] in printed for b in made.values())

    page = cv2.imread(str(out / "labels.png"), cv2.IMREAD_GRAYSCALE)
    (x, y), (w, h) = labels.ORIGIN, labels.LABEL
    second = page[y : y + h, x + labels.PITCH[0] : x + labels.PITCH[0] + w]  # the second device's label
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(second)
    bundle_id = made["cam-3b14"].token.split(".")[1]
    assert text == f"wardsight:device?v=1&site=st-marys&ward=3B&room=3B-14&name=cam-3b14&bundle={bundle_id}"
    pdf = (out / "labels.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.4") and b"/Count 1" in pdf

    enroll = ["device", "enroll", "--bundle", str(out / "cam-3b14.json"), "--name", "cam-3b14"]
    enrolled = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "dev"), *enroll])
    assert enrolled.exit_code == 0, enrolled.output
    assert "in room 3B-14" in enrolled.output and "(pending)" in enrolled.output


@pytest.mark.parametrize(
    "text, message",
    [
        (WARD + "st-marys,3B,3B 18,,\n", "line 6, column room: '3B 18' must be"),
        (WARD + "st-marys,3B,3B-12,,\n", "line 6, column room: '3B-12' is already on line 2"),
    ],
)
def test_a_bad_csv_makes_no_token_and_no_file(tmp_path, fleet, text, message):
    result = bundles(tmp_path, fleet.env(), text=text)
    assert result.exit_code == 1 and message in result.output and "nothing was created" in result.output
    assert fleet.tokens() == [] and not (tmp_path / "3b").exists()


def test_api_tokens_that_cannot_make_tokens_are_told_apart(tmp_path, fleet):
    wrong = bundles(tmp_path, fleet.env("wsa.0000000000000000.not-a-real-token"))
    assert wrong.exit_code == 1 and "HTTP 401" in wrong.output and "check the API token" in wrong.output
    viewer = bundles(tmp_path, fleet.env(fleet.api_token("viewer")))
    assert viewer.exit_code == 1 and "HTTP 403" in viewer.output and "needs the operator role" in viewer.output
    missing = bundles(tmp_path, {**fleet.env(), "WARDSIGHT_API_TOKEN": ""})
    assert missing.exit_code == 1 and "API token is needed" in missing.output
    no_ca = bundles(tmp_path, {**fleet.env(), "WARDSIGHT_FLEET_CA": ""})
    assert no_ca.exit_code == 1 and "needs the fleet CA" in no_ca.output
    assert fleet.tokens() == [] and not (tmp_path / "3b").exists()


def test_a_directory_that_is_not_empty_is_refused_before_any_token(tmp_path, fleet):
    (tmp_path / "3b").mkdir()
    (tmp_path / "3b" / "3B-12.json").write_text("an earlier batch")
    result = bundles(tmp_path, fleet.env())
    assert result.exit_code == 1 and "is not an empty directory" in result.output
    assert fleet.tokens() == [] and (tmp_path / "3b" / "3B-12.json").read_text() == "an earlier batch"


class FailsAtThird(FleetApi):
    def create_token(self, room, **scope):
        if room == "3B-16":
            raise ProvisionError("POST /api/v1/tokens: HTTP 503: overloaded")
        return super().create_token(room, **scope)


def test_when_the_server_refuses_a_token_midway_the_earlier_ones_are_revoked(tmp_path, fleet):
    api = FailsAtThird(fleet.server.url, fleet.operator, fleet.server.ca_pem)
    settings = batch.BundleSettings(fleet.server.url, fleet.server.ca_pem)
    with pytest.raises(ProvisionError) as caught:
        batch.provision_ward(parse_roster(WARD), api, settings, tmp_path / "3b")
    message = "line 4: POST /api/v1/tokens: HTTP 503: overloaded; revoked the 2 token(s) made before it"
    assert message in str(caught.value)
    made = fleet.tokens()
    assert len(made) == 2 and all(t["revoked_at"] is not None for t in made)
    assert not (tmp_path / "3b").exists()


def test_when_writing_fails_the_files_go_and_the_tokens_are_revoked(tmp_path, fleet, monkeypatch):
    def full_disk(made, out):
        (out / "labels.png").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch, "write_labels", full_disk)
    settings = batch.BundleSettings(fleet.server.url, fleet.server.ca_pem)
    with pytest.raises(OSError, match="No space"):
        batch.provision_ward(parse_roster(WARD), fleet.api(), settings, tmp_path / "3b")
    assert not (tmp_path / "3b").exists()
    made = fleet.tokens()
    assert len(made) == 4 and all(t["revoked_at"] is not None for t in made)


def test_the_ota_root_goes_into_the_bundles_when_the_fleet_has_one(tmp_path, fleet):
    assert fleet.api().tuf_root() is None  # before 'wardsight ota init'
    root = json.dumps({"signed": {"_type": "root", "version": 1}, "signatures": []}, indent=1)
    metadata = fleet.config.database.parent / "ota" / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / "root.json").write_text(root)
    settings = batch.BundleSettings(fleet.server.url, fleet.server.ca_pem)
    made = batch.provision_ward(parse_roster(WARD)[:1], fleet.api(), settings, tmp_path / "3b")
    assert Bundle.load(made[0].bundle).tuf_root == root  # byte for byte, as the server serves it


def test_a_plain_http_device_url_needs_the_development_flag_and_makes_no_token_without_it(tmp_path, fleet):
    result = bundles(tmp_path, fleet.env(), "--device-server", "http://10.0.0.5:8765")
    assert result.exit_code == 1 and "plain HTTP" in result.output
    assert fleet.tokens() == [] and not (tmp_path / "3b").exists()
    other = bundles(tmp_path, fleet.env(), "--device-server", "https://fleet.ward.example:8765")
    assert other.exit_code == 0, other.output
    assert Bundle.load(tmp_path / "3b" / "3B-12.json").server_url == "https://fleet.ward.example:8765"
