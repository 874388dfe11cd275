"""The attacks on system updates, against the real fleet server on loopback and the device's own client: its TUF
client (python-tuf's ngclient), the bundle downloader and :class:`~firmware.ota.system_client.SystemClient` over the
fake ``rauc`` (RAUC's command line as a real process: its signature check, its manifest, its install).

A compromised server or mirror is simulated as in ``test_tuf_attacks.py``: by writing the repository's files and,
where the attacker holds them, signing with the server's online keys; and by sending the device whatever offer it
likes (the offer is the server's word: only what TUF signed is trusted). Each attack is first shown failing to make
the device install anything, and then the same step without the attack doing so, so a test fails if the defence
were gone rather than passing because nothing worked.

The signed floor (``wardsight ota system-floor``): a rollout's ``rollback`` is the server's word, so the lowest
version a board may install is signed by the hospital in the targets metadata, and a server that lowers or removes
it (with the online keys, by replaying older metadata, or by the offer it sends) still finds the device refusing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, Targets

from firmware.jobs.hooks import SelfTestOutcome
from firmware.ota.rauc import Rauc
from firmware.ota.system_client import SystemClient, SystemSettings, bundle_downloader
from firmware.ota.system_update import SystemUpdater
from firmware.ota.tufclient import TufClient
from signing.bundles import BundleManifest, bundle_target_info, publish_bundle, read_manifest
from signing.errors import OtaCliError
from signing.floors import set_floor
from signing.metadata import resign_targets
from tests.device.fakes.rauc import ENV, FakeRaucSystem, make_bundle
from tests.fleet.ota.test_ota_repository import start_fleet
from tests.fleet.ota.test_tuf_attacks import forge_online, resign_online, serve, served
from wardsight import wire

BOARD = "wardsight-rpi5"


class Reports:
    """The update endpoint as the device's client sees it (here: what the device said, for the test to read)."""

    def __init__(self) -> None:
        self.sent: list[wire.UpdateReport] = []

    def poll(self) -> wire.UpdateOffer | None:
        return None

    def report(self, report: wire.UpdateReport) -> bool:
        self.sent.append(report)
        return True

    def last(self) -> tuple[str, str | None, str | None]:
        report = self.sent[-1]
        return report.state, report.reason, report.detail


class Device:
    """A board on the fake RAUC, running ``running``, its TUF root from the fleet's repository."""

    def __init__(self, work: Path, fleet, monkeypatch: pytest.MonkeyPatch, running: str = "1.1.0") -> None:
        self.fake = FakeRaucSystem(work / "rauc", compatible=BOARD, factory_version=running)
        monkeypatch.setenv(ENV, str(self.fake.path))
        self.dir = work / "device"
        (self.dir / "ota").mkdir(parents=True)
        (self.dir / "ota" / "root.json").write_bytes(fleet.root_bytes())
        self.fleet, self.reports, self.reboots = fleet, Reports(), []

    def client(self) -> SystemClient:
        updater = SystemUpdater(self.dir, Rauc(self.fake.command), reboot=self.reboots.append,
                                self_test=lambda: SelfTestOutcome(True, "ok", ""), health=lambda: "ok",
                                boot_id=self.fake.boot_id, running_version=self.fake.release_version)  # fmt: skip
        tuf = TufClient(self.dir / "ota", self.fleet.url, None, timeout=10.0)
        return SystemClient(updater, self.reports, tuf, bundle_downloader(self.dir, None, timeout=10.0),
                            settings=SystemSettings(max_attempts=2))  # fmt: skip

    def downloaded(self) -> list[Path]:
        system = self.dir / "ota" / "system"
        return [p for d in ("partial", "verified") if (system / d).is_dir() for p in (system / d).iterdir()]

    def installs(self) -> list[list[str]]:
        return self.fake.calls("install")


def offer(version: str, compatible: str = BOARD, *, model: str | None = None, rollback: bool = False,
          rollout_id: str = "ro-attack") -> wire.UpdateOffer:  # fmt: skip
    return wire.UpdateOffer(rollout_id=rollout_id, model=model or compatible, version=version, kind="system",
                            target=wire.system_target_path(compatible, version), rollback=rollback)  # fmt: skip


@pytest.fixture
def fleet(tmp_path):
    running = start_fleet(tmp_path)
    yield running
    running.stop()


def publish(fleet, tmp_path: Path, version: str, compatible: str = BOARD, *, says: str | None = None) -> Path:
    """Publish a bundle with the hospital's offline targets key (``says``: the compatible its own manifest names,
    when the hospital mislabelled it)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    made = make_bundle(tmp_path / f"{compatible}-{version}.raucb", compatible=says or compatible, version=version,
                       payload=f"{compatible} {version} root filesystem".encode() * 512)  # fmt: skip
    publish_bundle(made, fleet.keys, fleet.conn, compatible=compatible, version=version, read=lambda path: None)
    return made


# ---- rollback ----------------------------------------------------------------------------------------------------


def test_rollback_to_an_older_system_is_refused(fleet, tmp_path, monkeypatch):
    device = Device(tmp_path, fleet, monkeypatch, running="1.1.0")
    publish(fleet, tmp_path, "1.0.0")
    old = {name: served(fleet, name) for name in ("timestamp.json", "snapshot.json", "targets.json")}
    publish(fleet, tmp_path, "1.2.0")
    current = {name: served(fleet, name) for name in old}
    client = device.client()

    # A signed older bundle offered as an update (not a rollback): refused before anything is downloaded.
    assert client.handle(offer("1.0.0")) == "rejected"
    assert device.reports.last() == ("rejected", "not_newer", "1.0.0 is older than the running 1.1.0")
    assert device.downloaded() == [] and device.installs() == []

    # A mirror replays the older repository state; the device that saw newer metadata refuses it, even with the
    # online keys wrapping the old targets in newer snapshot and timestamp versions.
    for name, data in old.items():
        serve(fleet, name, data)
    assert client.handle(offer("1.2.0")) == "retry"
    forge_online(fleet, MetaFile.from_data(Metadata[Targets].from_bytes(old["targets.json"]).signed.version,
                                           old["targets.json"], ["sha256"]), bump=5)  # fmt: skip
    assert client.handle(offer("1.2.0")) == "failed"
    state, reason, detail = device.reports.last()
    assert (state, reason) == ("failed", "tuf_error") and "BadVersionNumberError" in (detail or "")
    assert device.downloaded() == [] and device.installs() == []

    # Control: the current state installs 1.2.0, and an explicit rollback may go back to the signed 1.0.0.
    for name, data in current.items():
        serve(fleet, name, data)
    resign_online(fleet)
    device = Device(tmp_path / "control", fleet, monkeypatch, running="1.1.0")
    client = device.client()
    assert client.handle(offer("1.2.0")) == "installing" and device.reboots == ["tryboot"]
    rollback = Device(tmp_path / "rollback", fleet, monkeypatch, running="1.1.0").client()
    assert rollback.handle(offer("1.0.0", rollback=True)) == "installing"


# ---- a compromised online key ---------------------------------------------------------------------------------


def test_a_bundle_signed_by_the_online_keys_only_is_refused(fleet, tmp_path, monkeypatch):
    device = Device(tmp_path, fleet, monkeypatch, running="1.0.0")
    publish(fleet, tmp_path, "1.0.0")
    online = fleet.repo.keys
    evil = make_bundle(tmp_path / "evil.raucb", compatible=BOARD, version="6.6.6", payload=b"backdoor" * 512)
    info = bundle_target_info(evil, BundleManifest(BOARD, "6.6.6"))
    (fleet.repo.targets_dir / info.path).parent.mkdir(parents=True, exist_ok=True)
    (fleet.repo.targets_dir / info.path).write_bytes(evil.read_bytes())
    md = Metadata[Targets].from_bytes(served(fleet, "targets.json"))
    md.signed.targets[info.path] = info
    md.signed.version += 1
    md.sign(online.snapshot)
    md.sign(online.timestamp, append=True)

    # Through the API: refused (only the offline targets key publishes).
    with pytest.raises(OtaCliError, match="HTTP 403"):
        fleet.conn.post_json("/api/v1/ota/targets", md.to_dict())
    # Behind the API: served anyway, with snapshot and timestamp re-signed by the online keys.
    good = served(fleet, "targets.json")
    serve(fleet, "targets.json", md.to_bytes())
    resign_online(fleet)
    client = device.client()
    assert client.handle(offer("6.6.6")) == "retry"
    assert client.handle(offer("6.6.6")) == "failed"
    state, reason, detail = device.reports.last()
    assert (state, reason) == ("failed", "tuf_error") and "UnsignedMetadataError" in (detail or "")
    assert device.downloaded() == [] and device.installs() == [] and device.reboots == []

    # Control: the same bundle signed with the hospital's offline targets key installs.
    serve(fleet, "targets.json", good)
    resign_online(fleet)
    publish_bundle(evil, fleet.keys, fleet.conn, read=functools.partial(read_manifest, rauc=device.fake.command))
    control = Device(tmp_path / "control", fleet, monkeypatch, running="1.0.0")
    assert control.client().handle(offer("6.6.6")) == "installing"


# ---- another board -------------------------------------------------------------------------------------------


def test_a_bundle_for_another_board_is_refused_before_download_or_before_install(fleet, tmp_path, monkeypatch):
    device = Device(tmp_path, fleet, monkeypatch, running="1.0.0")
    publish(fleet, tmp_path, "1.1.0", "wardsight-rpi4")
    client = device.client()

    # Signed for the Pi 4: known from the signed target, so nothing is downloaded, whatever the offer says.
    for n, lying in enumerate((None, BOARD)):
        assert client.handle(offer("1.1.0", "wardsight-rpi4", model=lying, rollout_id=f"ro-{n}")) == "rejected"
        assert device.reports.last() == ("rejected", "incompatible", "the bundle is signed for 'wardsight-rpi4',"
                                         " this system is 'wardsight-rpi5'")  # fmt: skip
    assert device.downloaded() == []
    assert client.handle(offer("1.1.0", "wardsight-rpi4", rollout_id="ro-0")) == "ended", "refused once, for good"

    # Signed as a Pi 5 bundle, but its own manifest says Pi 4 (mislabelled when signed without rauc): RAUC reads the
    # manifest after the download and the bundle is refused before anything is installed.
    publish(fleet, tmp_path / "mislabelled", "1.2.0", says="wardsight-rpi4")
    assert client.handle(offer("1.2.0")) == "rejected"
    assert device.reports.last() == ("rejected", "incompatible", "the bundle is for 'wardsight-rpi4', this system"
                                     " is 'wardsight-rpi5'")  # fmt: skip
    assert device.installs() == [] and device.reboots == [] and device.fake.primary == "rootfs.0"
    assert client.updater.state.phase == "idle" and device.downloaded() == [], "the refused bundle is deleted"

    # Control: a bundle for this board, signed as such, installs.
    publish(fleet, tmp_path / "good", "1.3.0")
    assert client.handle(offer("1.3.0")) == "installing" and device.reboots == ["tryboot"]


# ---- the signed floor ------------------------------------------------------------------------------------------

FLOOR_DETAIL = "a rollback to 1.0.0 is below 1.0.5, the lowest wardsight-rpi5 version the hospital signed"


def forged_floor(fleet, floor: str | None) -> bytes:
    """The served targets one version up with the floor lowered (or removed), signed with the online keys."""
    md = Metadata[Targets].from_bytes(served(fleet, "targets.json"))
    if floor is None:
        del md.signed.unrecognized_fields["custom"]
    else:
        md.signed.unrecognized_fields["custom"] = {"system_floors": {BOARD: floor}}
    md.signed.version += 1
    md.sign(fleet.repo.keys.snapshot)
    md.sign(fleet.repo.keys.timestamp, append=True)
    return md.to_bytes()


def test_the_server_cannot_lower_or_remove_the_signed_floor(fleet, tmp_path, monkeypatch):
    publish(fleet, tmp_path / "old", "1.0.0")  # say, with a known CVE
    publish(fleet, tmp_path / "fixed", "1.0.5")
    before_floor = {name: served(fleet, name) for name in ("timestamp.json", "snapshot.json", "targets.json")}
    set_floor(BOARD, "1.0.5", fleet.keys, fleet.conn)
    good = {name: served(fleet, name) for name in before_floor}
    device = Device(tmp_path, fleet, monkeypatch, running="1.1.0")
    client = device.client()

    # The server's rollback offer (or an offer lying about the board, or no rollback at all) below the signed floor:
    # refused before anything is downloaded.
    for n, sent in enumerate((offer("1.0.0", rollback=True), offer("1.0.0", model="wardsight-rpi4", rollback=True,
                              rollout_id="ro-lie"), offer("1.0.0", rollout_id="ro-plain"))):  # fmt: skip
        assert client.handle(sent) == "rejected"
        detail = FLOOR_DETAIL if sent.rollback else FLOOR_DETAIL.replace("a rollback to ", "")
        assert device.reports.last() == ("rejected", "below_signed_floor", detail), n
    assert device.downloaded() == [] and device.installs() == [] and device.reboots == []

    # The hospital's own targets from before the floor, replayed in a snapshot and timestamp signed with the online
    # keys: the device has seen the floor's newer targets version and refuses to go back.
    for name, data in before_floor.items():
        serve(fleet, name, data)
    old = Metadata[Targets].from_bytes(before_floor["targets.json"])
    forge_online(fleet, MetaFile.from_data(old.signed.version, before_floor["targets.json"], ["sha256"]), bump=5)
    sent = offer("1.0.0", rollback=True, rollout_id="ro-replayed")
    assert client.handle(sent) == "retry" and client.handle(sent) == "failed"
    state, reason, detail = device.reports.last()
    assert (state, reason) == ("failed", "tuf_error") and "BadVersionNumberError" in (detail or "")
    assert device.downloaded() == [] and device.installs() == [] and device.reboots == []

    # The floor lowered or removed with the keys a server holds: the API refuses it, and served behind its back a
    # device (here one that never saw the floor) refuses the metadata (not signed by the targets key).
    for name, data in good.items():
        serve(fleet, name, data)
    fresh = Device(tmp_path / "fresh", fleet, monkeypatch, running="1.1.0")
    client = fresh.client()
    for n, floor in enumerate(("1.0.0", None)):
        forged = forged_floor(fleet, floor)
        with pytest.raises(OtaCliError, match="HTTP 403"):
            fleet.conn.post_json("/api/v1/ota/targets", Metadata[Targets].from_bytes(forged).to_dict())
        serve(fleet, "targets.json", forged)
        resign_online(fleet)
        sent = offer("1.0.0", rollback=True, rollout_id=f"ro-forged-{n}")
        assert client.handle(sent) == "retry" and client.handle(sent) == "failed"
        state, reason, detail = fresh.reports.last()
        assert (state, reason) == ("failed", "tuf_error") and "UnsignedMetadataError" in (detail or "")
    assert fresh.downloaded() == [] and fresh.installs() == [] and fresh.reboots == []

    # Control: the hospital's metadata served again, a rollback to the floor itself installs ...
    for name, data in good.items():
        serve(fleet, name, data)
    resign_online(fleet)
    control = Device(tmp_path / "control", fleet, monkeypatch, running="1.1.0")
    assert control.client().handle(offer("1.0.5", rollback=True)) == "installing" and control.reboots == ["tryboot"]
    # ... and once the hospital itself removes the floor (offline key), the rollback to 1.0.0 does too.
    set_floor(BOARD, None, fleet.keys, fleet.conn)
    lowered = Device(tmp_path / "lowered", fleet, monkeypatch, running="1.1.0")
    assert lowered.client().handle(offer("1.0.0", rollback=True)) == "installing"


def test_a_malformed_signed_floor_refuses_every_system_update(fleet, tmp_path, monkeypatch):
    """The hospital signed a floor the device cannot read: it cannot tell what is allowed, so nothing is (fail
    closed), until the hospital signs a readable one."""
    publish(fleet, tmp_path, "1.2.0")
    resign_targets(fleet.keys, fleet.conn,
                   lambda t: t.unrecognized_fields.update({"custom": {"system_floors": {BOARD: 105}}}))  # fmt: skip
    device = Device(tmp_path, fleet, monkeypatch, running="1.1.0")
    client = device.client()
    assert client.handle(offer("1.2.0")) == "rejected"
    assert device.reports.last() == ("rejected", "floor_unreadable", "the floor for wardsight-rpi5 is not a version"
                                     " string")  # fmt: skip
    assert device.downloaded() == []
    assert set_floor(BOARD, "1.0.0", fleet.keys, fleet.conn)["repaired"].endswith("is not a version string")
    assert client.handle(offer("1.2.0", rollout_id="ro-readable")) == "installing"
