"""The OTA repository and model library (fleet.ota) and the offline signing tool (signing/), against the
real server on loopback, real SQLite, real Ed25519 keys and python-tuf's real ngclient.

The helpers at the top (:func:`make_package`, :func:`start_fleet`, :class:`OtaFleet`) are shared with
``tests/fleet/ota/test_tuf_attacks.py`` and meant for the device team's tests too: they build a model package from a
tiny file and publish it through the same functions the ``wardsight ota`` commands call.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import urllib3
from aiohttp import FormData
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.ngclient import Updater

from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.audit import log as audit
from fleet.auth.operator import ROLES, Role, has_role
from fleet.config import ServerConfig
from fleet.health.store import record_heartbeat
from fleet.ota.library import routes as library_routes
from fleet.ota.repository.files import REPOSITORY_KEY, bundle_root, open_repository
from fleet.ota.repository.keys import SNAPSHOT_KEY_FILE, TIMESTAMP_KEY_FILE, signer_for
from fleet.ota.repository.metadata import TIMESTAMP_LIFETIME, Repository
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from fleet.web.appkeys import DB_KEY
from signing.client import Server, upload_package
from signing.commands import ota
from signing.errors import OtaCliError
from signing.keys import generate_key, generate_keys, load_signer
from signing.metadata import init_repository, publish, target_info, withdraw
from signing.rotation import rotate_root
from tests.fleet.helpers import api_headers, bearer, insert_device
from wardsight import modelpkg, wire

FAST_HASHING = {"password_memory_kib": 1024, "password_time_cost": 1}


# ---- shared helpers -------------------------------------------------------------------------------------


def make_package(directory: Path, name: str = "pose_net", version: str = "1.0", payload: bytes | None = None) -> Path:
    """A real model package (``.wsm``) holding one tiny CPU build; any bytes do for the repository."""
    directory.mkdir(parents=True, exist_ok=True)
    model = directory / f"{name}-{version}.tflite"
    model.write_bytes(payload if payload is not None else f"{name} {version} weights ".encode() * 64)
    digest, size = modelpkg.describe_file(model)
    manifest = modelpkg.Manifest(
        name=name,
        version=version,
        task="pose",
        license="Apache-2.0",
        builds=[
            modelpkg.Build(
                backend="cpu", runtime="litert", file="model.tflite", sha256=digest, size=size, decoder="movenet"
            )
        ],
    )
    out = directory / f"{name}-{version}.wsm"
    modelpkg.write_package(out, manifest, {"model.tflite": model})
    return out


def admin_token(config: ServerConfig, role: Role = "admin") -> str:
    assert config.database is not None
    db = FleetDB(config.database)
    try:
        return operators.create_api_token(db.db, f"ota-{role}", role, "test", time.time())
    finally:
        db.close()


@dataclass
class OtaFleet:
    """A running fleet server with an OTA repository, the hospital's offline keys and an admin connection."""

    server: BackgroundServer
    config: ServerConfig
    keys: Path
    conn: Server
    work: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def repo(self) -> Repository:
        """The server's repository files, opened with its online keys (as a compromised server could)."""
        return open_repository(self.config)

    @property
    def metadata(self) -> Path:
        return self.repo.metadata_dir

    def root_bytes(self) -> bytes:
        text = bundle_root(self.config)
        assert text is not None
        return text.encode()

    def package(self, name: str = "pose_net", version: str = "1.0", payload: bytes | None = None) -> Path:
        return make_package(self.work / "packages", name, version, payload)

    def publish(self, name: str = "pose_net", version: str = "1.0", payload: bytes | None = None) -> Path:
        """Build a package and publish it with the offline targets key; return the package file."""
        package = self.package(name, version, payload)
        publish(package, self.keys, self.conn)
        return package

    def updater(self, device: str = "device", bootstrap: bytes | None = None, **config: int) -> Updater:
        """python-tuf's real client for a device whose cache is ``<work>/<device>`` (kept between calls)."""
        from tuf.ngclient import UpdaterConfig

        base = self.work / device
        (base / "metadata").mkdir(parents=True, exist_ok=True)
        (base / "targets").mkdir(parents=True, exist_ok=True)
        return Updater(
            str(base / "metadata"),
            f"{self.url}/tuf/metadata/",
            str(base / "targets"),
            f"{self.url}/tuf/targets/",
            config=UpdaterConfig(**config),
            bootstrap=bootstrap or self.root_bytes(),
        )

    def download(self, path: str, device: str = "device") -> bytes:
        """Refresh and download ``path`` as a device would; the verified bytes."""
        updater = self.updater(device)
        updater.refresh()
        info = updater.get_targetinfo(path)
        assert info is not None, f"{path} is not published"
        return Path(updater.download_target(info)).read_bytes()

    def stop(self) -> None:
        self.server.stop()


def start_fleet(work: Path, *, init: bool = True) -> OtaFleet:
    """A fleet server on loopback (plain HTTP, a development setup) with an initialized OTA repository."""
    config = ServerConfig(port=0, database=work / "server" / "fleet.db", insecure_http=True, **FAST_HASHING)
    server = BackgroundServer(config).start()
    conn = Server(server.url, admin_token(config), insecure_http=True)
    keys = work / "offline-keys"
    generate_keys(keys)
    if init:
        init_repository(keys, conn)
    return OtaFleet(server, config, keys, conn, work)


@pytest.fixture
def fleet(tmp_path):
    running = start_fleet(tmp_path)
    yield running
    running.stop()


def http_get(url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return urllib3.request("GET", url, headers=headers, retries=False)


def audit_actions(config: ServerConfig) -> list[str]:
    assert config.database is not None
    db = FleetDB(config.database)
    try:
        return [row["action"] for row in reversed(audit.query(db.db))]
    finally:
        db.close()


def library_rows(config: ServerConfig) -> list[dict]:
    assert config.database is not None
    db = FleetDB(config.database)
    try:
        return list(db.db.query("SELECT * FROM ota_models ORDER BY name, version"))
    finally:
        db.close()


def signed_targets(targets: Targets, *signers: CryptoSigner) -> dict:
    md = Metadata(targets)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_dict()


def fresh_signer() -> CryptoSigner:
    return signer_for(Ed25519PrivateKey.generate())


# ---- keys -----------------------------------------------------------------------------------------------


def test_online_keys_live_in_the_servers_keys_dir(fleet):
    keys_dir = fleet.config.keys_dir or fleet.config.database.parent / "fleet-keys"
    for name in (SNAPSHOT_KEY_FILE, TIMESTAMP_KEY_FILE):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600
    published = json.loads(http_get(f"{fleet.url}/api/v1/ota/online-keys").data)
    root = Metadata[Root].from_bytes(fleet.root_bytes()).signed
    assert root.roles["snapshot"].keyids == [published["snapshot"]["keyid"]]
    assert root.roles["timestamp"].keyids == [published["timestamp"]["keyid"]]
    offline = {load_signer(fleet.keys / n).public_key.keyid for n in ("root.key", "targets.key")}
    assert set(root.roles["root"].keyids) | set(root.roles["targets"].keyids) == offline
    assert not offline & {published[r]["keyid"] for r in ("snapshot", "timestamp")}
    private = [p.name for p in keys_dir.iterdir()]
    assert "root.key" not in private and "targets.key" not in private  # the offline keys never reach the server


# ---- init, upload, publish, download ---------------------------------------------------------------------


def test_upload_stages_and_publish_signs_then_a_device_installs(fleet):
    assert http_get(f"{fleet.url}/api/v1/ota/root").data == fleet.root_bytes()
    package = fleet.package("pose_net", "1.0")
    staged = CliRunner().invoke(
        ota,
        ["upload", str(package), "--server", fleet.url, "--api-token", fleet.conn.api_token, "--insecure-http"],
    )
    assert staged.exit_code == 0, staged.output
    assert json.loads(staged.output)["status"] == "staged"
    [entry] = fleet.conn.get_json("/api/v1/models")["models"]
    assert entry["versions"][0]["status"] == "staged" and entry["versions"][0]["published_at"] is None
    target_url = f"{fleet.url}/tuf/targets/models/pose_net/1.0.wsm"
    assert http_get(target_url).status == 404  # staged packages are not served
    updater = fleet.updater()
    updater.refresh()
    assert updater.get_targetinfo("models/pose_net/1.0.wsm") is None  # nor offered

    result = CliRunner().invoke(
        ota,
        ["publish", str(package), "--keys", str(fleet.keys), "--server", fleet.url, "--insecure-http"],
        env={"WARDSIGHT_API_TOKEN": fleet.conn.api_token},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["targets_version"] == 2 and summary["added"] == ["models/pose_net/1.0.wsm"]

    [entry] = fleet.conn.get_json("/api/v1/models")["models"]
    version = entry["versions"][0]
    assert version["status"] == "published" and version["published_by"].startswith("apitoken:")
    assert version["builds"] == [{"backend": "cpu", "runtime": "litert", "hardware": None}]
    assert version["license"] == "Apache-2.0" and version["sha256"] == modelpkg.describe_file(package)[0]

    device = fleet.updater("device-2")
    device.refresh()
    info = device.get_targetinfo("models/pose_net/1.0.wsm")
    assert info is not None and info.custom["name"] == "pose_net" and info.custom["task"] == "pose"
    downloaded = Path(device.download_target(info))
    assert downloaded.read_bytes() == package.read_bytes()
    manifest = modelpkg.read_manifest(downloaded)
    model = modelpkg.extract_build(downloaded, manifest.build_for("cpu"), fleet.work / "model.tflite")
    assert model.read_bytes().startswith(b"pose_net 1.0 weights")

    partial = http_get(target_url, headers={"Range": "bytes=0-99"})
    assert partial.status == 206 and partial.data == package.read_bytes()[:100]
    ota_actions = [a for a in audit_actions(fleet.config) if a.startswith(("ota.", "model."))]
    assert ota_actions == ["ota.init", "model.upload", "ota.targets"]


def test_publishing_again_and_withdrawing(fleet):
    fleet.publish("pose_net", "1.0")
    with pytest.raises(OtaCliError, match="already published"):
        fleet.publish("pose_net", "1.0")
    other = make_package(fleet.work / "other", "pose_net", "1.0", b"different weights")
    with pytest.raises(OtaCliError, match="HTTP 409"):
        publish(other, fleet.keys, fleet.conn)  # a published version is immutable
    fleet.publish("pose_net", "1.1")
    assert fleet.download("models/pose_net/1.1.wsm")

    withdraw("pose_net", "1.0", fleet.keys, fleet.conn)
    statuses = {v["version"]: v["status"] for v in fleet.conn.get_json("/api/v1/models")["models"][0]["versions"]}
    assert statuses == {"1.1": "published", "1.0": "withdrawn"}
    updater = fleet.updater()
    updater.refresh()
    assert updater.get_targetinfo("models/pose_net/1.0.wsm") is None
    assert http_get(f"{fleet.url}/tuf/targets/models/pose_net/1.0.wsm").status == 404
    with pytest.raises(OtaCliError, match="HTTP 409"):  # nor can it come back with other contents
        publish(other, fleet.keys, fleet.conn)


# ---- what the server refuses ------------------------------------------------------------------------------


def test_server_accepts_only_targets_signed_by_the_offline_key_and_matching_its_files(fleet):
    package = fleet.package("pose_net", "2.0")
    upload_package(package, fleet.conn)
    good = target_info(package)
    current = Metadata[Targets].from_bytes((fleet.metadata / "targets.json").read_bytes()).signed
    targets_key = load_signer(fleet.keys / "targets.key")
    online = fleet.repo.keys
    before = (fleet.metadata / "targets.json").read_bytes(), (fleet.metadata / "timestamp.json").read_bytes()
    actions = audit_actions(fleet.config)

    def attempt(targets: Targets, *signers: CryptoSigner) -> str:
        with pytest.raises(OtaCliError) as refused:
            fleet.conn.post_json("/api/v1/ota/targets", signed_targets(targets, *signers))
        return str(refused.value)

    def variant(version: int = current.version + 1, days: int = 30, **targets: TargetFile) -> Targets:
        return Targets(version=version, expires=datetime.now(UTC) + timedelta(days=days), targets=targets)

    path = good.path
    assert "HTTP 403" in attempt(variant(**{path: good}), fresh_signer())
    assert "HTTP 403" in attempt(variant(**{path: good}), online.snapshot, online.timestamp)
    assert "HTTP 403" in attempt(variant(**{path: good}))  # unsigned
    assert "HTTP 409" in attempt(variant(current.version, **{path: good}), targets_key)
    assert "HTTP 400" in attempt(variant(days=-1, **{path: good}), targets_key)
    wrong_hash = TargetFile(good.length, {"sha256": "0" * 64}, path)
    assert "does not match" in attempt(variant(**{path: wrong_hash}), targets_key)
    wrong_length = TargetFile(good.length + 1, good.hashes, path)
    assert "HTTP 400" in attempt(variant(**{path: wrong_length}), targets_key)
    missing = TargetFile(good.length, good.hashes, "models/pose_net/9.9.wsm")
    assert "not on the server" in attempt(variant(**{missing.path: missing}), targets_key)
    odd = TargetFile(good.length, good.hashes, "../fleet.db")
    assert "HTTP 400" in attempt(variant(**{odd.path: odd}), targets_key)

    assert ((fleet.metadata / "targets.json").read_bytes(), (fleet.metadata / "timestamp.json").read_bytes()) == before
    assert audit_actions(fleet.config) == actions  # nothing stored, nothing audited
    fleet.conn.post_json("/api/v1/ota/targets", signed_targets(variant(**{path: good}), targets_key))
    assert fleet.download(path) == package.read_bytes()  # the same request, properly signed, works


def test_signer_will_not_bless_what_the_server_changed_or_rolled_back(fleet):
    fleet.publish("pose_net", "1.0")
    served = fleet.metadata / "targets.json"
    version_2 = served.read_bytes()
    fleet.publish("pose_net", "1.1")

    # The server (compromised) slips a target into targets.json, keeping the hospital's (now invalid)
    # signature, or signing with some other key.
    current = served.read_bytes()
    md = Metadata[Targets].from_bytes(current)
    evil = fleet.package("backdoor", "1.0")
    md.signed.targets["models/backdoor/1.0.wsm"] = target_info(evil)
    for resign in (False, True):
        if resign:
            md.sign(fresh_signer())
        served.write_bytes(md.to_bytes())
        with pytest.raises(OtaCliError, match="not signed by this targets key"):
            fleet.publish("pose_net", "1.2")
    served.write_bytes(current)
    fleet.publish("pose_net", "1.2")  # the genuine metadata: fine
    fleet.publish("pose_net", "1.3")

    # It replays targets v2 (validly signed by the hospital) to make the signer drop v1.1.
    served.write_bytes(version_2)
    with pytest.raises(OtaCliError, match="rolled back"):
        fleet.publish("pose_net", "1.2")


def test_root_rotation_devices_follow_and_the_old_key_is_retired(fleet):
    fleet.publish("pose_net", "1.0")
    root_v1 = fleet.root_bytes()
    device = fleet.updater("ward-3b", bootstrap=root_v1)
    device.refresh()

    old_root = load_signer(fleet.keys / "root.key")
    generate_key(fleet.work / "next-root.key")
    generate_key(fleet.work / "next-targets.key")
    summary = rotate_root(
        fleet.keys,
        fleet.conn,
        new_root_key=fleet.work / "next-root.key",
        new_targets_key=fleet.work / "next-targets.key",
    )
    assert summary["root_version"] == 2 and summary["targets_version"] == 3
    assert http_get(f"{fleet.url}/tuf/metadata/1.root.json").data == root_v1
    assert (fleet.keys / "root.key").read_bytes() == (fleet.work / "next-root.key").read_bytes()
    assert (fleet.keys / "retired" / "root-until-root-v2.key").read_bytes() != (fleet.keys / "root.key").read_bytes()

    fleet.publish("pose_net", "1.1")  # signed with the new targets key, from the keys dir
    device = fleet.updater("ward-3b", bootstrap=root_v1)  # a device still holding root v1 from its bundle
    device.refresh()
    trusted = Metadata[Root].from_bytes((fleet.work / "ward-3b" / "metadata" / "root.json").read_bytes())
    assert trusted.signed.version == 2  # ngclient walked 1 -> 2 and keeps the newest root it trusts
    assert device.get_targetinfo("models/pose_net/1.1.wsm") is not None

    # The retired root key alone can no longer sign a root: the server refuses v3 ...
    root = Metadata[Root].from_bytes(fleet.root_bytes()).signed
    root.version = 3
    rogue = Metadata(root)
    rogue.sign(old_root)
    with pytest.raises(OtaCliError, match="HTTP 403"):
        fleet.conn.post_json("/api/v1/ota/root", {"root": rogue.to_dict()})
    # ... and a device refuses it when a compromised server serves it anyway.
    (fleet.metadata / "3.root.json").write_bytes(rogue.to_bytes())
    from tuf.api.exceptions import UnsignedMetadataError

    with pytest.raises(UnsignedMetadataError):
        fleet.updater("ward-3b", bootstrap=root_v1).refresh()


def test_rotation_without_new_keys_renews_the_root_and_refuses_a_foreign_key(fleet):
    before = Metadata[Root].from_bytes(fleet.root_bytes()).signed
    later = datetime.now(UTC) + timedelta(days=10)
    rotate_root(fleet.keys, fleet.conn, now=later)
    after = Metadata[Root].from_bytes(fleet.root_bytes()).signed
    assert after.version == 2 and after.expires > before.expires and after.keys == before.keys
    stranger = fleet.work / "stranger"
    generate_keys(stranger)
    with pytest.raises(OtaCliError, match="not a root key"):
        rotate_root(stranger, fleet.conn)
    # An admin token is not enough to swap the root: a root v3 signed only by a new (stranger's) key.
    takeover = Metadata[Root].from_bytes(fleet.root_bytes()).signed
    takeover.version = 3
    own = load_signer(stranger / "root.key")
    for keyid in list(takeover.roles["root"].keyids):
        takeover.revoke_key(keyid, "root")
    takeover.add_key(own.public_key, "root")
    md = Metadata(takeover)
    md.sign(own)
    with pytest.raises(OtaCliError, match="not signed by the current root"):
        fleet.conn.post_json("/api/v1/ota/root", {"root": md.to_dict()})
    assert Metadata[Root].from_bytes(fleet.root_bytes()).signed.version == 2
    with pytest.raises(OtaCliError, match="HTTP 409"):  # only one repository per server
        init_repository(stranger, fleet.conn)


def test_a_root_that_gives_an_online_key_a_signing_role_is_refused(fleet):
    root_key = load_signer(fleet.keys / "root.key")
    root = Metadata[Root].from_bytes(fleet.root_bytes()).signed
    root.version += 1
    root.add_key(fleet.repo.keys.timestamp.public_key, "targets")
    md = Metadata(root)
    md.sign(root_key)
    with pytest.raises(OtaCliError, match="an online key may not sign targets"):
        fleet.conn.post_json("/api/v1/ota/root", {"root": md.to_dict()})
    assert Metadata[Root].from_bytes(fleet.root_bytes()).signed.version == 1


# ---- online roles stay fresh --------------------------------------------------------------------------------


def _versions(repo: Repository) -> tuple[int, int]:
    snapshot, timestamp = repo.read("snapshot", Snapshot), repo.read("timestamp", Timestamp)
    assert snapshot is not None and timestamp is not None
    return snapshot.signed.version, timestamp.signed.version


def test_snapshot_and_timestamp_are_resigned_before_they_expire(tmp_path):
    fleet = start_fleet(tmp_path)
    fleet.stop()
    repo = fleet.repo
    timestamp = repo.read("timestamp", Timestamp)
    assert timestamp is not None
    signed_at = timestamp.signed.expires - TIMESTAMP_LIFETIME
    assert repo.refresh_online(signed_at + timedelta(hours=11)) == []
    assert _versions(repo) == (1, 1)
    assert repo.refresh_online(signed_at + timedelta(hours=13)) == ["timestamp"]
    assert _versions(repo) == (1, 2)
    assert repo.refresh_online(signed_at + timedelta(days=4)) == ["snapshot", "timestamp"]
    assert _versions(repo) == (2, 3)
    expires = repo.read("timestamp", Timestamp)
    assert expires is not None and expires.signed.expires == (signed_at + timedelta(days=5)).replace(microsecond=0)


async def test_the_server_resigns_on_its_own(aiohttp_client, tmp_path):
    fleet = await asyncio.to_thread(start_fleet, tmp_path)
    await asyncio.to_thread(fleet.stop)
    assert _versions(fleet.repo) == (1, 1)
    two_days_on = time.time() + 2 * 24 * 3600
    await aiohttp_client(create_app(fleet.config, clock=lambda: two_days_on))  # a server that was down for two days
    for _ in range(100):
        if _versions(fleet.repo) != (1, 1):
            break
        await asyncio.sleep(0.02)
    assert _versions(fleet.repo) == (1, 2)  # the snapshot still has five of its seven days
    timestamp = fleet.repo.read("timestamp", Timestamp)
    assert timestamp is not None and not timestamp.signed.is_expired(datetime.fromtimestamp(two_days_on, UTC))


# ---- the API: roles, bad input, where models run -----------------------------------------------------------


@pytest.fixture
def api_config(tmp_path):
    return ServerConfig(database=tmp_path / "fleet.db", **FAST_HASHING)


async def test_role_of_every_ota_route(aiohttp_client, api_config, tmp_path):
    client = await aiohttp_client(create_app(api_config))
    db = client.server.app[DB_KEY].db
    tokens = {role: operators.create_api_token(db, role, role, "test", time.time()) for role in ROLES}
    package = make_package(tmp_path / "pkg").read_bytes()
    # (method, path, least role or None for public, body, content type, status for an allowed caller)
    routes = [
        ("GET", "/api/v1/ota/online-keys", None, None, None, 200),
        ("GET", "/api/v1/ota/root", None, None, None, 404),  # not initialized yet
        ("GET", "/tuf/metadata/timestamp.json", None, None, None, 404),
        ("GET", "/api/v1/ota/status", "viewer", None, None, 200),
        ("GET", "/api/v1/models", "viewer", None, None, 200),
        ("POST", "/api/v1/models", "operator", package, "application/octet-stream", (200, 201)),
        ("POST", "/api/v1/ota/targets", "admin", b"{}", "application/json", 400),
        ("POST", "/api/v1/ota/root", "admin", b"{}", "application/json", 400),
    ]
    wrong = []
    for method, path, least, body, ctype, ok in routes:
        for caller in ("anonymous", *ROLES):
            headers = {"Content-Type": ctype} if ctype else {}
            if caller != "anonymous":
                headers.update(bearer(tokens[caller]))
            if least is None:
                expected = ok
            elif caller == "anonymous":
                expected = 401
            elif not has_role(caller, least):
                expected = 403
            else:
                expected = ok
            resp = await client.request(method, path, data=body, headers=headers)
            allowed = expected if isinstance(expected, tuple) else (expected,)
            if resp.status not in allowed or resp.content_type != "application/json":
                wrong.append(f"{caller} {method} {path}: {resp.status} {await resp.text()}")
    assert not wrong, "\n".join(wrong)


async def test_bad_uploads_are_refused_and_store_nothing(aiohttp_client, api_config, tmp_path, monkeypatch):
    client = await aiohttp_client(create_app(api_config))
    app = client.server.app
    auth = api_headers(client, "operator", "ops")
    good = make_package(tmp_path / "good")

    bad_build = tmp_path / "bad.wsm"  # the manifest's sha256 for the build is not the file's
    with tarfile.open(good) as src, tarfile.open(bad_build, "w") as dst:
        manifest = json.loads(src.extractfile("manifest.json").read())
        manifest["builds"][0]["sha256"] = "f" * 64
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        dst.addfile(info, io.BytesIO(data))
        member = src.getmember("model.tflite")
        dst.addfile(member, src.extractfile(member))
    extra = tmp_path / "extra.wsm"  # a member the manifest does not name
    with tarfile.open(good) as src, tarfile.open(extra, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo("notes.txt")
        info.size = 2
        dst.addfile(info, io.BytesIO(b"hi"))

    cases = [
        (b"not a tar at all", "application/octet-stream", 400),
        (bad_build.read_bytes(), "application/octet-stream", 400),
        (extra.read_bytes(), "application/octet-stream", 400),
        (b"", "application/octet-stream", 400),
        (good.read_bytes(), "application/json", 415),
        (good.read_bytes(), "text/plain", 415),
    ]
    for body, ctype, status in cases:
        resp = await client.post("/api/v1/models", data=body, headers={**auth, "Content-Type": ctype})
        assert resp.status == status, await resp.text()
        assert "error" in await resp.json()
    monkeypatch.setattr(library_routes, "MAX_PACKAGE_BYTES", 1000)
    resp = await client.post(
        "/api/v1/models", data=good.read_bytes(), headers={**auth, "Content-Type": "application/octet-stream"}
    )
    assert resp.status == 413
    monkeypatch.undo()

    repo = app[REPOSITORY_KEY]
    assert list(app[DB_KEY].db.query("SELECT * FROM ota_models")) == []
    assert not list(repo.incoming_dir.glob("*")) and not repo.targets_dir.exists()
    assert audit.query(app[DB_KEY].db, action="model.upload") == []

    form = FormData()
    form.add_field("package", good.read_bytes(), filename="pose.wsm", content_type="application/octet-stream")
    resp = await client.post("/api/v1/models", data=form, headers=auth)  # the console's form upload
    assert resp.status == 201, await resp.text()
    assert (repo.targets_dir / "models/pose_net/1.0.wsm").read_bytes() == good.read_bytes()

    for body in (b"{not json", b'{"signed": {}}', json.dumps({"root": {}, "extra": 1}).encode()):
        admin = api_headers(client, "admin", "adm")
        for path in ("/api/v1/ota/targets", "/api/v1/ota/root"):
            resp = await client.post(path, data=body, headers=admin | {"Content-Type": "application/json"})
            assert resp.status == 400 and "error" in await resp.json(), (path, body)
    assert not repo.metadata_dir.exists()


async def test_metadata_and_targets_paths_are_confined(aiohttp_client, api_config):
    client = await aiohttp_client(create_app(api_config))
    for path in (
        "/tuf/metadata/..%2Ffleet.db",
        "/tuf/metadata/fleet.db",
        "/tuf/metadata/0.root.json",
        "/tuf/targets/models/..%2F..%2Ffleet.db",
        "/tuf/targets/models/pose_net/..%2F..%2F..%2Ffleet.db",
        "/tuf/targets/models/pose_net/1.0.wsm",
        "/tuf/targets/../fleet.db",
    ):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert b"SQLite" not in await resp.read()


async def test_library_shows_where_each_version_runs(aiohttp_client, api_config, tmp_path):
    client = await aiohttp_client(create_app(api_config))
    app = client.server.app
    db = app[DB_KEY].db
    viewer = api_headers(client, "viewer", "viewer")
    operator = api_headers(client, "operator", "ops")
    for version in ("1.0", "1.1"):
        body = make_package(tmp_path / version, "pose_net", version).read_bytes()
        resp = await client.post(
            "/api/v1/models",
            data=body,
            headers=operator | {"Content-Type": "application/octet-stream"},
        )
        assert resp.status == 201
    reports = {"cam-a": "1.0", "cam-b": "1.0", "cam-c": "1.1", "cam-d": "0.9", "cam-gone": "1.1"}
    for name, version in reports.items():
        status = "revoked" if name == "cam-gone" else "active"
        insert_device(db, name, name=name, enrolled_at=time.time(), status=status)
        beat = wire.Health(device_id=name, sent_at=time.time(), uptime_s=5, agent_version="0.1.0", accelerator="cpu",
                           models={"pose_net": version, "face_mask": "2.0"})  # fmt: skip
        record_heartbeat(db, name, beat, time.time())

    resp = await client.get("/api/v1/models", headers=viewer)
    models = {m["name"]: m for m in (await resp.json())["models"]}
    pose = models["pose_net"]
    assert {v["version"]: v["devices"] for v in pose["versions"]} == {"1.1": 1, "1.0": 2}
    assert [v["version"] for v in pose["versions"]] == ["1.1", "1.0"]
    assert {v: r["devices"] for v, r in pose["running"].items()} == {"1.1": 1, "1.0": 2, "0.9": 1}
    assert sorted(pose["running"]["1.0"]["device_ids"]) == ["cam-a", "cam-b"]
    assert models["face_mask"]["versions"] == [] and models["face_mask"]["running"]["2.0"]["devices"] == 4


def test_bundle_root_before_and_after_init(tmp_path):
    config = ServerConfig(database=tmp_path / "fleet.db")
    assert bundle_root(config) is None and bundle_root(tmp_path) is None
    fleet = start_fleet(tmp_path / "with")
    try:
        text = bundle_root(fleet.config)
        assert text is not None and bundle_root(fleet.config.database.parent) == text
        root = Metadata[Root].from_bytes(text.encode())
        root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
        assert not root.signed.consistent_snapshot
    finally:
        fleet.stop()


def test_files_live_in_the_data_dir(fleet):
    ota = fleet.config.database.parent / "ota"
    assert sorted(p.name for p in (ota / "metadata").iterdir() if not p.name.startswith(".")) == [
        "1.root.json",
        "root.json",
        "snapshot.json",
        "targets.json",
        "timestamp.json",
    ]
    fleet.publish()
    assert (ota / "targets" / "models" / "pose_net" / "1.0.wsm").is_file()
    assert not any(os.scandir(ota / "incoming"))
