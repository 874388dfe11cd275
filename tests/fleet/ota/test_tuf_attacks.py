"""The attacks TUF defends model updates against, each against the real fleet server on loopback and
python-tuf's real client (``tuf.ngclient.Updater``, its default urllib3 fetcher over plain HTTP).

A compromised server or mirror is simulated by writing the server's repository files directly (and, where
the attacker is assumed to hold the server's online keys, by signing with them). Every test first shows the
same step succeeding without the attack, so it fails if the defence were gone rather than passing because
nothing worked.

Freeze: ngclient judges expiry by the device's real clock (``TrustedMetadataSet.reference_time`` is
``datetime.now()``; python-tuf's own tests patch ``datetime`` or use freezegun). Here nothing is patched: the
server's signing time is injected instead (``Repository.refresh_online(now=...)``), so the metadata a frozen
server keeps serving was signed two days ago and its one-day timestamp has run out by the real clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api.exceptions import (
    BadVersionNumberError,
    DownloadLengthMismatchError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    UnsignedMetadataError,
)
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp

from signing.errors import OtaCliError
from signing.keys import load_signer
from signing.metadata import target_info
from tests.fleet.ota.test_ota_repository import fresh_signer, start_fleet

MODEL = "models/pose_net/1.0.wsm"


@pytest.fixture
def fleet(tmp_path):
    running = start_fleet(tmp_path)
    yield running
    running.stop()


def now() -> datetime:
    return datetime.now(UTC)


def served(fleet, name: str) -> bytes:
    return (fleet.metadata / name).read_bytes()


def serve(fleet, name: str, data: bytes) -> None:
    (fleet.metadata / name).write_bytes(data)


def resign_online(fleet, at: datetime | None = None) -> None:
    """What a server holding the online keys can do: sign a snapshot and timestamp over whatever
    targets.json it serves."""
    assert fleet.repo.refresh_online(at or now(), force=True) == ["snapshot", "timestamp"]


def forge_online(fleet, targets_meta: MetaFile, bump: int = 1) -> None:
    """Sign, with the server's online keys, a snapshot listing ``targets_meta`` and a timestamp for it
    (versions ``bump`` above the served ones)."""
    keys = fleet.repo.keys
    old_snapshot = Metadata[Snapshot].from_bytes(served(fleet, "snapshot.json")).signed
    old_timestamp = Metadata[Timestamp].from_bytes(served(fleet, "timestamp.json")).signed
    snapshot = Metadata(
        Snapshot(
            version=old_snapshot.version + bump, expires=now() + timedelta(days=7), meta={"targets.json": targets_meta}
        )
    )
    snapshot.sign(keys.snapshot)
    serve(fleet, "snapshot.json", snapshot.to_bytes())
    timestamp = Metadata(
        Timestamp(
            version=old_timestamp.version + bump,
            expires=now() + timedelta(days=1),
            snapshot_meta=MetaFile.from_data(snapshot.signed.version, snapshot.to_bytes(), ["sha256"]),
        )
    )
    timestamp.sign(keys.timestamp)
    serve(fleet, "timestamp.json", timestamp.to_bytes())


def malicious_targets(fleet, signer) -> bytes:
    """targets.json v(N+1) that also lists a malicious package (uploaded to the server's disk), signed by ``signer``."""
    evil = fleet.package("pose_net", "6.6", b"exfiltrate everything")
    info = target_info(evil)
    (fleet.repo.targets_dir / info.path).parent.mkdir(parents=True, exist_ok=True)
    (fleet.repo.targets_dir / info.path).write_bytes(evil.read_bytes())
    md = Metadata[Targets].from_bytes(served(fleet, "targets.json"))
    md.signed.targets[info.path] = info
    md.signed.version += 1
    md.sign(signer)
    return md.to_bytes()


# ---- arbitrary installation ------------------------------------------------------------------------------


def test_a_tampered_model_file_is_refused(fleet):
    package = fleet.publish("pose_net", "1.0")
    assert fleet.download(MODEL, device="before") == package.read_bytes()

    stored = fleet.repo.targets_dir / MODEL
    data = bytearray(stored.read_bytes())
    at = data.index(b"pose_net 1.0 weights")
    data[at : at + 8] = b"POISONED"  # same length: only the hash can tell
    stored.write_bytes(bytes(data))

    updater = fleet.updater("after")
    updater.refresh()
    info = updater.get_targetinfo(MODEL)
    assert info is not None
    with pytest.raises(LengthOrHashMismatchError):
        updater.download_target(info)
    assert not any((fleet.work / "after" / "targets").iterdir())  # nothing kept


def test_metadata_signed_by_the_wrong_key_is_refused(fleet):
    fleet.publish("pose_net", "1.0")
    device = fleet.updater()
    device.refresh()

    # A compromised server signs its own targets.json (with a new model) with a key of its choosing and makes
    # snapshot and timestamp consistent with it: only the signature is wrong.
    good = served(fleet, "targets.json")
    serve(fleet, "targets.json", malicious_targets(fleet, fresh_signer()))
    resign_online(fleet)
    with pytest.raises(UnsignedMetadataError):
        fleet.updater().refresh()

    # The same for a timestamp signed by a stranger (over the good repository state; another device, as
    # the first one has since trusted the attacker's snapshot and would now refuse v2 as a rollback).
    serve(fleet, "targets.json", good)
    resign_online(fleet)
    fleet.updater("other").refresh()
    timestamp = Metadata[Timestamp].from_bytes(served(fleet, "timestamp.json"))
    timestamp.signed.version += 1
    timestamp.sign(fresh_signer())
    serve(fleet, "timestamp.json", timestamp.to_bytes())
    with pytest.raises(UnsignedMetadataError):
        fleet.updater("other").refresh()


def test_a_compromised_online_key_cannot_publish_a_model(fleet):
    fleet.publish("pose_net", "1.0")
    online = fleet.repo.keys
    evil_path = "models/pose_net/6.6.wsm"

    # Through the API: targets metadata signed with the snapshot and timestamp keys is refused.
    forged = malicious_targets(fleet, online.snapshot)
    md = Metadata[Targets].from_bytes(forged)
    md.sign(online.timestamp, append=True)
    with pytest.raises(OtaCliError, match="HTTP 403"):
        fleet.conn.post_json("/api/v1/ota/targets", md.to_dict())

    # Behind the API: the server serves it anyway, with snapshot and timestamp signed by its online keys.
    good = served(fleet, "targets.json")
    serve(fleet, "targets.json", md.to_bytes())
    resign_online(fleet)
    device = fleet.updater("victim")
    with pytest.raises(UnsignedMetadataError):
        device.refresh()
    with pytest.raises(UnsignedMetadataError):
        fleet.updater("victim").get_targetinfo(evil_path)

    # Control: the same change signed with the hospital's offline targets key is installable.
    serve(fleet, "targets.json", good)
    serve(fleet, "targets.json", malicious_targets(fleet, load_signer(fleet.keys / "targets.key")))
    resign_online(fleet)
    assert fleet.download(evil_path, device="control") == (fleet.repo.targets_dir / evil_path).read_bytes()


# ---- rollback, freeze, mix-and-match ---------------------------------------------------------------------


def test_rollback_to_older_metadata_is_refused(fleet):
    fleet.publish("pose_net", "1.0")
    old = {name: served(fleet, name) for name in ("timestamp.json", "snapshot.json", "targets.json")}
    fleet.publish("pose_net", "1.1")
    device = fleet.updater()
    device.refresh()
    assert device.get_targetinfo("models/pose_net/1.1.wsm") is not None

    # A mirror replays the older (validly signed, unexpired) repository state that lacks 1.1.
    for name, data in old.items():
        serve(fleet, name, data)
    newcomer = fleet.updater("newcomer")  # a device that never saw newer metadata accepts it: it is valid
    newcomer.refresh()
    assert newcomer.get_targetinfo("models/pose_net/1.1.wsm") is None
    with pytest.raises(BadVersionNumberError):
        fleet.updater().refresh()  # the device that saw timestamp v3 refuses v2

    # A server with the online keys signs *newer* snapshot and timestamp versions around the old targets.
    forge_online(fleet, MetaFile.from_data(2, old["targets.json"], ["sha256"]), bump=5)
    with pytest.raises(BadVersionNumberError, match="targets.json"):
        fleet.updater().refresh()


def test_freeze_expired_timestamp_is_refused(fleet):
    fleet.publish("pose_net", "1.0")
    fleet.updater().refresh()  # fresh metadata: fine

    # The server stopped re-signing two days ago: what it serves was signed then (timestamp lifetime one day).
    resign_online(fleet, at=now() - timedelta(days=2))
    with pytest.raises(ExpiredMetadataError):
        fleet.updater().refresh()
    with pytest.raises(ExpiredMetadataError):
        fleet.updater("newcomer").refresh()

    # The server's re-signer (what its background task runs) ends the freeze.
    assert fleet.repo.refresh_online(now()) == ["timestamp"]  # the 7-day snapshot had days left
    device = fleet.updater()
    device.refresh()
    assert device.get_targetinfo(MODEL) is not None


def test_mix_and_match_of_snapshot_and_targets_is_refused(fleet):
    fleet.publish("pose_net", "1.0")
    old_targets = served(fleet, "targets.json")
    fleet.publish("pose_net", "1.1")
    fleet.updater("control").refresh()

    # The current snapshot (targets v3, with its hash) served with the older targets.json v2.
    serve(fleet, "targets.json", old_targets)
    with pytest.raises(LengthOrHashMismatchError):
        fleet.updater("a").refresh()

    # A snapshot (signed with the online key) naming targets v3 by version only, served with targets v2.
    forge_online(fleet, MetaFile(version=3))
    with pytest.raises(BadVersionNumberError):
        fleet.updater("b").refresh()


# ---- endless data ------------------------------------------------------------------------------------------


def test_endless_data_is_cut_off(fleet):
    package = fleet.publish("pose_net", "1.0")
    assert fleet.download(MODEL, device="control") == package.read_bytes()

    # A target longer than its signed length: 256 MiB more (sparse on the server's disk).
    stored = fleet.repo.targets_dir / MODEL
    with open(stored, "r+b") as fh:
        fh.truncate(package.stat().st_size + 256 * 1024 * 1024)
    updater = fleet.updater("target")
    updater.refresh()
    info = updater.get_targetinfo(MODEL)
    assert info is not None
    started = time.monotonic()
    with pytest.raises(DownloadLengthMismatchError):
        updater.download_target(info)
    assert time.monotonic() - started < 10  # stopped after the declared length, not at the end

    # A snapshot longer than the length the timestamp gives for it.
    resign_online(fleet)
    snapshot = served(fleet, "snapshot.json")
    serve(fleet, "snapshot.json", snapshot[:-1] + b" " * 100_000 + snapshot[-1:])
    with pytest.raises(DownloadLengthMismatchError):
        fleet.updater("snapshot").refresh()

    # A timestamp (whose length nothing declares) past UpdaterConfig's cap.
    resign_online(fleet)
    timestamp = served(fleet, "timestamp.json")
    fleet.updater("capped", timestamp_max_length=len(timestamp)).refresh()  # at the cap: fine
    serve(fleet, "timestamp.json", timestamp[:-1] + b" " * 20_000 + timestamp[-1:])
    with pytest.raises(DownloadLengthMismatchError):
        fleet.updater("timestamp").refresh()
