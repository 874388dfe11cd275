"""A/B model slots: the state machine, its one atomic state file, and what each start chooses to run.

The slot store does not load models, so these tests use small real packages (``modelpkg.write_package``)
whose build file is arbitrary bytes; loading and self-testing real models is in ``test_ota_device.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import SlotError
from tests.device.helpers import make_package
from wardsight import modelpkg, wire


def install(store: SlotStore, package: Path, rollout: str = "r1") -> str:
    manifest = modelpkg.read_manifest(package)
    build = manifest.build_for("cpu")
    slot = store.install_target()
    store.prepare(slot)
    store.write(slot, package, manifest, build)
    store.commit(slot, manifest, build, rollout)
    return slot


def confirmed_then_trial(tmp: Path) -> SlotStore:
    """``tmp/slots`` with version 1.0 confirmed in slot a, and 2.0 installed in slot b and begun as a trial (r2)."""
    store = SlotStore(tmp / "slots")
    install(store, make_package(tmp / "p1", "1.0", b"one" * 500))
    store.begin_trial("a", "r1")
    store.boot()
    store.confirm("a")
    install(store, make_package(tmp / "p2", "2.0", b"two" * 500), "r2")
    store.begin_trial("b", "r2")
    return store


def states(store: SlotStore) -> list[tuple[str, str | None]]:
    return [(r.state, r.reason) for r in store.pending_reports()]


def test_fresh_device_runs_the_factory_model(tmp_path):
    store = SlotStore(tmp_path / "slots")
    choice = store.boot()
    assert choice.slot is None and not choice.trial and choice.path is None
    assert store.install_target() == "a"
    assert not (tmp_path / "slots" / "state.json").exists() or store.state.active is None


def test_install_trial_confirm_then_next_update_goes_to_the_other_slot(tmp_path):
    store = SlotStore(tmp_path / "slots")
    slot = install(store, make_package(tmp_path / "p1", "1.0", b"model one" * 100))
    assert slot == "a"
    # Installed is not activated: the next start still runs the factory model.
    assert store.boot().slot is None
    store.begin_trial("a", "r1")
    # A new store reads the same file: this is what the restarted agent sees.
    store = SlotStore(tmp_path / "slots")
    choice = store.boot()
    assert (choice.slot, choice.trial, choice.version) == ("a", True, "1.0")
    assert choice.path is not None and choice.path.read_bytes() == b"model one" * 100
    assert states(store) == [("activated", None)]
    store.confirm("a")
    assert (store.state.active, store.state.previous, store.state.trial) == ("a", None, None)
    assert states(store)[-1] == ("healthy", None)
    assert SlotStore(tmp_path / "slots").boot() == store.boot()  # confirmed: no trial, same every start

    # The next update never touches the running slot.
    assert store.install_target() == "b"
    with pytest.raises(SlotError):
        store.prepare("a")
    install(store, make_package(tmp_path / "p2", "2.0", b"model two" * 100), "r2")
    store.begin_trial("b", "r2")
    assert store.boot().slot == "b"
    store.confirm("b")
    assert (store.state.active, store.state.previous) == ("b", "a")
    # A third update keeps the fallback if it can: both slots are in use, so it replaces the previous one.
    assert store.install_target() == "a"


def test_a_trial_that_keeps_crashing_is_abandoned_and_reported(tmp_path):
    store = SlotStore(tmp_path / "slots", max_trial_boots=2)
    install(store, make_package(tmp_path / "p1", "1.0", b"x" * 1000))
    store.begin_trial("a", "r1")
    # Each start counts into the trial before the model is loaded; a start that never confirms is a crash.
    for _ in range(2):
        choice = SlotStore(tmp_path / "slots", max_trial_boots=2).boot()
        assert (choice.slot, choice.trial) == ("a", True)
    store = SlotStore(tmp_path / "slots", max_trial_boots=2)
    choice = store.boot()
    assert choice.slot is None and not choice.trial  # back to the factory model
    assert store.state.trial is None
    assert store.state.last_failure is not None and store.state.last_failure.reason == "crashed"
    assert states(store) == [("activated", None), ("rolled_back", "crashed")]
    offer = wire.UpdateOffer(rollout_id="r1", model="movenet-multipose", version="1.0", target="m/1.0.wsm")
    assert store.is_rejected(offer)  # never retried
    assert not store.is_rejected(offer.model_copy(update={"version": "1.1"}))


def test_failed_health_check_switches_back_to_the_active_slot(tmp_path):
    store = confirmed_then_trial(tmp_path)
    assert store.boot().slot == "b"
    store.fail_trial("health_check_missed")
    choice = SlotStore(tmp_path / "slots").boot()
    assert (choice.slot, choice.version, choice.trial) == ("a", "1.0", False)
    assert states(store)[-1] == ("rolled_back", "health_check_missed")


def test_a_damaged_slot_is_skipped_down_to_the_factory_model(tmp_path):
    store = confirmed_then_trial(tmp_path)
    store.boot()
    store.confirm("b")
    # Bit rot in the active slot: same size, other bytes.
    path = store.model_path("b")
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    choice = SlotStore(tmp_path / "slots").boot()
    assert (choice.slot, choice.version) == ("a", "1.0")
    store = SlotStore(tmp_path / "slots")
    assert (store.state.active, store.state.slots["b"]) == ("a", None)
    store.model_path("a").unlink()
    assert SlotStore(tmp_path / "slots").boot().slot is None


def test_an_interrupted_install_leaves_the_slot_unused(tmp_path):
    store = SlotStore(tmp_path / "slots")
    package = make_package(tmp_path / "p1", "1.0", b"one" * 500)
    manifest = modelpkg.read_manifest(package)
    build = manifest.build_for("cpu")
    store.prepare("a")
    store.write("a", package, manifest, build)  # files complete, but never recorded (killed here)
    store = SlotStore(tmp_path / "slots")
    assert store.state.slots["a"] is None
    assert store.installed("1.0", "movenet-multipose") is None
    assert store.boot().slot is None
    with pytest.raises(SlotError):
        store.begin_trial("a", "r1")


def test_state_writes_are_atomic_and_a_damaged_state_means_the_factory_model(tmp_path):
    store = SlotStore(tmp_path / "slots")
    install(store, make_package(tmp_path / "p1", "1.0", b"one" * 500))
    before = (tmp_path / "slots" / "state.json").read_bytes()
    # A write killed before its rename leaves a temp file beside the old state: ignored and removed.
    leftover = tmp_path / "slots" / ".state.json.abc123.tmp"
    leftover.write_bytes(b'{"v": 1, "active": "b"')
    store = SlotStore(tmp_path / "slots")
    assert not leftover.exists()
    assert (tmp_path / "slots" / "state.json").read_bytes() == before
    assert store.state.slots["a"] is not None
    # No file of ours is ever half-written, but a failing card can damage it: the factory model still runs.
    (tmp_path / "slots" / "state.json").write_bytes(before[: len(before) // 2])
    store = SlotStore(tmp_path / "slots")
    assert store.boot().slot is None
    assert store.install_target() == "a"  # and the next install starts over


def test_reports_survive_restarts_until_acknowledged(tmp_path):
    store = SlotStore(tmp_path / "slots")
    offer = wire.UpdateOffer(rollout_id="r9", model="movenet-multipose", version="3.0", target="m/3.wsm")
    store.reject(offer, "failed", "self_test_failed")
    store.queue(wire.UpdateReport(rollout_id="r9", model="movenet-multipose", version="3.0", state="deferred"))
    again = SlotStore(tmp_path / "slots")
    assert states(again) == [("failed", "self_test_failed"), ("deferred", None)]
    again.ack(again.pending_reports()[0])
    assert states(SlotStore(tmp_path / "slots")) == [("deferred", None)]
    assert SlotStore(tmp_path / "slots").is_rejected(offer)


def test_state_file_is_synced_and_renamed_not_rewritten_in_place(tmp_path):
    store = SlotStore(tmp_path / "slots")
    install(store, make_package(tmp_path / "p1", "1.0", b"one" * 500))
    inode = os.stat(tmp_path / "slots" / "state.json").st_ino
    store.begin_trial("a", "r1")
    assert os.stat(tmp_path / "slots" / "state.json").st_ino != inode  # a new file renamed over the old
    assert sorted(p.name for p in (tmp_path / "slots").iterdir()) == ["a", "b", "state.json"]
