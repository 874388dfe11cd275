"""Fake ``picamera2.devices.imx500.IMX500``, modelled on raspberrypi/picamera2 ``devices/imx500/imx500.py``
(EDGE_APIS.md 1.8). What is faithful:

- ``IMX500(network_file)`` finds the attached camera whose model is "imx500" (``RuntimeError('IMX500: Requested
  camera dev-node not found')`` without one) and records its ``camera_num``; a missing network file raises
  ``RuntimeError('Firmware file ... does not exist.')``. The inference ROI starts as the full sensor 4056x3040.
- Frames carry ``CnnOutputTensor`` (a flat float32 sequence) and ``CnnOutputTensorInfo`` (the 712-byte struct:
  network_name char[64], num_tensors uint32, 16 x {tensor_data_num uint32, num_dimensions uint32,
  size uint16[16]}, frameCount uint8, padding). ``get_outputs`` returns None when the tensor is missing or empty,
  else splits by those shapes and reshapes each piece in **Fortran order**; ``add_batch`` adds a leading axis.
  A blob of another length raises ``ValueError``.
- Post-processed SSD outputs: boxes (N, 4) normalised (y0, x0, y1, x1) (or input pixels / xy order when the
  intrinsics say so), scores (N,), classes (N,).
- The YOLOv8n pose network (``FakePoseNetwork``; intrinsics task "pose estimation", input 640x640): the raw
  tensors that Picamera2's ``postprocess_yolov8_keypoints`` decodes, ``get_outputs(md, add_batch=True)`` shapes
  (1, 4, 8400) box distances, (1, 1, 8400) person scores, (1, 51, 8400) keypoints; layout in ``yolov8_pose.py``.
- With the camera control ``CnnEnableInputTensor`` set, each frame's metadata also carries ``CnnInputTensor``
  (the network's input image, planar B, G, R planes as ``input_tensor_image`` reverses them; the fake does not
  apply the input normalisation) and ``CnnInputTensorInfo`` (struct ``64sIII``: name, width, height, channels).
  That is image pixels in the process: ``CompletedRequest.get_metadata`` counts it (``pixels_handed_out``).

The network "runs in the sensor": it sees the sensor's scene (the raw image, before any ``pre_callback``
blanking on the Pi) cropped to the inference ROI and scaled (stretched) to the input tensor, exactly as the real
one sees only the ROI. ``FakeNetwork`` finds bright blobs (grey level >= 200) there and reports them as class 0
("person"). ``FakePoseNetwork(detect=...)`` hands that input image (RGB by default, 640x640) to a pluggable
detector, e.g. the CPU MoveNet backend's ``detect``, returning ``Person``-like objects (``.box``, ``.score``,
``.keypoints``) or ``(box, score, keypoints)`` tuples in that image's pixels; without one it finds bright blobs and
gives each a standing skeleton. ``IMX500.last_input`` is the (BGR) image the network saw, for tests, and
``FakePoseNetwork.last_people`` the people it encoded (input pixels).

Deliberately stricter than the real device:
- Constructing ``IMX500`` after a ``Picamera2`` opened the camera raises ``RuntimeError`` (the real one cannot
  load the network into a running camera; results silently never come).
- ``set_inference_roi_abs`` with a rectangle outside the sensor or of zero size raises ``ValueError``.

Fake-only: ``FakeNetwork`` / ``FakePoseNetwork`` (set ``sensor.network = FakeNetwork(...)`` on the ``FakeSensor``
before constructing IMX500) with ``tensor_every``/``first_tensor_frame`` to leave frames without tensors;
``roi_history``; the results are attached to each request through a ``Picamera2.taps`` entry, i.e. after
``pre_callback`` ran.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...camera import Picamera2, attached
from .yolov8_pose import INPUT_SIZE, NUM_KEYPOINTS, PoseDetection, encode_people

FULL_SENSOR = (4056, 3040)
MAX_TENSORS = 16
MAX_DIMS = 16
INFO_FORMAT = "<64sI" + "II16H" * MAX_TENSORS + "B"
INFO_SIZE = 712  # the ctypes struct size (709 bytes of fields, padded to 4-byte alignment)
assert struct.calcsize(INFO_FORMAT) <= INFO_SIZE
INPUT_INFO_FORMAT = "64sIII"  # CnnInputTensorInfo: network name, width, height, channels


def pack_output_tensor_info(shapes: list[tuple[int, ...]], name: str = "fake_ssd", frame_count: int = 0) -> bytes:
    values: list[Any] = [name.encode()[:63], len(shapes)]
    for i in range(MAX_TENSORS):
        shape = shapes[i] if i < len(shapes) else ()
        dims = list(shape) + [0] * (MAX_DIMS - len(shape))
        values += [int(np.prod(shape)) if shape else 0, len(shape), *dims]
    values.append(frame_count & 0xFF)
    return struct.pack(INFO_FORMAT, *values).ljust(INFO_SIZE, b"\0")


@dataclass
class NetworkIntrinsics:
    task: str = "object detection"
    inference_rate: float = 30.0
    bbox_normalization: bool = False
    bbox_order: str = "yx"
    labels: list[str] = field(default_factory=lambda: ["person", "bicycle", "car"])


@dataclass
class FakeNetwork:
    input_size: tuple[int, int] = (320, 320)  # (width, height)
    name: str = "fake_ssd"  # the network_name in CnnOutputTensorInfo
    max_detections: int = 10
    threshold: int = 200  # grey level of a "person"
    task: str = "object detection"
    bbox_normalization: bool = False  # boxes in input pixels instead of 0..1
    bbox_order: str = "yx"
    tensor_every: int = 1  # results with every n-th frame only
    first_tensor_frame: int = 0  # frames before this one carry no tensor (network still loading)

    def run(self, view_bgr: np.ndarray) -> list[np.ndarray]:
        w, h = self.input_size
        tensor = cv2.resize(view_bgr, (w, h), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(tensor, cv2.COLOR_BGR2GRAY)
        n, _, stats, _ = cv2.connectedComponentsWithStats((grey >= self.threshold).astype(np.uint8))
        boxes = np.zeros((self.max_detections, 4), np.float32)
        scores = np.zeros(self.max_detections, np.float32)
        classes = np.zeros(self.max_detections, np.float32)
        found = sorted((tuple(int(v) for v in s) for s in stats[1:] if s[4] >= 4), key=lambda s: -s[4])
        for i, (x, y, bw, bh, _area) in enumerate(found[: self.max_detections]):
            y0, x0, y1, x1 = y / h, x / w, (y + bh) / h, (x + bw) / w
            if self.bbox_normalization:
                y0, x0, y1, x1 = y0 * h, x0 * h, y1 * h, x1 * h  # the real demos divide by the input height
            boxes[i] = (x0, y0, x1, y1) if self.bbox_order == "xy" else (y0, x0, y1, x1)
            scores[i] = 0.9
        return [boxes, scores, classes, np.array([float(min(len(found), self.max_detections))], np.float32)]


# A standing person facing the camera, as fractions of the box: COCO keypoint order (the person's left is on the
# image's right).
_SKELETON = np.array(
    [
        (0.50, 0.08), (0.55, 0.06), (0.45, 0.06), (0.60, 0.08), (0.40, 0.08),  # nose, eyes, ears
        (0.70, 0.22), (0.30, 0.22), (0.78, 0.38), (0.22, 0.38), (0.80, 0.52), (0.20, 0.52),  # shoulders..wrists
        (0.62, 0.55), (0.38, 0.55), (0.62, 0.75), (0.38, 0.75), (0.62, 0.95), (0.38, 0.95),  # hips..ankles
    ]
)  # fmt: skip


def bright_blob_people(image: np.ndarray, threshold: int = 200) -> list[PoseDetection]:
    """The default pose "detector": each bright blob (grey level >= threshold, >= 4 pixels) is a person with score
    0.9 and a standing skeleton filling its box (keypoint scores 0.9)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # channel order hardly matters for grey blobs
    n, _, stats, _ = cv2.connectedComponentsWithStats((grey >= threshold).astype(np.uint8))
    people: list[PoseDetection] = []
    for x, y, w, h, area in stats[1:]:
        if area < 4:
            continue
        keypoints = np.empty((NUM_KEYPOINTS, 3), np.float32)
        keypoints[:, 0] = x + _SKELETON[:, 0] * w
        keypoints[:, 1] = y + _SKELETON[:, 1] * h
        keypoints[:, 2] = 0.9
        people.append(((float(x), float(y), float(x + w), float(y + h)), 0.9, keypoints))
    return people


def as_pose_detection(person: Any) -> PoseDetection:
    """A detector's answer: a ``Person``-like object (.box, .score, .keypoints) or a (box, score, keypoints)."""
    if hasattr(person, "box"):
        box, score, keypoints = person.box, person.score, person.keypoints
    else:
        box, score, keypoints = person
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1, y1, x2, y2), float(score), np.asarray(keypoints, np.float32).reshape(NUM_KEYPOINTS, 3)


PoseDetector = Callable[[np.ndarray], Sequence[Any]]


@dataclass
class FakePoseNetwork:
    """YOLOv8n pose in the sensor. ``detect(image)`` gets the input tensor image (``input_size``, stretched from the
    ROI view; RGB unless ``channels="BGR"``) and returns people in its pixels; the fake encodes them in the raw
    YOLOv8-pose layout (``yolov8_pose.py``), each person at one anchor plus ``echoes`` weaker duplicates."""

    detect: PoseDetector | None = None  # None: bright_blob_people
    channels: str = "RGB"  # the channel order detect expects: "RGB" (the CPU MoveNet backend) or "BGR"
    echoes: int = 2  # extra, weaker, slightly smaller copies of each person at neighbouring anchors (NMS needed)
    task: str = "pose estimation"
    name: str = "fake_yolov8n_pose"
    tensor_every: int = 1
    first_tensor_frame: int = 0
    bbox_normalization: bool = False  # not used by the pose decoder; the intrinsics carry it anyway
    bbox_order: str = "yx"
    input_size: tuple[int, int] = field(default=INPUT_SIZE, init=False)  # fixed: the 80/40/20 grids need 640x640
    last_people: list[PoseDetection] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', not {self.channels!r}")

    def run(self, view_bgr: np.ndarray) -> list[np.ndarray]:
        tensor = cv2.resize(view_bgr, self.input_size, interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(tensor[..., ::-1] if self.channels == "RGB" else tensor)
        detect = self.detect or bright_blob_people
        self.last_people = [as_pose_detection(p) for p in detect(image)]
        return encode_people(self.last_people, echoes=self.echoes)


OnSensorNetwork = FakeNetwork | FakePoseNetwork


class IMX500:
    def __init__(self, network_file: str, camera_id: str = "", tensor_injection: bool = False) -> None:
        sensors = [(i, s) for i, s in enumerate(attached()) if s.model == "imx500"]
        if camera_id:
            sensors = [(i, s) for i, s in sensors if s.camera_id == camera_id]
        if not sensors:
            raise RuntimeError("IMX500: Requested camera dev-node not found")
        num, sensor = sensors[0]
        if not Path(network_file).is_file():
            raise RuntimeError(f"Firmware file {network_file} does not exist.")
        if sensor.opened_by is not None:
            raise RuntimeError(
                "fake IMX500: constructed after Picamera2 opened the camera; IMX500(network) must come first"
            )
        self.camera_num = Picamera2.global_camera_info()[num]["Num"]
        self._sensor = sensor
        self.network: OnSensorNetwork = getattr(sensor, "network", None) or FakeNetwork()
        net = self.network
        self.network_intrinsics = NetworkIntrinsics(
            task=net.task, bbox_normalization=net.bbox_normalization, bbox_order=net.bbox_order
        )
        self.roi: tuple[int, int, int, int] = (0, 0, *FULL_SENSOR)
        self.roi_history: list[tuple[int, int, int, int]] = [self.roi]
        self.config = {
            "network_file": network_file,
            "input_tensor": {"width": net.input_size[0], "height": net.input_size[1]},
            "input_tensor_size": net.input_size,
            "roi": self.roi,
        }
        self.last_input: np.ndarray | None = None
        self._frames = 0
        self._scene: np.ndarray | None = None
        self._last_flat: tuple[np.ndarray, list[float]] | None = None
        original = sensor.next_scene

        def next_scene() -> np.ndarray:  # per frame: remember what the sensor saw, hook the camera's taps
            scene = original()
            self._scene = scene
            cam = sensor.opened_by
            if cam is not None and self._tap not in cam.taps:
                cam.taps.append(self._tap)
            return scene

        sensor.next_scene = next_scene  # type: ignore[method-assign]

    # -- the on-sensor network ---------------------------------------------------------------------------

    def _tap(self, request: Any) -> None:
        frame, self._frames = self._frames, self._frames + 1
        net = self.network
        if frame < net.first_tensor_frame or (frame - net.first_tensor_frame) % net.tensor_every:
            return
        assert self._scene is not None
        sh, sw = self._scene.shape[:2]
        x, y, w, h = self.roi
        fx, fy = sw / FULL_SENSOR[0], sh / FULL_SENSOR[1]  # the scene spans the full sensor
        x0, y0 = int(np.floor(x * fx)), int(np.floor(y * fy))
        x1, y1 = max(x0 + 1, int(np.ceil((x + w) * fx))), max(y0 + 1, int(np.ceil((y + h) * fy)))
        view = self._scene[y0:y1, x0:x1]
        self.last_input = cv2.resize(view, net.input_size, interpolation=cv2.INTER_AREA)
        outputs = net.run(view)
        flat = np.concatenate([o.reshape(-1, order="F") for o in outputs]).astype(np.float32)
        if self._last_flat is None or not np.array_equal(flat, self._last_flat[0]):
            self._last_flat = (flat, flat.tolist())  # tolist() of a pose output takes ~20 ms: reuse when unchanged
        request._metadata["CnnOutputTensor"] = self._last_flat[1]
        request._metadata["CnnOutputTensorInfo"] = pack_output_tensor_info([o.shape for o in outputs], net.name)
        if request.picam2.controls.get("CnnEnableInputTensor"):
            w, h = net.input_size
            planar = self.last_input.transpose(2, 0, 1)  # B, G, R planes: input_tensor_image reverses them to RGB
            request._metadata["CnnInputTensor"] = planar.reshape(-1).tolist()
            request._metadata["CnnInputTensorInfo"] = struct.pack(INPUT_INFO_FORMAT, net.name.encode()[:63], w, h, 3)

    # -- the public API ------------------------------------------------------------------------------------

    def get_input_size(self) -> tuple[int, int]:
        return self.network.input_size

    def get_output_shapes(self, metadata: dict[str, Any]) -> list[list[int]]:
        blob = metadata.get("CnnOutputTensorInfo")
        if not blob:
            return []
        blob = bytes(blob)
        if len(blob) != INFO_SIZE:
            raise ValueError(f"tensor info length {len(blob)} does not match expected size {INFO_SIZE}")
        values = struct.unpack(INFO_FORMAT, blob[: struct.calcsize(INFO_FORMAT)])
        shapes = []
        for i in range(values[1]):
            base = 2 + i * (2 + MAX_DIMS)
            ndim = values[base + 1]
            shapes.append(list(values[base + 2 : base + 2 + ndim]))
        return shapes

    def get_outputs(self, metadata: dict[str, Any], add_batch: bool = False) -> list[np.ndarray] | None:
        tensor = metadata.get("CnnOutputTensor")
        if not tensor:
            return None
        values = np.fromiter(tensor, dtype=np.float32)
        outputs, offset = [], 0
        for shape in self.get_output_shapes(metadata):
            size = int(np.prod(shape))
            piece = values[offset : offset + size].reshape(shape, order="F")
            outputs.append(piece[np.newaxis] if add_batch else piece)
            offset += size
        return outputs

    def set_inference_roi_abs(self, roi: tuple[int, int, int, int]) -> None:
        x, y, w, h = (int(v) for v in roi)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > FULL_SENSOR[0] or y + h > FULL_SENSOR[1]:
            raise ValueError(f"fake IMX500: ROI {roi} is not inside the {FULL_SENSOR} sensor")
        self.roi = (x, y, w, h)
        self.roi_history.append(self.roi)
        self.config["roi"] = self.roi

    def show_network_fw_progress_bar(self) -> None:
        pass

    @staticmethod
    def get_kpi_info(metadata: dict[str, Any]) -> tuple[float, float] | None:
        return None
