"""Accelerator builds over the air, per backend, on the fakes: a Hailo HEF and a Coral (Edge TPU) model go through
the same slots as the CPU build, against the real fleet server (fixtures of test_ota_device).

The self-test runs in its separate process, as on a device: there the fake ``hailo_platform`` is imported as
``hailo_platform`` (tests/device/fakes on its PYTHONPATH) and describes the same machine through
``$FAKE_HAILO_WORLD`` (tests/device/ota_accel_world.py); the fake Edge TPU comes from a ``sitecustomize`` with
``$FAKE_EDGETPU=1``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from accelerators import hailo
from accelerators.fallback import FallbackBackend
from firmware.ota import selftest
from firmware.ota.boot import open_on_accelerator, slot_backend
from firmware.ota.builds import DeviceTarget, Refused, choose, target_of
from firmware.ota.health import FrameCounts
from tests.device import ota_accel_world as world
from tests.device import test_coral, test_ota_device
from tests.device.fakes import hailo_platform as fake_hp
from tests.device.fakes.hailo_platform import _fake
from tests.device.test_coral import build_ssd_model
from tests.device.test_ota_device import manager_for
from wardsight import modelpkg

ROOT = Path(__file__).resolve().parents[2]
fleet = test_ota_device.fleet  # the real fleet server (a module's fixture)
edgetpu = test_coral.edgetpu  # the fake Edge TPU in this process
HAILO8L = {"backend": "hailo", "hardware": "hailo8l", "runtime_version": world.RUNTIME}


@pytest.fixture
def hp(monkeypatch: pytest.MonkeyPatch):
    """The fake Hailo-8L, in this process and in the self-test's."""
    _fake.reset()
    monkeypatch.setitem(sys.modules, "hailo_platform", fake_hp)
    world.hailo8l_world(_fake)
    monkeypatch.setenv("FAKE_HAILO_WORLD", "tests.device.ota_accel_world:hailo8l_world")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests" / "device" / "fakes"))
    yield fake_hp
    _fake.reset()


def build(backend: str, runtime: str, decoder: str, path: Path, **kw: str) -> modelpkg.Build:
    digest, size = modelpkg.describe_file(path)
    return modelpkg.Build(backend=backend, runtime=runtime, file=path.name, sha256=digest, size=size, decoder=decoder,
                          input={"long_side": 256, "multiple": 32, "dtype": "uint8"}, **kw)  # fmt: skip


def package(directory: Path, version: str, movenet: Path, *extra: tuple[modelpkg.Build, Path]) -> Path:
    """A package with the CPU MoveNet build and ``extra`` accelerator builds."""
    directory.mkdir(parents=True, exist_ok=True)
    builds = [(build("cpu", "litert", "movenet_multipose", movenet), movenet), *extra]
    manifest = modelpkg.Manifest(name="movenet-multipose", version=version, task="pose", license="Apache-2.0",
                                 builds=[b for b, _ in builds])  # fmt: skip
    out = directory / f"pkg-{version}.wsm"
    modelpkg.write_package(out, manifest, {b.file: p for b, p in builds})
    return out


def hef(directory: Path, chip: str, **labels: str | None) -> tuple[modelpkg.Build, Path]:
    """A HEF file compiled for ``chip``, labelled in the manifest as ``labels`` say (default: truthfully)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"pose_{chip}.hef"
    path.write_bytes(world.hef_bytes(chip))
    fields = {"hardware": chip, "runtime_version": world.RUNTIME, **labels}
    return build("hailo", "hailort", "yolov8_pose", path, **fields), path


def hailo_manager(device, slots, choice, **kw):
    return manager_for(device, slots, choice, backend="hailo", hardware="hailo8l", runtime_version=world.RUNTIME,
                       **kw)  # fmt: skip


# ---- which build: the rules ----------------------------------------------------------------------------------


def test_build_choice_per_chip_and_runtime(tmp_path, movenet_path):
    cpu = build("cpu", "litert", "movenet_multipose", movenet_path)
    h8, _ = hef(tmp_path, "hailo8")
    h8l, _ = hef(tmp_path, "hailo8l")
    old = h8l.model_copy(update={"runtime_version": "4.18.0"})
    on_8l = DeviceTarget("hailo", "hailo8l", "4.23.1")  # a patch release apart loads the same HEF
    on_8 = DeviceTarget("hailo", "hailo8", "4.23.0")
    assert choose([cpu, h8, h8l], on_8l) is h8l
    assert choose([cpu, h8l, h8], on_8) is h8  # the exact chip first
    assert choose([cpu, h8l], on_8) is h8l  # HailoRT loads a Hailo-8L HEF on a Hailo-8
    assert choose([cpu, h8, h8l], DeviceTarget("cpu")) is cpu
    cases = [
        ([cpu, h8], on_8l, "hef_for_another_chip"),
        ([cpu, old], on_8l, "hef_for_another_hailort"),
        ([cpu, h8l.model_copy(update={"runtime_version": None})], on_8l, "hef_for_another_hailort"),
        ([cpu, h8l.model_copy(update={"hardware": None})], on_8l, "hef_for_another_chip"),
        ([cpu], on_8l, "no_build_for_backend"),
        ([cpu, h8l], DeviceTarget("coral"), "no_build_for_backend"),
        ([cpu, h8l], DeviceTarget("hailo", None, None), "hailo_unidentified"),
    ]
    for builds, target, code in cases:
        with pytest.raises(Refused) as refused:
            choose(builds, target)
        assert refused.value.code == code, (target, refused.value.detail)
    with pytest.raises(Refused, match=r"HailoRT 4\.18\.0"):
        choose([old], on_8l)


def test_old_manifests_stay_valid_and_new_ones_read_on_old_agents(tmp_path, movenet_path):
    """A manifest without runtime_version (as before) reads; one written without it carries no such key."""
    out = package(tmp_path, "1.0", movenet_path)
    manifest = modelpkg.read_manifest(out)
    assert manifest.builds[0].runtime_version is None
    with modelpkg.open_package(out) as (tar, listed):
        raw = tar.extractfile(listed[modelpkg.MANIFEST]).read()  # type: ignore[union-attr]
    assert b"runtime_version" not in raw and b"hardware" not in raw
    h8l, path = hef(tmp_path, "hailo8l")
    assert modelpkg.read_manifest(package(tmp_path / "h", "1.1", movenet_path, (h8l, path))).builds[1] == h8l


def test_a_hailo_device_that_fell_back_to_the_cpu_takes_the_cpu_build(hp):
    _fake.register_hef("/configured.hef", world.pose_hef(_fake, _fake.DeviceArchitectureTypes.HAILO8L))
    running = FallbackBackend(hailo.HailoPoseBackend("/configured.hef"), lambda: hailo.HailoPoseBackend("/x"))
    assert target_of(running) == DeviceTarget("hailo", "hailo8l", world.RUNTIME)
    running.fallback_reason = "hailo failed 5 times in a row"
    assert target_of(running) == DeviceTarget("cpu")
    running.close()


# ---- Hailo, through the fleet ------------------------------------------------------------------------------------


class Frames:
    """The agent's frame counts while ``backend`` analyses the built-in frame (``run``)."""

    def __init__(self, backend) -> None:
        self.backend, self.counts = backend, FrameCounts(0, 0, 0)

    def run(self, n: int) -> FrameCounts:
        frame = selftest.test_frame()
        for _ in range(n):
            c = self.counts
            try:
                self.backend.detect(frame)
                self.counts = FrameCounts(c.captured + 1, c.processed + 1, c.failed)
            except Exception:
                self.counts = FrameCounts(c.captured + 1, c.processed, c.failed + 1)
        return self.counts

    def __call__(self) -> FrameCounts:
        return self.counts


def configured(hp) -> FallbackBackend:
    """The device's configured HEF, opened as the agent opens it at start."""
    path = "/usr/share/hailo-models/pose_h8l.hef"
    _fake.register_hef(path, world.pose_hef(_fake, _fake.DeviceArchitectureTypes.HAILO8L))
    return FallbackBackend(hailo.HailoPoseBackend(path), lambda: hailo.HailoPoseBackend(path))


def test_a_hailo_build_is_installed_self_tested_on_the_hailo_activated_and_healthy(fleet, hp, movenet_path, tmp_path):
    fleet.publisher.publish(package(tmp_path / "pkg", "6.0", movenet_path, hef(tmp_path / "hef", "hailo8l")))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.0")
    slots = device.slots()
    restarts: list[str] = []
    running, choice = open_on_accelerator(slots, configured(hp), slot_backend, lambda: configured(hp))
    assert choice.slot is None
    manager = hailo_manager(device, slots, choice, restart=restarts.append)
    assert manager.step() == "activating", slots.state.last_failure
    assert restarts == ["activate"]
    installed = slots.state.slots[slots.state.trial.slot]
    assert (installed.build.backend, installed.build.hardware) == ("hailo", "hailo8l")
    running.close()
    # The restart: the configured HEF is opened, says "Hailo-8L, HailoRT 4.23", and the trial slot takes its place.
    backend, choice = open_on_accelerator(slots, configured(hp), slot_backend, lambda: configured(hp))
    try:
        assert choice.trial and choice.version == "6.0"
        assert isinstance(backend, hailo.HailoPoseBackend)
        assert backend.hef_path == str(choice.path)
        frames = Frames(backend)
        trial = hailo_manager(device, slots, choice, frames=frames, health_frames=3)
        assert frames.run(3).failed == 0
        assert trial.step() == "confirmed"
    finally:
        backend.close()
    assert fleet.reports(rollout)[-2:] == [("activated", None), ("healthy", None)]
    assert slots.state.active == choice.slot


def test_a_hef_for_the_hailo8_is_refused_on_a_hailo8l_before_download(fleet, hp, movenet_path, tmp_path):
    fleet.publisher.publish(package(tmp_path / "pkg", "6.1", movenet_path, hef(tmp_path / "hef", "hailo8")))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.1")
    slots = device.slots()
    manager = hailo_manager(device, slots, slots.boot())
    assert manager.step() == "rejected"
    assert fleet.reports(rollout) == [("rejected", "hef_for_another_chip")]
    assert not list(device.ota_dir.rglob("*.wsm*"))  # the signed target lists each build's chip
    assert slots.state.slots == {"a": None, "b": None}


def test_a_hef_for_another_hailort_is_refused_before_download(fleet, hp, movenet_path, tmp_path):
    """The signed target lists each build's HailoRT version (signing/metadata.py), as it does its chip."""
    old = hef(tmp_path / "hef", "hailo8l", runtime_version="4.18.0")
    fleet.publisher.publish(package(tmp_path / "pkg", "6.2", movenet_path, old))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.2")
    slots = device.slots()
    manager = hailo_manager(device, slots, slots.boot())
    assert manager.step() == "rejected"
    assert fleet.reports(rollout)[-1] == ("rejected", "hef_for_another_hailort")
    assert not list(device.ota_dir.rglob("*.wsm*"))
    assert slots.state.slots == {"a": None, "b": None}


def test_a_mislabelled_hef_fails_its_self_test_on_the_chip_and_is_never_activated(fleet, hp, movenet_path, tmp_path):
    """Labelled hailo8l, compiled for the hailo8: the runtime in the self-test process refuses it."""
    lying = hef(tmp_path / "hef", "hailo8", hardware="hailo8l")
    fleet.publisher.publish(package(tmp_path / "pkg", "6.3", movenet_path, lying))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.3")
    slots = device.slots()
    assert hailo_manager(device, slots, slots.boot()).step() == "rejected"
    assert fleet.reports(rollout)[-1] == ("rejected", "self_test_failed")
    good = hef(tmp_path / "good", "hailo8l")
    passed = selftest.run_selftest(good[1], good[0], timeout=60)  # its own process, on the fake Hailo-8L there
    assert passed.ok and "on the Hailo-8L at 0001:01:00.0 (HailoRT 4.23.0)" in passed.detail, passed
    failed = selftest.run_selftest(lying[1], lying[0], timeout=60)
    assert (failed.ok, failed.reason) == (False, "load_failed")
    here = selftest.check_model(lying[1], lying[0])  # the same, in this process
    assert (here.ok, here.reason) == (False, "load_failed")
    assert "compiled for another Hailo architecture" in here.detail
    assert slots.state.trial is None and slots.state.active is None


def test_a_hailo_build_that_fails_at_the_trial_start_is_switched_back(fleet, hp, movenet_path, tmp_path):
    fleet.publisher.publish(package(tmp_path / "pkg", "6.4", movenet_path, hef(tmp_path / "hef", "hailo8l")))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.4")
    slots = device.slots()
    assert hailo_manager(device, slots, slots.boot(), restart=lambda r: None).step() == "activating"
    # At the start the slot's HEF does not load on the chip (this process's fake no longer knows its bytes).
    _fake._rt._WORLD.hef_contents.clear()
    backend, choice = open_on_accelerator(slots, configured(hp), slot_backend, lambda: configured(hp))
    try:
        assert choice.slot is None and isinstance(backend, FallbackBackend)  # the configured model again
        assert backend.primary.hef_path.endswith("pose_h8l.hef")
    finally:
        backend.close()
    assert slots.state.trial is None
    hailo_manager(device, slots, choice).flush()
    assert fleet.reports(rollout)[-1] == ("rolled_back", "load_failed")


# ---- Coral -------------------------------------------------------------------------------------------------------


def test_a_coral_build_goes_through_the_slot_on_the_edge_tpu(fleet, movenet_path, tmp_path, monkeypatch, edgetpu):
    monkeypatch.setenv("FAKE_EDGETPU", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests" / "device" / "fakes" / "edgetpu_site"))
    model = tmp_path / "ssd_edgetpu.tflite"
    model.write_bytes(build_ssd_model("uint8"))
    coral_build = build("coral", "edgetpu", "ssd_postprocess", model)
    fleet.publisher.publish(package(tmp_path / "pkg", "6.5", movenet_path, (coral_build, model)))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.5")
    slots = device.slots()
    restarts: list[str] = []
    alone = selftest.run_selftest(model, coral_build, timeout=60)  # its own process, with the fake Edge TPU there
    assert alone.ok and "on the Edge TPU" in alone.detail, alone
    manager = manager_for(device, slots, slots.boot(), restart=restarts.append, backend="coral")
    assert manager.step() == "activating", slots.state.last_failure
    choice = slots.boot()
    backend = slot_backend(choice)
    try:
        assert choice.trial and choice.record.build.backend == "coral"
        assert edgetpu.delegates and edgetpu.delegates[-1].library == "libedgetpu.so.1"
        assert target_of(backend) == DeviceTarget("coral")
        frames = Frames(backend)
        trial = manager_for(device, slots, choice, frames=frames, health_frames=3, backend="coral")
        assert frames.run(3).failed == 0
        assert trial.step() == "confirmed"
    finally:
        backend.close()
    assert fleet.reports(rollout)[-1] == ("healthy", None)


def test_a_hailo_device_configured_as_shipped_starts_its_trial_slot(fleet, hp, movenet_path, model_store, tmp_path):
    """Through the agent's own start (``firmware.assembly.open_pose_model``) with a device.toml naming the Hailo:
    the configured HEF is opened first, then the slot on trial takes its place."""
    from firmware.assembly import open_pose_model
    from wardsight.device_config import load_device_config

    fleet.publisher.publish(package(tmp_path / "pkg", "6.6", movenet_path, hef(tmp_path / "hef", "hailo8l")))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.6")
    slots = device.slots()
    path = "/usr/share/hailo-models/pose_h8l.hef"
    _fake.register_hef(path, world.pose_hef(_fake, _fake.DeviceArchitectureTypes.HAILO8L))
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "device.toml").write_text(f'[accelerator]\nkind = "hailo"\nhailo_hef = "{path}"\n')
    config = load_device_config(tmp_path / "conf", None, {})
    assert hailo_manager(device, slots, slots.boot(), restart=lambda r: None).step() == "activating"
    pose = open_pose_model(config, model_store, slots, ota_root=True)
    try:
        assert (pose.kind, pose.updates, pose.choice.trial, pose.choice.version) == ("hailo", "ready", True, "6.6")
        assert target_of(pose.backend).backend == "hailo"
        frames = Frames(pose.backend)
        trial = hailo_manager(device, slots, pose.choice, frames=frames, health_frames=3)
        assert frames.run(3).failed == 0
        assert trial.step() == "confirmed"
    finally:
        pose.backend.close()
    assert fleet.reports(rollout)[-1] == ("healthy", None)
