"""The Hailo backend and YOLOv8 decoders, against the fake hailo_platform (tests/fakes/hailo_platform).

The fake "runs" a HEF by calling a test function on the uint8 input tensor; here that function runs the real
MoveNet model on the CPU over that (letterboxed) tensor and encodes the people it finds into YOLOv8-pose raw
tensors (or NMS_BY_CLASS boxes), which the fake quantises as the device would. So the Hailo backend must find the
same people as the CPU backend on the original frame.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from accelerators import hailo, registry, yolov8
from accelerators.cpu import CpuPoseBackend
from accelerators.types import Person
from tests.device.fakes import hailo_platform as fake_hp
from tests.device.fakes.hailo_platform import _fake
from tests.device.fakes.hailo_platform.pyhailort import pyhailort as rt
from tests.device.helpers import read_rgb

HAILO_ENTRY = registry.entries()["hailo"]
ARCH = rt.DeviceArchitectureTypes
FT = rt.FormatType
IN = 640
BOX_Q = (16.5 / 255, 16 / (16.5 / 255))  # uint8 logits in [-16, 0.5]
KP_Q = (100 / 65535, 32768.0)  # uint16 keypoint offsets in about [-50, 50]
SCORE_Q = (1 / 255, 0.0)


@pytest.fixture
def hp(monkeypatch: pytest.MonkeyPatch):
    _fake.reset()
    monkeypatch.setitem(sys.modules, "hailo_platform", fake_hp)
    yield fake_hp
    assert _fake.callback_errors() == []
    _fake.reset()


@pytest.fixture(scope="module")
def cpu(movenet_path: Path):
    return CpuPoseBackend(movenet_path, num_threads=1)


@pytest.fixture(scope="module")
def astronaut(shared: Path) -> np.ndarray:
    return read_rgb(shared / "media" / "astronaut.png")


# ------------------------------------------------------------------ encoding people into Hailo's layout (test side)
def pose_specs(in_hw: tuple[int, int] = (IN, IN), native: bool = True) -> list[_fake.FakeStreamSpec]:
    specs = []
    n = 40
    for stride in (32, 16, 8):  # the order HEFs list them in does not matter: matched by shape
        gh, gw = in_hw[0] // stride, in_hw[1] // stride
        for ch, q, t in ((64, BOX_Q, FT.UINT8), (1, SCORE_Q, FT.UINT8), (51, KP_Q, FT.UINT16)):
            specs.append(
                _fake.FakeStreamSpec(f"yolov8s_pose/conv{n}", (gh, gw, ch), t if native else FT.FLOAT32, q[0], q[1])
            )
            n += 1
    return specs


def encode_pose(people: list[Person], specs: list[_fake.FakeStreamSpec], in_hw: tuple[int, int]) -> dict:
    """People in model-input pixels -> float YOLOv8-pose tensors (box DFL logits, score prob, keypoint raw)."""
    out = {s.name: np.zeros(s.shape, dtype=np.float32) for s in specs}
    by = {(s.shape[0], s.shape[2]): s.name for s in specs}
    for name in out:
        if out[name].shape[2] == 64:
            out[name][...] = math.log(1e-6)
            out[name][..., 0::16] = 0.0  # empty anchors: distance 0
    for p in people:
        x1, y1, x2, y2 = p.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        for stride in (8, 16, 32):
            row, col = int(cy // stride), int(cx // stride)
            ax, ay = (col + 0.5) * stride, (row + 0.5) * stride
            d = np.array([ax - x1, ay - y1, x2 - ax, y2 - ay]) / stride
            if d.max() <= 14.5 or stride == 32:
                break
        rows = in_hw[0] // stride
        logits = np.full((4, 16), math.log(1e-6), dtype=np.float32)
        for side, dist in enumerate(np.clip(d, 0, 15)):
            lo = min(int(dist), 14)
            frac = dist - lo
            logits[side, lo] = math.log(max(1 - frac, 1e-6))
            logits[side, lo + 1] = math.log(max(frac, 1e-6))
        out[by[(rows, 64)]][row, col] = logits.reshape(-1)
        out[by[(rows, 1)]][row, col, 0] = p.score
        kp = np.empty((17, 3), dtype=np.float32)
        kp[:, 0] = (p.keypoints[:, 0] / stride - col) / 2
        kp[:, 1] = (p.keypoints[:, 1] / stride - row) / 2
        v = np.clip(p.keypoints[:, 2], 1e-4, 1 - 1e-4)
        kp[:, 2] = np.log(v / (1 - v))
        out[by[(rows, 51)]][row, col] = kp.reshape(-1)
    return out


def pose_hef(cpu: CpuPoseBackend, arch=ARCH.HAILO8L, native: bool = True, **kw) -> _fake.FakeHef:
    specs = pose_specs(native=native)

    def infer(tensor: np.ndarray) -> dict:
        hef.calls.append(tensor.shape)
        return encode_pose(cpu.detect(tensor), specs, (IN, IN))

    hef = _fake.FakeHef(arch, (IN, IN, 3), specs, infer, **kw)
    return hef


def nms_hef(cpu: CpuPoseBackend, arch=ARCH.HAILO8L) -> _fake.FakeHef:
    spec = _fake.FakeStreamSpec("yolov8s/yolov8_nms_postprocess", nms_classes=80, nms_max_bboxes=100)

    def infer(tensor: np.ndarray) -> dict:
        per_class = [np.zeros((0, 5), dtype=np.float32) for _ in range(80)]
        per_class[0] = np.array(
            [[p.box[1] / IN, p.box[0] / IN, p.box[3] / IN, p.box[2] / IN, p.score] for p in cpu.detect(tensor)],
            dtype=np.float32,
        ).reshape(-1, 5)
        per_class[2] = np.array([[0.1, 0.1, 0.2, 0.2, 0.9]], dtype=np.float32)  # a car: ignored
        return {spec.name: per_class}

    return _fake.FakeHef(arch, (IN, IN, 3), [spec], infer)


def assert_same_people(got: list[Person], want: list[Person], tol: float, score_tol: float = 0.02) -> None:
    assert len(got) == len(want) >= 1
    for g, w in zip(sorted(got, key=lambda p: p.box[0]), sorted(want, key=lambda p: p.box[0]), strict=True):
        assert np.allclose(g.box, w.box, atol=tol), (g.box, w.box)
        assert g.score == pytest.approx(w.score, abs=score_tol)
        seen = w.keypoints[:, 2] > 0.3
        assert seen.sum() >= 5
        assert np.abs(g.keypoints[seen, :2] - w.keypoints[seen, :2]).max() <= tol
        assert np.allclose(g.keypoints[:, 2], w.keypoints[:, 2], atol=score_tol)


# ------------------------------------------------------------------ decoders on hand-made tensors
def tiny_outputs(in_size: int = 128) -> dict[str, np.ndarray]:
    return {
        f"{kind}{s}": np.zeros((in_size // s, in_size // s, ch), dtype=np.float32)
        for s in (8, 16, 32)
        for kind, ch in (("box", 64), ("score", 1), ("kp", 51))
    }


def test_decode_pose_hand_computed() -> None:
    out = tiny_outputs()
    # One anchor at stride 16, row 2, col 3: centre (56, 40).
    dfl = np.full((4, 16), -30.0, dtype=np.float32)
    dfl[0, 2] = 0  # left 2 strides = 32 px
    dfl[1, 1] = 0  # top 1 stride = 16 px
    dfl[2, 3] = 0  # right 3 strides = 48 px
    dfl[3, 2] = dfl[3, 3] = 0  # bottom: half 2, half 3 -> 2.5 strides = 40 px
    out["box16"][2, 3] = dfl.reshape(-1)
    out["score16"][2, 3, 0] = 0.8
    kp = np.zeros((17, 3), dtype=np.float32)
    kp[0] = (0.25, -0.5, 0.0)  # nose: x = (2*0.25 + 3)*16 = 56, y = (2*-0.5 + 2)*16 = 16, vis sigmoid(0) = 0.5
    kp[16] = (1.0, 1.0, 2.0)  # x = (2 + 3)*16 = 80, y = (2 + 2)*16 = 64
    out["kp16"][2, 3] = kp.reshape(-1)
    # A frame of 256x192 into a 128x128 input: scale 0.5, so frame coords are twice the input coords.
    box = yolov8.letterbox_for(256, 192, 128, 128)
    assert box.scale == 0.5
    (p,) = yolov8.decode_pose(out, box, min_score=0.5)
    assert p.box == pytest.approx((2 * 24, 2 * 24, 2 * 104, 2 * 80), abs=1e-3)
    assert p.score == pytest.approx(0.8)
    assert p.keypoints.dtype == np.float32 and p.keypoints.shape == (17, 3)
    assert p.keypoints[0] == pytest.approx((112, 32, 0.5), abs=1e-3)
    assert p.keypoints[16] == pytest.approx((160, 128, 1 / (1 + math.exp(-2))), abs=1e-3)


def test_decode_pose_dequantises_and_suppresses_duplicates() -> None:
    out = tiny_outputs()
    dfl = np.full((4, 16), -30.0, dtype=np.float32)
    dfl[:, 2] = 0  # 2 strides on every side
    for (r, c), s in (((2, 3), 0.9), ((2, 4), 0.6)):  # neighbours: IoU (48*64)/(80*64) = 0.6 ... and a far one
        out["box16"][r, c] = dfl.reshape(-1)
        out["score16"][r, c, 0] = s
    out["box8"][14, 14] = dfl.reshape(-1)
    out["score8"][14, 14, 0] = 0.7
    quant = {}
    qout = {}
    for name, arr in out.items():
        q = yolov8.QuantInfo(scale=0.125, zero_point=240) if name.startswith("box") else yolov8.QuantInfo(1 / 255, 0)
        qout[name] = np.clip(np.rint(arr / q.scale + q.zero_point), 0, 255).astype(np.uint8)
        quant[name] = q
    box = yolov8.letterbox_for(128, 128, 128, 128)
    people = yolov8.decode_pose(qout, box, quant=quant, min_score=0.5, iou_threshold=0.5)
    assert [round(p.score, 2) for p in people] == [0.9, 0.7]  # the 0.6 overlaps the 0.9 by IoU 0.6 > 0.5
    assert people[0].box == pytest.approx((24, 8, 88, 72), abs=0.01)
    assert people[1].box == pytest.approx((100, 100, 128, 128), abs=0.01)  # (116 +- 16), clipped to the frame
    assert len(yolov8.decode_pose(qout, box, quant=quant, min_score=0.5, iou_threshold=0.7)) == 3
    with pytest.raises(ValueError, match="quant info"):
        yolov8.decode_pose(qout, box, min_score=0.5)


def test_decode_pose_rejects_non_pose_outputs() -> None:
    out = tiny_outputs()
    out["extra"] = np.zeros((16, 16, 80), dtype=np.float32)
    with pytest.raises(ValueError, match="YOLOv8-pose"):
        yolov8.decode_pose(out, yolov8.letterbox_for(128, 128, 128, 128))


def test_decode_nms_by_class_hand_computed() -> None:
    # 640x640 input, 1280x720 frame: scale 0.5, the frame fills the top 360 rows.
    box = yolov8.letterbox_for(1280, 720, 640, 640)
    per_class = [
        np.array([[0.1, 0.2, 0.5, 0.4, 0.9], [0.0, 0.0, 0.1, 0.1, 0.1]], dtype=np.float32),
        np.array([[0.1, 0.1, 0.2, 0.2, 0.99]], dtype=np.float32),  # class 1: not a person
        np.zeros((0, 5), dtype=np.float32),
    ]
    (p,) = yolov8.decode_nms_by_class(per_class, box, min_score=0.3)
    assert p.box == pytest.approx((0.2 * 640 * 2, 0.1 * 640 * 2, 0.4 * 640 * 2, min(0.5 * 640 * 2, 720)))
    assert p.score == pytest.approx(0.9)
    assert not p.keypoints.any()
    assert yolov8.decode_nms_by_class([np.zeros((0, 5), dtype=np.float32)], box) == []


# ------------------------------------------------------------------ probe
def test_probe_module_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hailo_platform", None)
    assert hailo.probe() == hailo.Availability(False, "hailo_platform is not installed (sudo apt install hailo-all)")
    with pytest.raises(hailo.HailoError, match="hailo-all"):
        hailo.create(hef_path="x.hef")


def test_probe_no_device(hp) -> None:
    assert hailo.probe() == hailo.Availability(False, "no Hailo device found (Device.scan() is empty)")


def test_probe_found_and_wrong_architecture(hp) -> None:
    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    assert hailo.probe() == hailo.Availability(True, "Hailo-8L at 0001:01:00.0")
    _fake.reset()
    _fake.add_device("0000:03:00.0", ARCH.HAILO8)
    assert hailo.probe() == hailo.Availability(True, "Hailo-8 at 0000:03:00.0")
    _fake.reset()
    _fake.add_device("0001:01:00.0", ARCH.HAILO10H)
    state = hailo.probe()
    assert not state.available and state.reason.startswith("Hailo-10H at 0001:01:00.0 is not supported")


def test_registered_entry(hp) -> None:
    assert HAILO_ENTRY.name == "hailo" and HAILO_ENTRY.probe is hailo.probe
    with pytest.raises(hailo.HailoError, match="needs hef_path"):
        HAILO_ENTRY.create()


# ------------------------------------------------------------------ the backend end to end
@pytest.mark.parametrize("float_outputs", [True, False], ids=["runtime-dequantises", "decoder-dequantises"])
def test_backend_matches_cpu_on_astronaut(hp, cpu, astronaut, float_outputs: bool) -> None:
    _fake.add_device("0001:01:00.0", ARCH.HAILO8L, ts0_temperature=51.25, ts1_temperature=52.5)
    hef = _fake.register_hef("/models/yolov8s_pose_h8l.hef", pose_hef(cpu))
    backend = hailo.create(hef_path="/models/yolov8s_pose_h8l.hef", min_score=0.15, float_outputs=float_outputs)
    try:
        got = backend.detect(astronaut)
        assert_same_people(got, cpu.detect(astronaut), tol=4.0)
        assert hef.calls == [(IN, IN, 3)]
        assert set(backend.last_timings) == {"preprocess", "invoke", "decode"}
        health = backend.health()
        assert health["chip"] == "Hailo-8L" and health["architecture"] == "HAILO8L"
        assert health["device_id"] == "0001:01:00.0"
        assert health["temperature_c"] == 52.5 and health["frames"] == 1
    finally:
        backend.close()
    assert _fake.held_devices() == []


def test_backend_non_square_frame_sync_run(hp, cpu, astronaut) -> None:
    frame = np.ascontiguousarray(astronaut[40:440, :])  # 512x400: padded at the bottom of the 640x640 input
    _fake.add_device()
    _fake.register_hef("/m/pose.hef", pose_hef(cpu))
    backend = hailo.HailoPoseBackend("/m/pose.hef", min_score=0.15, async_inference=False)
    try:
        # MoveNet saw the frame grey-padded to 640x640, not at its own aspect ratio: close, not identical.
        assert_same_people(backend.detect(frame), cpu.detect(frame), tol=8.0, score_tol=0.06)
        assert backend.detect(frame[:, :300].copy())[0].box[2] <= 300  # a new geometry re-letterboxes
    finally:
        backend.close()


def test_backend_nms_by_class_hef(hp, cpu, astronaut) -> None:
    _fake.add_device()
    _fake.register_hef("/m/yolov8s_h8l.hef", nms_hef(cpu))
    with contextlib_closing(hailo.HailoPoseBackend("/m/yolov8s_h8l.hef", min_score=0.15)) as backend:
        got = backend.detect(astronaut)
    want = cpu.detect(astronaut)
    assert len(got) == len(want)
    assert np.allclose(got[0].box, want[0].box, atol=1.0)
    assert not got[0].keypoints.any()


def test_hailo8_hef_on_hailo8l_is_refused(hp, cpu) -> None:
    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    _fake.register_hef("/m/yolov8m_pose.hef", pose_hef(cpu, arch=ARCH.HAILO8))
    with pytest.raises(hailo.HailoError, match=r"compiled for another Hailo architecture than this Hailo-8L at 0001"):
        hailo.HailoPoseBackend("/m/yolov8m_pose.hef")
    assert _fake.held_devices() == []  # the VDevice was released on the way out
    # A Hailo-8L HEF runs on a Hailo-8.
    _fake.reset()
    _fake.add_device("0000:01:00.0", ARCH.HAILO8)
    _fake.register_hef("/m/yolov8s_pose_h8l.hef", pose_hef(cpu, arch=ARCH.HAILO8L))
    hailo.HailoPoseBackend("/m/yolov8s_pose_h8l.hef").close()


def test_backend_errors_are_clear(hp, cpu, astronaut) -> None:
    with pytest.raises(hailo.HailoError, match="cannot open the Hailo device"):
        hailo.HailoPoseBackend("/m/none.hef")  # no device
    _fake.add_device()
    with pytest.raises(hailo.HailoError, match="cannot load HEF /m/none.hef"):
        hailo.HailoPoseBackend("/m/none.hef")
    hef = _fake.register_hef("/m/slow.hef", pose_hef(cpu, latency_s=0.3))
    backend = hailo.HailoPoseBackend("/m/slow.hef", timeout_ms=50)
    try:
        with pytest.raises(hailo.HailoError, match="HailoRTTimeout"):
            backend.detect(astronaut)
        assert backend.health()["errors"] == 1
    finally:
        hef.latency_s = 0.0
        backend.close()
    hef.fail_with = rt.HailoRTStreamAborted("Stream was aborted")
    backend = hailo.HailoPoseBackend("/m/slow.hef")
    with contextlib_closing(backend), pytest.raises(hailo.HailoError, match="Stream was aborted"):
        backend.detect(astronaut)


def test_backend_is_exclusive_until_closed(hp, cpu) -> None:
    _fake.add_device()
    _fake.register_hef("/m/pose.hef", pose_hef(cpu))
    first = hailo.HailoPoseBackend("/m/pose.hef")
    with pytest.raises(hailo.HailoError, match="HAILO_OUT_OF_PHYSICAL_DEVICES"):
        hailo.HailoPoseBackend("/m/pose.hef")
    first.close()
    hailo.HailoPoseBackend("/m/pose.hef").close()


def contextlib_closing(backend):
    import contextlib

    return contextlib.closing(backend)


# ------------------------------------------------------------------ the fake's invariants: each misuse fails
@pytest.fixture
def configured(hp, cpu):
    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    _fake.register_hef("/m/pose.hef", pose_hef(cpu, native=True))
    vd = rt.VDevice(rt.VDevice.create_params())
    model = vd.create_infer_model("/m/pose.hef")
    cim = model.configure()
    yield vd, model, cim
    cim.shutdown()
    vd.release()


def out_buffers(model) -> dict[str, np.ndarray]:
    return {n: np.empty(model.output(n).shape, dtype=model.output(n).dtype) for n in model.output_names}


def test_fake_scan_identify_temperature(hp) -> None:
    assert rt.Device.scan() == []
    with pytest.raises(rt.HailoRTException, match="HailoRT device not found in the system"):
        rt.Device()
    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    ids = rt.Device.scan()
    assert all(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", i) for i in ids)
    with rt.Device(ids[0]) as dev:
        info = dev.control.identify()
        assert info.device_architecture == ARCH.HAILO8L and str(info.device_architecture) == "HAILO8L"
        assert "Device Architecture: HAILO8L" in str(info) and "Serial Number: <N/A>" in str(info)
        assert dev.control.get_chip_temperature().ts0_temperature == pytest.approx(48.5)
    with pytest.raises(rt.HailoRTInvalidOperationException):
        dev.control.identify()  # released
    assert not hasattr(fake_hp, "HailoRTHEFNotCompatibleWithDevice")  # not re-exported at the top, as the real one


def test_fake_wrong_architecture_raises_at_configure(hp, cpu) -> None:
    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    _fake.register_hef("/m/h8.hef", pose_hef(cpu, arch=ARCH.HAILO8))
    with rt.VDevice() as vd:
        model = vd.create_infer_model("/m/h8.hef")
        with pytest.raises(rt.HailoRTHEFNotCompatibleWithDevice):
            model.configure()
        with pytest.raises(rt.HailoRTException, match="HAILO_OPEN_FILE_FAILURE"):
            vd.create_infer_model("/m/missing.hef")


def test_fake_formats_cannot_change_after_configure(configured) -> None:
    _, model, _ = configured
    with pytest.raises(rt.HailoRTInvalidOperationException):
        model.output(model.output_names[0]).set_format_type(FT.FLOAT32)
    with pytest.raises(rt.HailoRTInvalidOperationException, match="several streams"):
        model.output()


def test_fake_bindings_check_shape_dtype_contiguity(configured) -> None:
    _, model, cim = configured
    name = model.output_names[0]
    good = out_buffers(model)
    with pytest.raises(rt.HailoRTInvalidArgumentException):
        cim.create_bindings(output_buffers={**good, name: good[name].astype(np.float32)})  # native is uint8
    with pytest.raises(rt.HailoRTInvalidArgumentException):
        cim.create_bindings(output_buffers={**good, name: good[name][:-1].copy()})
    b = cim.create_bindings(output_buffers=good)
    with pytest.raises(rt.HailoRTException, match="C_CONTIGUOUS"):
        b.input().set_buffer(np.zeros((IN, IN * 2, 3), dtype=np.uint8)[:, ::2])
    with pytest.raises(rt.HailoRTInvalidArgumentException):
        b.input().set_buffer(np.zeros((IN, IN, 3), dtype=np.float32))
    with pytest.raises(rt.HailoRTInvalidOperationException, match="no buffer"):
        cim.run([b], 1000)  # input buffer never set
    with pytest.raises(rt.HailoRTInvalidOperationException, match="no buffer"):
        cim.run([cim.create_bindings(input_buffers={model.input_names[0]: np.zeros((IN, IN, 3), np.uint8)})], 1000)


def test_fake_run_async_calls_back_with_completion_info(configured) -> None:
    _, model, cim = configured
    b = cim.create_bindings(output_buffers=out_buffers(model))
    b.input().set_buffer(np.zeros((IN, IN, 3), dtype=np.uint8))
    seen = []
    cim.wait_for_async_ready(timeout_ms=1000)
    job = cim.run_async([b], lambda completion_info: seen.append(completion_info))
    job.wait(1000)
    for _ in range(100):
        if seen:
            break
        import time

        time.sleep(0.01)
    assert len(seen) == 1 and seen[0].exception is None
    # A callback that does not take the keyword `completion_info` breaks (recorded as the runtime would log it).
    job = cim.run_async([b], lambda info: None)
    job.wait(1000)
    cim.shutdown()
    assert len(_fake.callback_errors()) == 1 and isinstance(_fake.callback_errors()[0], TypeError)
    rt._WORLD.callback_errors.clear()


def test_fake_in_flight_buffers_and_queue(configured) -> None:
    _, model, cim = configured
    model._fake_hef.latency_s = 0.2
    b = cim.create_bindings(output_buffers=out_buffers(model))
    frame = np.zeros((IN, IN, 3), dtype=np.uint8)
    b.input().set_buffer(frame)
    job = cim.run_async([b])
    with pytest.raises(rt.HailoRTInvalidOperationException, match="in flight"):
        b.input().set_buffer(frame)
    with pytest.raises(rt.HailoRTTimeout):
        job.wait(10)
    b2 = cim.create_bindings(input_buffers={model.input_names[0]: frame}, output_buffers=out_buffers(model))
    cim.run_async([b2])
    with pytest.raises(rt.HailoRTTimeout):
        cim.wait_for_async_ready(timeout_ms=10)  # queue of 2 is full
    with pytest.raises(rt.HailoRTTimeout):
        cim.run([b2], 10)
    job.wait(2000)
    b.input().set_buffer(frame)  # done: the buffers may be reused


def test_fake_use_after_shutdown_and_release(configured) -> None:
    vd, model, cim = configured
    with pytest.raises(rt.HailoRTInvalidOperationException, match="still open"):
        vd.release()  # the ConfiguredInferModel's `with` was never exited
    cim.shutdown()
    with pytest.raises(rt.HailoRTInvalidOperationException, match="shut down"):
        cim.create_bindings(output_buffers=out_buffers(model))
    vd.release()
    with pytest.raises(rt.HailoRTInvalidOperationException, match="released"):
        vd.create_infer_model("/m/pose.hef")
    with pytest.raises(rt.HailoRTInvalidOperationException):
        model.configure()
    assert _fake.held_devices() == []


def test_fake_vdevice_needs_a_free_device(hp) -> None:
    with pytest.raises(rt.HailoRTException, match="HAILO_OUT_OF_PHYSICAL_DEVICES"):
        rt.VDevice()
    _fake.add_device()
    with rt.VDevice() as vd:
        assert vd.get_physical_devices_ids() == ["0001:01:00.0"]
        with pytest.raises(rt.HailoRTException, match="HAILO_OUT_OF_PHYSICAL_DEVICES"):
            rt.VDevice()
    rt.VDevice().release()


def test_fake_nms_by_class_buffer_layout(hp, cpu) -> None:
    _fake.add_device()
    _fake.register_hef("/m/det.hef", nms_hef(cpu))
    with rt.VDevice() as vd:
        model = vd.create_infer_model("/m/det.hef")
        out = model.output()
        assert out.is_nms and out.format.order == rt.FormatOrder.HAILO_NMS_BY_CLASS
        assert out.shape == (80 * (1 + 5 * 100),)
        with model.configure() as cim:
            buf = np.empty(out.shape, dtype=np.float32)
            b = cim.create_bindings(output_buffers={out.name: buf})
            b.input().set_buffer(np.zeros((IN, IN, 3), dtype=np.uint8))
            cim.run([b], 1000)
            per_class = b.output().get_buffer()
            assert len(per_class) == 80 and all(a.shape[1:] == (5,) for a in per_class)
            assert np.allclose(per_class[2], [[0.1, 0.1, 0.2, 0.2, 0.9]])
            assert buf[501 * 2] == 1.0  # class 2's count sits after two classes of 1 + 5 * 100 floats
            assert b.output().get_buffer(tf_format=True).shape == (80, 5, 100)


def test_import_failure_off_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hailo_platform", None)
    with pytest.raises(ImportError):
        import hailo_platform  # noqa: F401


def test_same_clip_same_people_and_same_events_on_cpu_and_hailo(hp, cpu, shared: Path) -> None:
    """A fall clip through the CPU and through the fake Hailo (replaying CPU results in Hailo's tensor layout)."""
    from firmware.agent import Agent
    from firmware.apps.fall import FallApp
    from firmware.apps.occupancy import OccupancyApp
    from firmware.sources import VideoFileSource

    clip = shared / "data" / "upfall-dev" / "a01_t1_cam1.mp4"

    def run(backend) -> tuple[list, list[int]]:
        events: list = []
        counts: list[int] = []

        class Counter:
            name, needs = "counter", frozenset()

            def update(self, scene):  # type: ignore[no-untyped-def]
                counts.append(len(scene.people))
                return []

        source = VideoFileSource(clip, realtime=False, clock=lambda: 0.0)
        Agent(source, backend, [FallApp(), OccupancyApp(), Counter()], emit=events.append).run()
        return events, counts

    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    _fake.register_hef("/models/yolov8s_pose_h8l.hef", pose_hef(cpu))
    hailo_backend = hailo.create(hef_path="/models/yolov8s_pose_h8l.hef", min_score=0.15)
    try:
        on_hailo, hailo_counts = run(hailo_backend)
    finally:
        hailo_backend.close()
    on_cpu, cpu_counts = run(cpu)
    assert [(e.app, e.type) for e in on_hailo] == [(e.app, e.type) for e in on_cpu]
    assert any(e.type == "fall" for e in on_cpu)
    for a, b in zip(on_hailo, on_cpu, strict=True):
        assert abs(a.time - b.time) <= 0.5
    agree = sum(a == b for a, b in zip(hailo_counts, cpu_counts, strict=True)) / len(cpu_counts)
    assert agree >= 0.95


def test_device_config_hailo_falls_back_to_the_cpu_when_the_device_goes(hp, cpu, astronaut, tmp_path, model_store):
    from accelerators.fallback import FallbackBackend
    from firmware.agent import Agent
    from firmware.apps.occupancy import OccupancyApp
    from firmware.assembly import build_backend
    from firmware.sources import ReplaySource
    from fleet.health.store import degraded_reasons
    from wardsight.device_config import load_device_config

    _fake.add_device("0001:01:00.0", ARCH.HAILO8L)
    hef = _fake.register_hef("/models/pose.hef", pose_hef(cpu))
    (tmp_path / "device.toml").write_text('[accelerator]\nkind = "hailo"\nhailo_hef = "/models/pose.hef"\n')
    backend = build_backend(load_device_config(tmp_path, None, {}), model_store)
    assert isinstance(backend, FallbackBackend) and backend.active.name == "hailo"
    app = OccupancyApp(stable_seconds=0.0)
    source = ReplaySource([astronaut] * 3)
    agent = Agent(source, backend, [app], emit=lambda e: None)
    agent.run()
    assert agent.stats.processed == 3 and app.reported == 1
    before = heartbeat(agent, source, backend)
    assert (before.accelerator, before.accelerator_configured, before.warnings) == ("hailo", "hailo", [])
    assert before.accelerator_temp_c is not None  # the chip's temperature, read through HailoRT's control API
    hef.fail_with = rt.HailoRTStreamAborted("Stream was aborted")  # the device is gone
    source = ReplaySource([astronaut] * 12)
    agent = Agent(source, backend, [app], emit=lambda e: None)
    stats = agent.run()
    assert stats.failed == 5 and stats.processed == 7  # five failures, then the CPU took over
    assert backend.health() == {"accelerator": "cpu (fallback from hailo)", "accelerator_fallback": 1.0}
    # The fleet hears of it in the next heartbeat, and counts the device as degraded.
    after = heartbeat(agent, source, backend)
    assert (after.accelerator, after.accelerator_configured) == ("cpu", "hailo")
    assert "accelerator_fallback" in after.warnings
    assert "accelerator_fallback" in degraded_reasons(after.model_dump())
    backend.close()


def heartbeat(agent, source, backend):
    import time

    from firmware.assembly import agent_readings
    from firmware.heartbeat import SystemReadings, build_health

    readings = agent_readings(agent, source, backend, 0, "pose", "1", time.monotonic() - 1)
    return build_health("dev-1", readings, SystemReadings(), uptime_s=1.0, sent_at=1.8e9)


def test_device_config_auto_without_accelerators_uses_the_cpu(tmp_path, model_store, caplog):
    from accelerators.cpu import CpuPoseBackend
    from firmware.assembly import build_backend
    from wardsight.device_config import load_device_config

    assert isinstance(build_backend(load_device_config(tmp_path, None, {}), model_store), CpuPoseBackend)
    (tmp_path / "device.toml").write_text('[accelerator]\nkind = "coral"\n')
    with caplog.at_level("WARNING"):
        assert isinstance(build_backend(load_device_config(tmp_path, None, {}), model_store), CpuPoseBackend)
    assert "no model file is configured" in caplog.text
