"""The fakes themselves (issue 21): the IMX500 pose network in the fake ``picamera2.devices.IMX500`` (raw YOLOv8-pose
tensors, on the inference ROI only) and the fake Picamera2's count of image pixels handed to the process."""

import sys
import types

import cv2
import numpy as np
import pytest

from tests.device.fakes import picamera2 as fake_picamera2
from tests.device.fakes.picamera2 import devices as fake_devices
from tests.device.fakes.picamera2.devices.imx500 import imx500 as fake_imx500
from tests.device.fakes.picamera2.devices.imx500 import yolov8_pose
from tests.device.fakes.picamera2.devices.imx500.yolov8_pose import (
    NUM_ANCHORS,
    encode_people,
    reference_postprocess_yolov8_keypoints,
)

FULL_SENSOR = fake_imx500.FULL_SENSOR
from tests.device.test_imx500 import ai_camera, scene  # noqa: E402  (the AI Camera tests' scene helpers)

SMALL_MAIN = {"format": "RGB888", "size": (64, 64)}  # the sensor-only main stream: required, never read


@pytest.fixture
def fake():
    fake_picamera2.reset()
    yield fake_picamera2
    fake_picamera2.reset()


@pytest.fixture
def network(tmp_path):
    path = tmp_path / "imx500_network_yolov8n_pose.rpk"
    path.write_bytes(b"fake rpk")
    return str(path)


def started(fake, network, roi=None, main=SMALL_MAIN, controls=None):
    """IMX500 first, then Picamera2 configured as the sensor-only mode does (EDGE_APIS.md 1.8 flow)."""
    imx = fake_devices.IMX500(network)
    if roi is not None:
        imx.set_inference_roi_abs(roi)
    cam = fake.Picamera2(imx.camera_num)
    controls = controls or {"FrameRate": 30}
    cam.configure(cam.create_preview_configuration(main=main, controls=controls, buffer_count=12))
    cam.start()
    return imx, cam


def decoded(imx, metadata, conf=0.3):
    return reference_postprocess_yolov8_keypoints(imx.get_outputs(metadata, add_batch=True), conf=conf)


def person(box, score, rng, spill=0.1):
    """A person with 17 keypoints scattered over (and a little beyond) the box, visibilities across [0, 1]."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    kx = rng.uniform(x1 - spill * w, x2 + spill * w, 17)
    ky = rng.uniform(y1 - spill * h, y2 + spill * h, 17)
    kv = rng.uniform(0.0, 1.0, 17)
    kv[:2] = (0.0, 1.0)  # the clipped extremes
    return (box, score, np.column_stack([kx, ky, kv]).astype(np.float32))


PEOPLE_BOXES = [  # (x1, y1, x2, y2) in 640x640 input pixels, score
    ((100.0, 50.0, 220.0, 400.0), 0.91),  # tall: stride 32 (half its short side, 60, exceeds 32)
    ((400.5, 300.25, 430.0, 360.0), 0.62),  # small: stride 8
    ((10.0, 10.0, 30.0, 30.0), 0.45),  # tiny, in the corner
    ((300.0, 100.0, 639.0, 639.0), 0.83),  # huge, to the edge
    ((480.0, 20.0, 600.0, 120.0), 0.77),  # overlaps the huge one (IoU well below 0.7)
    ((150.0, 420.0, 230.0, 630.0), 0.35),  # just above the demo's 0.3 threshold
]


def match(boxes, people):
    """Decoded rows in the order of ``people`` (nearest box centre)."""
    centres = np.column_stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2])
    order = []
    for (x1, y1, x2, y2), _, _ in people:
        order.append(int(np.argmin(np.hypot(*(centres - ((x1 + x2) / 2, (y1 + y2) / 2)).T))))
    assert sorted(order) == list(range(len(people)))
    return order


# -- the YOLOv8-pose layout ----------------------------------------------------------------------------------


def test_encode_then_decode_round_trips_within_a_pixel():
    rng = np.random.default_rng(21)
    people = [person(box, score, rng) for box, score in PEOPLE_BOXES]
    boxes_t, scores_t, kpts_t = encode_people(people, echoes=2)
    assert (boxes_t.shape, scores_t.shape, kpts_t.shape) == ((4, NUM_ANCHORS), (1, NUM_ANCHORS), (51, NUM_ANCHORS))
    assert all(t.dtype == np.float32 for t in (boxes_t, scores_t, kpts_t))
    # Each person sits at one anchor plus two weaker echoes; every other anchor is empty.
    assert np.count_nonzero(scores_t) == 3 * len(people)
    empty = scores_t[0] == 0
    assert not boxes_t[:, empty].any() and (kpts_t[2::3, empty] <= -20).all()

    boxes, scores, kpts = reference_postprocess_yolov8_keypoints([t[np.newaxis] for t in (boxes_t, scores_t, kpts_t)])
    assert len(boxes) == len(people)  # NMS at IoU 0.7 removed the echoes
    for row, (box, score, keypoints) in zip(match(boxes, people), people, strict=True):
        y1, x1, y2, x2 = boxes[row]
        assert (x1, y1, x2, y2) == pytest.approx(box, abs=1.0)
        assert scores[row] == pytest.approx(score, abs=1e-5)
        k = kpts[row].reshape(17, 3)
        assert np.abs(k[:, :2] - keypoints[:, :2]).max() < 1.0
        assert np.abs(k[:, 2] - keypoints[:, 2]).max() < 2e-4  # clipped to [1e-4, 1 - 1e-4] before the logit


def test_the_anchor_follows_box_size_and_centre():
    points, strides = yolov8_pose.anchors()
    assert points.shape == (NUM_ANCHORS, 2) and tuple(np.unique(strides)) == (8, 16, 32)
    assert tuple(points[0]) == (0.5, 0.5) and tuple(points[1]) == (1.5, 0.5) and tuple(points[80]) == (0.5, 1.5)
    assert (strides[:6400] == 8).all() and (strides[6400:8000] == 16).all() and (strides[8000:] == 32).all()
    for box, stride in [((100, 100, 140, 180), 16), ((100, 100, 110, 300), 8), ((0, 0, 300, 300), 32)]:
        _, scores, _ = encode_people([(box, 0.9, np.zeros((17, 3)))], echoes=0)
        (index,) = np.flatnonzero(scores[0])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        assert strides[index] == stride
        assert abs(points[index][0] * stride - cx) <= stride / 2 and abs(points[index][1] * stride - cy) <= stride / 2


def test_without_nms_the_echoes_show():
    people = [((100.0, 100.0, 300.0, 500.0), 0.9, np.zeros((17, 3)))]
    outputs = [t[np.newaxis] for t in encode_people(people, echoes=2)]
    boxes, _, _ = reference_postprocess_yolov8_keypoints(outputs, iou_thres=1.0)
    assert len(boxes) == 3  # a decoder that skips NMS reports one person three times
    assert len(reference_postprocess_yolov8_keypoints(outputs)[0]) == 1


def test_two_people_centred_in_one_cell_both_survive():
    big, small = (100.0, 100.0, 300.0, 500.0), (190.0, 290.0, 210.0, 310.0)  # same centre, both stride 8 or 32
    people = [(big, 0.9, np.zeros((17, 3))), (small, 0.8, np.zeros((17, 3)))]
    boxes, scores, _ = reference_postprocess_yolov8_keypoints([t[np.newaxis] for t in encode_people(people)])
    assert sorted(np.round(scores, 3)) == [0.8, 0.9]
    people = [(big, 0.9, np.zeros((17, 3))), (big, 0.8, np.zeros((17, 3)))]  # the same box twice: one anchor each
    _, scores_t, _ = encode_people(people, echoes=0)
    assert sorted(np.round(scores_t[0][scores_t[0] > 0], 3)) == [0.8, 0.9]


# -- the pose network in the fake IMX500 ---------------------------------------------------------------------


def test_pose_network_outputs_through_get_outputs(fake, network):
    rng = np.random.default_rng(5)
    people = [person(box, score, rng) for box, score in PEOPLE_BOXES[:3]]
    seen = []

    def detect(image):
        seen.append(image.copy())
        return people

    ai_camera(fake, [scene()], fake_imx500.FakePoseNetwork(detect=detect))
    imx, cam = started(fake, network)
    assert imx.network_intrinsics.task == "pose estimation" and imx.get_input_size() == (640, 640)
    metadata = cam.capture_metadata(wait=1.0)
    cam.close()
    assert [tuple(s) for s in imx.get_output_shapes(metadata)] == [(4, 8400), (1, 8400), (51, 8400)]
    outputs = imx.get_outputs(metadata, add_batch=True)
    assert [o.shape for o in outputs] == [(1, 4, 8400), (1, 1, 8400), (1, 51, 8400)]
    assert [o.shape for o in imx.get_outputs(metadata)] == [(4, 8400), (1, 8400), (51, 8400)]
    assert seen[0].shape == (640, 640, 3) and seen[0].dtype == np.uint8
    boxes, scores, kpts = decoded(imx, metadata)
    for row, (box, score, keypoints) in zip(match(boxes, people), people, strict=True):
        y1, x1, y2, x2 = boxes[row]
        assert (x1, y1, x2, y2) == pytest.approx(box, abs=1.0) and scores[row] == pytest.approx(score, abs=1e-5)
        assert np.abs(kpts[row].reshape(17, 3)[:, :2] - keypoints[:, :2]).max() < 1.0


@pytest.mark.parametrize("channels", ["RGB", "BGR"])
def test_the_detector_gets_the_channel_order_it_asks_for(fake, network, channels):
    red = np.zeros((600, 800, 3), np.uint8)
    red[..., 2] = 255  # BGR red
    seen = []
    ai_camera(fake, [red], fake_imx500.FakePoseNetwork(detect=lambda im: seen.append(im) or [], channels=channels))
    _, cam = started(fake, network)
    cam.capture_metadata()
    cam.close()
    assert tuple(seen[0][320, 320]) == ((255, 0, 0) if channels == "RGB" else (0, 0, 255))
    with pytest.raises(ValueError, match="channels"):
        fake_imx500.FakePoseNetwork(channels="GRB")


def test_default_detector_finds_bright_people_with_a_skeleton(fake, network):
    ai_camera(fake, [scene((0.5, 0.2, 0.7, 0.9))], fake_imx500.FakePoseNetwork())
    imx, cam = started(fake, network)
    boxes, scores, kpts = decoded(imx, cam.capture_metadata())
    cam.close()
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9)
    y1, x1, y2, x2 = boxes[0]
    assert (x1, y1, x2, y2) == pytest.approx((320, 128, 448, 576), abs=2)  # 800x600 -> 640x640, stretched
    k = kpts[0].reshape(17, 3)
    assert k[0, 1] < k[5, 1] < k[11, 1] < k[15, 1]  # nose above shoulders above hips above ankles
    assert ((k[:, 0] >= x1) & (k[:, 0] <= x2)).all()


def test_frames_without_tensors(fake, network):
    ai_camera(fake, [scene((0.4, 0.4, 0.6, 0.6))], fake_imx500.FakePoseNetwork(first_tensor_frame=1, tensor_every=2))
    imx, cam = started(fake, network)
    frames = [imx.get_outputs(cam.capture_metadata(), add_batch=True) for _ in range(4)]
    cam.close()
    assert [f is not None for f in frames] == [False, True, False, True]


def test_the_pose_network_sees_only_the_roi(fake, network):
    """Two bright people; an ROI over the right three quarters of the sensor: the network never sees the left one,
    and the one it sees is in ROI-relative input pixels."""
    sensor = ai_camera(fake, [scene((0.05, 0.3, 0.2, 0.7), (0.6, 0.3, 0.8, 0.7))], fake_imx500.FakePoseNetwork())
    spy = []
    sensor.network.detect = lambda image: spy.append(image.copy()) or fake_imx500.bright_blob_people(image)
    roi = (FULL_SENSOR[0] // 4, 0, FULL_SENSOR[0] - FULL_SENSOR[0] // 4, FULL_SENSOR[1])
    imx, cam = started(fake, network, roi=roi)
    boxes, _, _ = decoded(imx, cam.capture_metadata())
    cam.close()
    assert spy[0].shape == (640, 640, 3)
    blobs, _ = cv2.connectedComponents((spy[0].max(axis=2) >= 200).astype(np.uint8))
    assert blobs - 1 == 1 and len(boxes) == 1  # the left person (x 0.05-0.2 < 0.25) was never in the input
    y1, x1, y2, x2 = boxes[0]
    assert (x1, x2) == pytest.approx((640 * 0.35 / 0.75, 640 * 0.55 / 0.75), abs=2)
    assert (y1, y2) == pytest.approx((0.3 * 640, 0.7 * 640), abs=2)
    assert imx.last_input is not None and imx.last_input.shape == (640, 640, 3)
    assert len(sensor.network.last_people) == 1


def test_pre_callback_blanking_does_not_reach_the_pose_network(fake, network):
    """Blanking the left person in the ISP output changes nothing for the on-sensor network (full ROI)."""
    ai_camera(fake, [scene((0.05, 0.3, 0.2, 0.7), (0.6, 0.3, 0.8, 0.7))], fake_imx500.FakePoseNetwork())
    imx = fake_devices.IMX500(network)
    cam = fake.Picamera2(imx.camera_num)
    cam.configure(cam.create_preview_configuration(main={"format": "RGB888", "size": (320, 240)}))

    def blank(request):
        with fake.MappedArray(request, "main") as m:
            m.array[:, :80] = 0

    cam.pre_callback = blank
    cam.start()
    with cam.captured_request() as request:
        assert not request.make_array("main")[:, :80].any()
        boxes, _, _ = decoded(imx, request.get_metadata())
    cam.close()
    assert len(boxes) == 2


def test_real_movenet_runs_in_the_fake_sensor(fake, network, backend, shared):
    """The CPU MoveNet backend as the sensor's detector: photos of people in the scene, seen through the ROI."""
    astronaut = cv2.imread(str(shared / "media" / "astronaut.png"))
    cameraman = cv2.imread(str(shared / "media" / "camera.png"))
    room = np.full((1014, 1352, 3), 20, np.uint8)  # a third of the sensor in each direction
    room[250:762, 0:512] = cameraman
    room[250:762, 800:1312] = astronaut
    sensor = ai_camera(fake, [room], fake_imx500.FakePoseNetwork(detect=backend.detect))

    imx, cam = started(fake, network)
    boxes, _, _ = decoded(imx, cam.capture_metadata())
    cam.close()
    assert len(boxes) == 2

    imx, cam = started(fake, network, roi=(FULL_SENSOR[0] // 2, 0, FULL_SENSOR[0] // 2, FULL_SENSOR[1]))
    boxes, scores, kpts = decoded(imx, cam.capture_metadata())
    cam.close()
    assert len(boxes) == 1 and scores[0] > 0.3
    # The nose lies on the astronaut's face (photo x 160-280, y 40-200), in ROI-relative input pixels.
    sx, sy = 640 / 676, 640 / 1014
    nose_x, nose_y, nose_seen = kpts[0][:3]
    assert (800 + 160 - 676) * sx <= nose_x <= (800 + 280 - 676) * sx and (250 + 40) * sy <= nose_y <= (250 + 200) * sy
    assert nose_seen > 0.3
    (box, score, keypoints), *_ = sensor.network.last_people
    assert tuple(boxes[0][[1, 0, 3, 2]]) == pytest.approx(box, abs=1.0) and scores[0] == pytest.approx(score, abs=1e-5)


# -- pixels handed to the process ----------------------------------------------------------------------------


class _StubImage:
    def __init__(self, size):
        self.size = size

    def resize(self, size):
        return _StubImage(size)


@pytest.fixture
def stub_pil(monkeypatch):
    """A stand-in for pillow (not installed here): make_image builds its image through PIL.Image.frombuffer."""
    pil = types.ModuleType("PIL")
    image = types.ModuleType("PIL.Image")
    image.frombuffer = lambda mode, size, data, *args: _StubImage(size)
    pil.Image = image
    monkeypatch.setitem(sys.modules, "PIL", pil)
    monkeypatch.setitem(sys.modules, "PIL.Image", image)


def _map(cam, **kwargs):
    with cam.captured_request() as request, fake_picamera2.MappedArray(request, "main", **kwargs) as m:
        assert m.array is not None


def _request_then(method):
    def call(cam):
        with cam.captured_request() as request:
            getattr(request, method)("main")

    return call


HANDOUTS = {  # call -> (pixel hand-outs, kinds)
    "MappedArray": (lambda cam: _map(cam), 1, {"MappedArray"}),
    "MappedArray read-only": (lambda cam: _map(cam, write=False), 1, {"MappedArray"}),
    "MappedArray flat": (lambda cam: _map(cam, reshape=False), 1, {"MappedArray"}),
    "request.make_array": (_request_then("make_array"), 1, {"make_array"}),
    "request.make_buffer": (_request_then("make_buffer"), 1, {"make_buffer"}),
    "request.make_image": (_request_then("make_image"), 1, {"make_image"}),
    "capture_array": (lambda cam: cam.capture_array("main", wait=1.0), 1, {"make_array"}),
    "capture_arrays": (lambda cam: cam.capture_arrays(["main"]), 1, {"make_array"}),
    "capture_arrays main+lores": (lambda cam: cam.capture_arrays(["main", "lores"]), 2, {"make_array"}),
    "capture_buffer": (lambda cam: cam.capture_buffer(), 1, {"make_buffer"}),
    "capture_buffers": (lambda cam: cam.capture_buffers(["main", "lores"]), 2, {"make_buffer"}),
    "capture_image": (lambda cam: cam.capture_image("main"), 1, {"make_image"}),
}


@pytest.mark.parametrize("name", list(HANDOUTS))
def test_every_pixel_producing_call_is_counted(fake, stub_pil, name):
    call, count, kinds = HANDOUTS[name]
    sensor = fake.add_camera([scene((0.4, 0.4, 0.6, 0.6))])
    cam = fake.Picamera2(0)
    cam.configure(cam.create_preview_configuration(main={"format": "RGB888", "size": (64, 48)}, lores={}))
    cam.start()
    call(cam)
    assert (sensor.pixels_handed_out, cam.pixels_handed_out) == (count, count)
    assert set(sensor.pixel_handouts) == kinds
    assert cam.outstanding == 0


def test_requests_and_metadata_alone_hand_out_no_pixels(fake, stub_pil):
    sensor = fake.add_camera([scene()])
    cam = fake.Picamera2(0)
    cam.configure(cam.create_preview_configuration(main=SMALL_MAIN))
    cam.start()
    with cam.captured_request() as request:
        request.get_metadata()
    assert cam.capture_metadata()["SensorTimestamp"] > 0
    cam.stop()
    cam.configure(cam.create_preview_configuration(main={"format": "YUV420", "size": (64, 64)}))
    cam.start()
    with pytest.raises(RuntimeError, match="not supported for PIL"):  # refused before any pixel moves
        cam.capture_image()
    assert sensor.pixels_handed_out == 0 and cam.outstanding == 0 and cam.requests_issued == 3


def test_a_pre_callback_mapping_the_buffer_counts_every_frame(fake):
    sensor = fake.add_camera([scene()])
    cam = fake.Picamera2(0)
    cam.configure(cam.create_preview_configuration(main=SMALL_MAIN))

    def touch(request):
        with fake.MappedArray(request, "main") as m:
            m.array[0, 0] = 0

    cam.pre_callback = touch
    cam.start()
    for _ in range(3):
        cam.capture_metadata()  # the metadata reader touches no pixel, but the callback did
    assert sensor.pixels_handed_out == 3 and dict(sensor.pixel_handouts) == {"MappedArray": 3}


def test_sensor_only_loop_hands_out_no_pixels(fake, network):
    """The sensor-only configuration: a small main stream nobody reads, no pre_callback, capture_metadata() only."""
    sensor = ai_camera(fake, [scene((0.3, 0.2, 0.5, 0.9))], fake_imx500.FakePoseNetwork())
    imx, cam = started(fake, network)
    assert cam.camera_configuration()["main"]["size"] == (64, 64)
    people = []
    for _ in range(10):
        metadata = cam.capture_metadata(wait=0.5)
        assert "CnnInputTensor" not in metadata
        people.append(len(decoded(imx, metadata)[0]))
    assert people == [1] * 10
    assert sensor.pixels_handed_out == 0 and not sensor.pixel_handouts
    assert cam.outstanding == 0 and cam.requests_issued == 10  # every request went back to the camera
    cam.close()
    assert cam.unreleased_at_close == 0 and sensor.pixels_handed_out == 0


def test_the_input_tensor_is_pixels_too(fake, network):
    """CnnEnableInputTensor puts the network's input image into every frame's metadata: counted on each read."""
    sensor = ai_camera(fake, [scene((0.3, 0.2, 0.5, 0.9))], fake_imx500.FakePoseNetwork())
    imx, cam = started(fake, network, controls={"FrameRate": 30, "CnnEnableInputTensor": True})
    metadata = cam.capture_metadata()
    cam.close()
    assert len(metadata["CnnInputTensor"]) == 640 * 640 * 3 and len(metadata["CnnInputTensorInfo"]) == 76
    planes = np.array(metadata["CnnInputTensor"], np.uint8).reshape(3, 640, 640)
    assert np.array_equal(planes.transpose(1, 2, 0), imx.last_input)  # B, G, R planes of what the network saw
    assert sensor.pixels_handed_out == 1 and dict(sensor.pixel_handouts) == {"CnnInputTensor": 1}
    other = fake.add_camera([scene()])  # an ordinary camera module has no such control
    cam = fake.Picamera2(1)
    assert "CnnEnableInputTensor" not in cam.camera_controls
    with pytest.raises(RuntimeError, match="not advertised"):
        cam.set_controls({"CnnEnableInputTensor": True})
    cam.close()
    assert other.pixels_handed_out == 0


def test_the_count_outlives_the_camera_and_is_per_sensor(fake):
    sensor = fake.add_camera([scene()])
    cam = fake.Picamera2(0)
    cam.configure(cam.create_preview_configuration(main=SMALL_MAIN))
    cam.start()
    request = cam.capture_request()
    cam.close()  # the application still holds the request
    request.make_array("main")
    request.release()
    again = fake.Picamera2(0)
    again.start(again.create_preview_configuration(main=SMALL_MAIN))
    again.capture_array()
    again.close()
    assert (sensor.pixels_handed_out, cam.pixels_handed_out, again.pixels_handed_out) == (2, 1, 1)


# -- what the real camera refuses -----------------------------------------------------------------------------


def test_there_is_no_configuration_without_a_main_stream(fake):
    fake.add_camera([scene()])
    cam = fake.Picamera2(0)
    with pytest.raises(TypeError, match="not subscriptable"):  # the real builder's align_stream(None)
        cam.create_preview_configuration(main=None)
    config = cam.create_preview_configuration(main=SMALL_MAIN)
    config["main"] = None
    with pytest.raises(RuntimeError, match="main stream should be a dictionary"):
        cam.configure(config)
    assert cam.create_preview_configuration()["main"]["size"] == (640, 480)  # the default main={} still works
    config = cam.create_preview_configuration(main={"format": "RGB888", "size": (63, 47)})
    assert config["main"]["size"] == (62, 46)  # align_stream(optimal=False): even sizes
    config["main"]["size"] = (63, 47)
    with pytest.raises(RuntimeError, match="even"):
        cam.configure(config)
    with pytest.raises(RuntimeError, match="lores stream dimensions may not exceed main stream"):
        cam.configure(cam.create_preview_configuration(main=SMALL_MAIN, lores={"size": (320, 240)}))
    cam.close()


def test_capture_metadata_rules(fake, network):
    sensor = ai_camera(fake, [scene()], fake_imx500.FakePoseNetwork())
    imx = fake_devices.IMX500(network)
    cam = fake.Picamera2(imx.camera_num)
    cam.configure(cam.create_preview_configuration(main=SMALL_MAIN))
    with pytest.raises(RuntimeError, match="before start"):
        cam.capture_metadata(wait=0.5)
    cam.start()
    with pytest.raises(NotImplementedError):
        cam.capture_metadata(signal_function=lambda job: None)
    with pytest.raises(NotImplementedError):
        cam.capture_metadata(wait=False)
    sensor.fail_after(1)
    assert "CnnOutputTensor" in cam.capture_metadata(wait=0.5)
    with pytest.raises(TimeoutError):
        cam.capture_metadata(wait=0.5)
    cam.close()
    assert sensor.pixels_handed_out == 0


def test_the_pose_input_size_is_fixed():
    net = fake_imx500.FakePoseNetwork()
    assert net.input_size == (640, 640) and net.task == "pose estimation"
    with pytest.raises(TypeError):
        fake_imx500.FakePoseNetwork(input_size=(320, 320))  # the 80/40/20 anchor grids are those of 640x640
