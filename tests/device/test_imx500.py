"""The AI camera backend against the fake picamera2 package and its fake ``devices.IMX500`` (the on-sensor network
sees the sensor's scene cropped to the inference ROI; pixel blanking in pre_callback never reaches it)."""

import sys
import time

import numpy as np
import pytest

from accelerators import registry

registry.entries()  # load the registry's plugins first: entries() loads them only into an empty registry

from accelerators import imx500 as backend  # noqa: E402
from accelerators.imx500 import FULL_SENSOR, Imx500Camera, Imx500PersonBackend  # noqa: E402
from accelerators.imx500_geometry import Imx500Error, clear_roi, decode_ssd, largest_clear_rect  # noqa: E402
from accelerators.registry import _REGISTRY  # noqa: E402
from firmware.privacy import PrivacyMask  # noqa: E402
from tests.device.fakes import picamera2 as fake_picamera2  # noqa: E402
from tests.device.fakes.picamera2 import devices as fake_devices  # noqa: E402
from tests.device.fakes.picamera2.devices.imx500 import imx500 as fake_imx500  # noqa: E402

LEFT_QUARTER = [(0.0, 0.0), (0.25, 0.0), (0.25, 1.0), (0.0, 1.0)]


@pytest.fixture
def network(tmp_path):
    path = tmp_path / "imx500_network_ssd_mobilenetv2_fpnlite_320x320_pp.rpk"
    path.write_bytes(b"fake rpk")
    return path


def scene(*boxes, size=(800, 600)):
    """A dark BGR scene with bright "people" at the given frame-relative (x0, y0, x1, y1) boxes."""
    w, h = size
    img = np.full((h, w, 3), 30, np.uint8)
    for x0, y0, x1, y1 in boxes:
        img[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = 240
    return img


def ai_camera(fake, scenes, net=None):
    sensor = fake.add_camera(scenes, model="imx500", pixel_array=FULL_SENSOR, camera_id="/base/imx500@1a")
    if net is not None:
        sensor.network = net
    return sensor


# -- frames and detections ----------------------------------------------------------------------------------


def test_people_in_frame_pixels(fake, network):
    ai_camera(fake, [scene((0.5, 0.2, 0.7, 0.9))])
    cam = Imx500Camera(network, size=(640, 480))
    try:
        frame = cam.read()
        assert frame.image.shape == (480, 640, 3) and frame.has_tensor
        assert len(frame.people) == 1
        assert frame.people[0].box == pytest.approx((320, 96, 448, 432), abs=3)
        assert frame.people[0].keypoints.shape == (17, 3) and not frame.people[0].keypoints[:, 2].any()
        assert cam.roi == (0, 0, *FULL_SENSOR)
    finally:
        cam.close()


def test_frames_without_tensors_have_no_detections(fake, network):
    ai_camera(fake, [scene((0.4, 0.4, 0.6, 0.6))], fake_imx500.FakeNetwork(first_tensor_frame=2, tensor_every=2))
    cam = Imx500Camera(network, size=(320, 240))
    frames = [cam.read() for _ in range(6)]
    cam.close()
    assert [f.has_tensor for f in frames] == [False, False, True, False, True, False]
    assert [len(f.people) for f in frames] == [0, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("order", ["yx", "xy"])
def test_intrinsics_bbox_order_and_normalisation(fake, network, order):
    net = fake_imx500.FakeNetwork(bbox_order=order, bbox_normalization=True, input_size=(300, 200))
    ai_camera(fake, [scene((0.1, 0.5, 0.3, 0.8))], net)
    cam = Imx500Camera(network, size=(400, 300))
    frame = cam.read()
    cam.close()
    assert frame.people[0].box == pytest.approx((40, 150, 120, 240), abs=3)


def test_networks_of_other_tasks_are_refused(fake, network):
    ai_camera(fake, [scene()], fake_imx500.FakeNetwork(task="segmentation"))
    with pytest.raises(Imx500Error, match="segmentation network; WardSight decodes pose estimation"):
        Imx500Camera(network)


# -- privacy: the ROI is what the network sees -------------------------------------------------------------


def test_pre_callback_blanking_alone_does_not_reach_the_network(fake, network):
    """The reason for the ROI: with the full-sensor ROI the network finds the person in the privacy region even
    though the frame (ISP output) is blacked out there."""
    sensor = ai_camera(fake, [scene((0.05, 0.3, 0.2, 0.7))])
    imx = fake_devices.IMX500(str(network))
    cam = fake.Picamera2(imx.camera_num)
    cam.configure(cam.create_preview_configuration(main={"format": "RGB888", "size": (320, 240)}))
    mask = PrivacyMask([np.array(LEFT_QUARTER)]).mask_for(320, 240)

    def blank(request):
        with fake.MappedArray(request, "main") as m:
            m.array[mask] = 0

    cam.pre_callback = blank
    cam.start()
    with cam.captured_request() as request:
        assert not request.make_array("main")[mask].any()  # the frame is blank there...
        outputs = imx.get_outputs(request.get_metadata(), add_batch=True)
    assert outputs is not None and outputs[1][0][0] > 0.5  # ...but the on-sensor network saw the person
    cam.close()
    assert sensor.delivered == 1


def test_the_inference_roi_keeps_privacy_regions_out_of_the_network(fake, network):
    sensor = ai_camera(fake, [scene((0.05, 0.3, 0.2, 0.7), (0.6, 0.3, 0.8, 0.7))])
    privacy = PrivacyMask([np.array(LEFT_QUARTER)])
    cam = Imx500Camera(network, size=(640, 480), privacy_mask=privacy.mask_for)
    try:
        frames = [cam.read() for _ in range(3)]
        roi = cam.roi
        assert roi is not None and roi[0] >= FULL_SENSOR[0] // 4 and roi[2] + roi[0] <= FULL_SENSOR[0]
        assert (roi[1], roi[3]) == (0, FULL_SENSOR[1])
        people = frames[0].people  # the ROI was set before start(): it holds from the first frame
        assert [[p.box for p in f.people] for f in frames[1:]] == [[people[0].box]] * 2
        assert len(people) == 1 and people[0].box == pytest.approx((384, 144, 512, 336), abs=4)
        assert not frames[2].image[:, :160].any()  # the frame is blanked too
        assert sensor.delivered == 3
    finally:
        cam.close()


def test_the_network_input_holds_no_privacy_pixel(fake, network):
    bright_private = scene((0.0, 0.0, 0.25, 1.0))  # the whole privacy region is bright
    sensor = ai_camera(fake, [bright_private])
    seen = {}
    original = fake_imx500.FakeNetwork.run

    def spy(self, view):
        seen["view"] = view.copy()
        return original(self, view)

    sensor.network = fake_imx500.FakeNetwork()
    sensor.network.run = spy.__get__(sensor.network)
    cam = Imx500Camera(network, size=(640, 480), privacy_mask=PrivacyMask([np.array(LEFT_QUARTER)]).mask_for)
    for _ in range(3):
        frame = cam.read()
    cam.close()
    assert seen["view"].max() == 30 and frame.people == []


def test_roi_follows_scaler_crop_changes(fake, network, monkeypatch):
    ai_camera(fake, [scene((0.6, 0.3, 0.8, 0.7))])
    cam = Imx500Camera(network, size=(640, 480), privacy_mask=PrivacyMask([np.array(LEFT_QUARTER)]).mask_for)
    first = cam.roi
    crop = (0, 380, 4056, 2280)
    monkeypatch.setattr(fake_picamera2.camera.Picamera2, "_next_request", _with_crop(crop))
    frame = cam.read()
    assert cam.roi != first and cam.roi is not None and cam.roi[1] >= crop[1] and frame.people == []
    cam.close()


def _with_crop(crop):
    original = fake_picamera2.camera.Picamera2._next_request

    def next_request(self):
        request = original(self)
        request._metadata["ScalerCrop"] = crop
        return request

    return next_request


def test_everything_private_turns_detection_off(fake, network):
    ai_camera(fake, [scene((0.4, 0.4, 0.6, 0.6))])
    everything = PrivacyMask([np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])])
    cam = Imx500Camera(network, size=(320, 240), privacy_mask=everything.mask_for)
    frames = [cam.read() for _ in range(4)]
    cam.close()
    assert cam.roi is None and all(f.has_tensor and not f.people for f in frames)


def test_clear_roi_and_largest_rect():
    dirty = np.zeros((4, 6), bool)
    dirty[:, 0] = True
    dirty[0, 5] = True
    assert largest_clear_rect(dirty) == (1, 0, 4, 4)
    assert largest_clear_rect(np.ones((2, 2), bool)) is None
    mask = np.zeros((480, 640), bool)
    mask[:, :100] = True
    roi = clear_roi(mask, (0, 0, *FULL_SENSOR))
    assert roi is not None and roi[0] * 640 / FULL_SENSOR[0] >= 100
    assert clear_roi(None, (10, 20, 30, 40)) == (10, 20, 30, 40)


def test_decode_maps_roi_relative_boxes():
    boxes = np.array([[[0.0, 0.0, 1.0, 0.5]]], np.float32)
    people = decode_ssd(
        [boxes, np.array([[0.8]]), np.array([[0.0]])],
        input_size=(320, 320),
        roi=(2028, 0, 2028, 3040),
        scaler_crop=(0, 0, *FULL_SENSOR),
        frame_size=(800, 600),
    )
    assert people[0].box == pytest.approx((400, 0, 600, 600), abs=1e-3)
    with pytest.raises(Imx500Error):
        decode_ssd([boxes], input_size=(1, 1), roi=(0, 0, 1, 1), scaler_crop=(0, 0, 1, 1), frame_size=(1, 1))


# -- invariants of the real API, enforced by the fake --------------------------------------------------


def test_imx500_after_picamera2_fails(fake, network):
    ai_camera(fake, [scene()])
    cam = fake.Picamera2(0)
    with pytest.raises(RuntimeError, match="must come first"):
        fake_devices.IMX500(str(network))
    cam.close()


def test_get_outputs_rules(fake, network):
    ai_camera(fake, [scene()])
    imx = fake_devices.IMX500(str(network))
    assert imx.get_outputs({}) is None and imx.get_outputs({"CnnOutputTensor": []}) is None
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7.0, 8.0], np.float32)
    md = {
        "CnnOutputTensor": list(np.concatenate([a.reshape(-1, order="F"), b])),
        "CnnOutputTensorInfo": fake_imx500.pack_output_tensor_info([(2, 3), (2,)]),
    }
    out = imx.get_outputs(md, add_batch=True)
    assert np.array_equal(out[0][0], a) and out[0].shape == (1, 2, 3) and np.array_equal(out[1][0], b)
    assert not np.array_equal(out[0][0], np.arange(6, dtype=np.float32).reshape(2, 3, order="F"))
    with pytest.raises(ValueError, match="712"):
        imx.get_outputs({**md, "CnnOutputTensorInfo": md["CnnOutputTensorInfo"][:700]})
    with pytest.raises(ValueError):
        imx.set_inference_roi_abs((4000, 0, 100, 100))


def test_no_ai_camera_and_missing_firmware(fake, network, tmp_path):
    fake.add_camera([scene()])  # an ordinary camera module
    with pytest.raises(Imx500Error, match="dev-node not found"):
        Imx500Camera(network)
    with pytest.raises(Imx500Error, match="imx500-models"):
        Imx500Camera(tmp_path / "missing.rpk")
    fake.reset()
    ai_camera(fake, [scene()])
    with pytest.raises(RuntimeError, match="does not exist"):
        fake_devices.IMX500(str(tmp_path / "missing.rpk"))


def test_backend_detect_answers_for_its_own_frames(fake, network):
    ai_camera(fake, [scene((0.4, 0.4, 0.6, 0.6))])
    det = Imx500PersonBackend(Imx500Camera(network, size=(320, 240)))
    try:
        frame = det.read()
        assert det.detect(frame.image) == frame.people and len(frame.people) == 1
        with pytest.raises(Imx500Error, match="read\\(\\) delivered"):
            det.detect(frame.image.copy())
    finally:
        det.close()


# -- probe and registry -------------------------------------------------------------------------------------


def test_probe_reasons(fake, network, monkeypatch, tmp_path):
    state = backend.probe(network)
    assert not state.available and state.reason == "no IMX500 (Raspberry Pi AI Camera) is attached"
    ai_camera(fake, [scene()])
    assert backend.probe(network).available
    state = backend.probe(tmp_path / "none.rpk")
    assert not state.available and "network firmware" in state.reason and "imx500-models" in state.reason
    monkeypatch.setitem(sys.modules, "picamera2", None)
    state = backend.probe(network)
    assert not state.available and "python3-picamera2" in state.reason


def test_registered_and_created(fake, network):
    assert _REGISTRY["imx500"].probe is backend.probe
    ai_camera(fake, [scene()])
    det = _REGISTRY["imx500"].create(network_file=network, size=(320, 240))
    assert det.name == "imx500"
    det.close()


# -- the agent on the AI camera -----------------------------------------------------------------------------


def test_the_agent_runs_on_the_ai_camera_as_source_and_detector(fake, network, tmp_path):
    """source.kind = imx500: one device yields the frames and the people in them; the agent loop is unchanged."""
    import threading

    from firmware.agent import Agent
    from firmware.apps.occupancy import OccupancyApp
    from firmware.assembly import build_imx500, build_source
    from firmware.sources import SourceError
    from wardsight.device_config import load_device_config

    ai_camera(fake, [scene((0.55, 0.2, 0.75, 0.9))])  # one person, right of the privacy region (cycled)
    (tmp_path / "device.toml").write_text(
        f'[source]\nkind = "imx500"\nsize = [320, 240]\n[accelerator]\nimx500_network = "{network}"\n'
        '[[privacy_regions]]\nname = "bathroom door"\npolygon = [[0.0, 0.0], [0.25, 0.0], [0.25, 1.0], [0.0, 1.0]]\n'
    )
    config = load_device_config(tmp_path, None, {})
    with pytest.raises(SourceError, match="build_imx500"):
        build_source(config, None)
    backend, source = build_imx500(config)
    stop = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        stop.set()

    agent = Agent(source, backend, [OccupancyApp(stable_seconds=0.0)], emit)
    try:
        stats = agent.run(stop, deadline=time.monotonic() + 20)
    finally:
        source.close()
    assert stats.failed == 0 and stats.processed >= 1
    assert [(e.app, e.type, e.data["count"]) for e in events] == [("occupancy", "count_changed", 1)]
    assert agent.stats.people_last == 1


def test_without_the_ai_camera_the_source_says_why(fake, network, tmp_path):
    from firmware.assembly import build_imx500
    from firmware.sources import SourceError
    from wardsight.device_config import load_device_config

    (tmp_path / "device.toml").write_text(f'[source]\nkind = "imx500"\n[accelerator]\nimx500_network = "{network}"\n')
    with pytest.raises(SourceError, match="no IMX500"):
        build_imx500(load_device_config(tmp_path, None, {}))
