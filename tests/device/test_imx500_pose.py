"""The AI Camera's pose network and sensor-only mode, through the product code against the fake picamera2 and its
fake IMX500 (whose pose network writes YOLOv8 pose's raw output layout): people with 17 keypoints in frame pixels
through the inference ROI, the same fall clip giving the same events on the CPU and on the AI Camera, and a whole
agent run in sensor-only mode that never touches an image buffer while its events reach a real fleet server."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from accelerators import registry

registry.entries()  # load the registry's plugins first: entries() loads them only into an empty registry

from accelerators.cpu import CpuPoseBackend  # noqa: E402
from accelerators.imx500 import FULL_SENSOR, Imx500Camera, Imx500PersonBackend  # noqa: E402
from accelerators.imx500_geometry import decode_yolov8_pose  # noqa: E402
from accelerators.types import Person  # noqa: E402
from firmware.agent import Agent  # noqa: E402
from firmware.apps.fall import FallApp  # noqa: E402
from firmware.apps.occupancy import OccupancyApp  # noqa: E402
from firmware.imx500_source import Imx500Source  # noqa: E402
from firmware.privacy import PrivacyMask  # noqa: E402
from firmware.sources import VideoFileSource  # noqa: E402
from tests.device.fakes.picamera2.devices.imx500 import imx500 as fake_imx500  # noqa: E402
from tests.device.fakes.picamera2.devices.imx500.yolov8_pose import encode_people  # noqa: E402
from tests.device.test_imx500 import ai_camera, scene  # noqa: E402

LEFT_QUARTER = [(0.0, 0.0), (0.25, 0.0), (0.25, 1.0), (0.0, 1.0)]


@pytest.fixture
def network(tmp_path):
    path = tmp_path / "imx500_network_yolov8n_pose.rpk"
    path.write_bytes(b"fake rpk")
    return path


class Ticks:
    """A clock that moves on by one frame each time it is read: the camera reads it once per frame."""

    def __init__(self, fps: float) -> None:
        self.n, self.fps = -1, fps

    def __call__(self) -> float:
        self.n += 1
        return self.n / self.fps


def test_the_decoder_reads_yolov8_pose_outputs_into_frame_pixels_through_the_roi():
    # one person in a 640x640 input, encoded in the raw layout (with two weaker duplicates that NMS removes)
    kps = np.array([[300 + i, 200 + 10 * i, 0.9] for i in range(17)], np.float32)
    outputs = [o[np.newaxis] for o in encode_people([((280.0, 180.0, 360.0, 400.0), 0.8, kps)], echoes=2)]
    # the ROI is the right half of the sensor; the frame shows the whole sensor at 1014x760
    roi, crop, frame = (2028, 0, 2028, 3040), (0, 0, *FULL_SENSOR), (1014, 760)
    people = decode_yolov8_pose(outputs, input_size=(640, 640), roi=roi, scaler_crop=crop, frame_size=frame)
    assert len(people) == 1
    sx, sy = 2028 / 640 * 1014 / 4056, 3040 / 640 * 760 / 3040
    assert people[0].box == pytest.approx((507 + 280 * sx, 180 * sy, 507 + 360 * sx, 400 * sy), abs=1.0)
    assert people[0].keypoints[:, 0] == pytest.approx(507 + kps[:, 0] * sx, abs=1.0)
    assert people[0].keypoints[:, 1] == pytest.approx(kps[:, 1] * sy, abs=1.0)
    assert people[0].keypoints[:, 2] == pytest.approx(0.9, abs=0.01) and people[0].score == pytest.approx(0.8)


def test_the_pose_network_gives_people_with_17_keypoints_and_never_sees_a_privacy_region(fake, network):
    # a person in the left quarter (a privacy region) and one on the right
    ai_camera(fake, [scene((0.05, 0.2, 0.2, 0.9), (0.6, 0.2, 0.75, 0.9))], fake_imx500.FakePoseNetwork())
    mask = PrivacyMask([LEFT_QUARTER]).mask_for
    cam = Imx500Camera(network, size=(640, 480), privacy_mask=mask)
    try:
        assert cam.task == "pose estimation" and cam.roi is not None and cam.roi[0] >= FULL_SENSOR[0] // 4
        frame = cam.read()
    finally:
        cam.close()
    assert len(frame.people) == 1
    (person,) = frame.people
    assert person.box == pytest.approx((384, 96, 480, 432), abs=6)
    assert person.keypoints.shape == (17, 3) and (person.keypoints[:, 2] > 0.5).all()
    x1, y1, x2, y2 = person.box
    assert (person.keypoints[:, 0] >= x1 - 1).all() and (person.keypoints[:, 0] <= x2 + 1).all()


def test_the_same_fall_clip_gives_the_same_events_on_the_cpu_and_on_the_ai_camera(fake, tmp_path, movenet_path, shared):
    """The clip's frames are the sensor's scenes; the fake's pose network runs the CPU MoveNet on what the sensor
    sees (the ROI stretched to its 640x640 input) and writes YOLOv8 pose tensors, which the product decodes.
    Sensor-only mode: the agent gets no image, only the people."""
    clip = shared / "data" / "upfall-dev" / "a01_t1_cam1.mp4"
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cpu = CpuPoseBackend(movenet_path, num_threads=2)
    sensor = ai_camera(fake, frames, fake_imx500.FakePoseNetwork(detect=cpu.detect))
    network = tmp_path / "imx500_network_yolov8n_pose.rpk"
    network.write_bytes(b"fake rpk")

    def run(source, backend) -> list:
        events: list = []
        agent = Agent(source, backend, [FallApp(), OccupancyApp()], emit=events.append)
        for _ in frames:
            agent.step()
        return events

    cam = Imx500Camera(network, size=(640, 480), host_frames=False, min_score=0.15, clock=Ticks(18.0))
    ai = Imx500PersonBackend(cam)
    try:
        on_camera = run(Imx500Source(ai), ai)
    finally:
        ai.close()
    on_cpu = run(VideoFileSource(clip, realtime=False, clock=lambda: 0.0), cpu)
    assert sensor.pixels_handed_out == 0
    assert any(e.type == "fall" for e in on_cpu)
    assert [(e.app, e.type) for e in on_camera] == [(e.app, e.type) for e in on_cpu]
    for a, b in zip(on_camera, on_cpu, strict=True):
        assert abs(a.time - b.time) <= 0.5


def test_sensor_only_drops_people_in_a_privacy_region(fake, network):
    ai_camera(fake, [scene((0.6, 0.2, 0.75, 0.9))], fake_imx500.FakePoseNetwork())
    cam = Imx500Camera(network, size=(640, 480), privacy_mask=PrivacyMask([LEFT_QUARTER]).mask_for, host_frames=False)
    try:
        frame = cam.read()
        assert frame.image is None and len(frame.people) == 1
        kps = np.zeros((17, 3), np.float32)
        kps[:, :2] = (400, 200)
        kps[9] = (100, 200, 0.9)  # a wrist reaching into the region
        assert cam._in_privacy_region(Person((380, 100, 460, 400), 0.9, kps))
        kps[9, 2] = 0.1  # an unsure keypoint does not count
        assert not cam._in_privacy_region(Person((380, 100, 460, 400), 0.9, kps))
        assert cam._in_privacy_region(Person((100, 100, 140, 400), 0.9, np.zeros((17, 3), np.float32)))
    finally:
        cam.close()
