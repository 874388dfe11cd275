"""Raspberry Pi AI Camera (Sony IMX500): people and their pose found by the network that runs inside the sensor.

API facts relied on (raspberrypi/picamera2 ``picamera2/devices/imx500/imx500.py`` and the IMX500 demos; see
``../shared/reference/EDGE_APIS.md`` (beside the repository) section 1.8 and the Appendix):

- ``IMX500(network_file)`` must be constructed **before** ``Picamera2(imx500.camera_num)``: it finds the sensor's
  V4L2 sub-device (``RuntimeError`` "Requested camera dev-node not found" without one) and hands the ``.rpk``
  network firmware to the driver (``RuntimeError`` "Firmware file ... does not exist." when missing).
- Every completed request carries metadata; frames with results carry ``CnnOutputTensor`` (flat float32) and
  ``CnnOutputTensorInfo`` (the 712-byte shape struct). ``get_outputs(metadata, add_batch=True)`` splits and reshapes
  them in Fortran order, and returns **None on frames without tensors**: that frame has no detections, which
  is not an error.
- Post-processed SSD networks (``*_pp.rpk``) give ``outputs[0][0]`` boxes (N, 4) as normalised (y0, x0, y1, x1),
  ``outputs[1][0]`` scores (N,), ``outputs[2][0]`` classes (N,); the network intrinsics may say the boxes are in
  input pixels (``bbox_normalization``: divide by the input height) or in (x0, y0, x1, y1) order
  (``bbox_order == "xy"``). Class 0 is "person" in the COCO label maps of imx500-models.
- The YOLOv8 pose network (``imx500_network_yolov8n_pose.rpk``, task "pose estimation", 640x640 input) gives raw
  outputs that Picamera2 decodes on the CPU with ``postprocess_yolov8_keypoints``: box distances (1, 4, 8400),
  person scores (1, 1, 8400) and keypoints (1, 51, 8400); :func:`accelerators.imx500_geometry.decode_yolov8_pose`
  does the same decoding, so the agent gets people with all 17 keypoints. It is the default network.
- ``set_inference_roi_abs((x, y, w, h))`` sets the inference crop in full-sensor pixels (4056 x 3040); the input
  tensor is that crop scaled to the network input, so tensor coordinates are relative to the crop.

Coordinates (derived): a normalised tensor box maps to sensor pixels through the inference ROI, and to the
main stream's pixels through ``metadata["ScalerCrop"]`` (the sensor area the ISP output shows) and the stream
size. This is what ``convert_inference_coords`` computes for a full-sensor ROI; doing it here keeps the ROI in
the sum.

PRIVACY. The network's input tensor is made by the sensor's own ISP from the raw image, inside the camera
module. Blanking pixels in Picamera2's ``pre_callback`` changes the Pi's ISP output (what this process, encoders
and previews get) but never reaches the on-sensor network, which has already seen the unblanked scene. The only
control over what the network sees is the inference ROI. So this camera (1) blanks the privacy regions in the
main stream in ``pre_callback`` (fail closed, as ``firmware.picamera`` does), and (2) sets the inference ROI to
the largest rectangle of the visible field that contains no privacy pixel, re-deriving it whenever
``ScalerCrop`` changes and discarding the detections of the frames right after each ROI change (the new crop
cannot be tied to a frame). When no such rectangle exists, detections are turned off rather than leaked.

The ROI and box arithmetic (no camera) is in :mod:`accelerators.imx500_geometry`.

SENSOR-ONLY MODE (``host_frames=False``). The camera still has to stream an image (libcamera needs a processed
output to drive it; EDGE_APIS.md 1.2), so it is configured with the smallest main stream and no ``pre_callback``,
and each frame is read with ``capture_metadata()`` alone: no image buffer is mapped, copied or made into an array
in this process. The people come in the coordinates of a frame of ``size`` that never exists (zones and privacy
regions are frame-relative, so they mean the same in both modes). Privacy regions are enforced where the pixels
are: the inference ROI keeps them out of the network, and a person whose box centre or any confident keypoint lies
inside one is dropped before it leaves this module.

The IMX500 is both the camera and the accelerator: ``Imx500Camera.read()`` returns each frame with the people the
sensor found in it, and ``Imx500PersonBackend.detect(frame)`` answers for frames that camera delivered.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.base import Backend, Frame
from accelerators.imx500_geometry import (
    BoolMask,
    Imx500Error,
    MaskFor,
    Rect,
    clear_roi,
    decode_ssd,
    decode_yolov8_pose,
)
from accelerators.picam import stop_and_close
from accelerators.registry import Availability, BackendEntry, register
from accelerators.types import Person

log = logging.getLogger("wardsight.accelerators.imx500")

FULL_SENSOR = (4056, 3040)  # IMX500 full sensor, as picamera2 hard-codes it
MODELS_DIR = Path("/usr/share/imx500-models")
DEFAULT_NETWORK = MODELS_DIR / "imx500_network_yolov8n_pose.rpk"  # pose: every app that needs keypoints runs
SSD_NETWORK = MODELS_DIR / "imx500_network_ssd_mobilenetv2_fpnlite_320x320_pp.rpk"  # person boxes only
PICAMERA2_HINT = "picamera2 is not installed; on Raspberry Pi OS: sudo apt install python3-picamera2"
MODELS_HINT = "sudo apt install imx500-firmware imx500-models"
ROI_SETTLE_FRAMES = 2  # frames whose detections are dropped after the inference ROI changes
SENSOR_ONLY_STREAM = (64, 64)  # the smallest main stream asked for when no image is wanted on the host
KEYPOINT_SEEN = 0.3  # a keypoint this confident counts when checking privacy regions in sensor-only mode


@dataclass(frozen=True)
class Imx500Frame:
    timestamp: float
    image: npt.NDArray[np.uint8] | None  # RGB, privacy regions already black; None in sensor-only mode
    people: list[Person]
    has_tensor: bool  # False: the sensor sent no results with this frame


# -- the camera --------------------------------------------------------------------------------------------


class Imx500Camera:
    """The AI camera: RGB frames of ``size`` (privacy regions blacked out in the camera buffers), each with the
    people the on-sensor network found in the part of the scene outside the privacy regions; with
    ``host_frames=False`` (sensor-only) the people alone, in the coordinates of a ``size`` frame."""

    def __init__(
        self,
        network_file: Path | str = DEFAULT_NETWORK,
        *,
        size: tuple[int, int] = (1280, 720),
        privacy_mask: MaskFor | None = None,
        min_score: float = 0.4,
        capture_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        host_frames: bool = True,
    ) -> None:
        self.host_frames = bool(host_frames)
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise Imx500Error(f"size must be a positive, even (width, height); got {size}")
        self._requested = (w, h)
        self.min_score = float(min_score)
        self._timeout = capture_timeout
        self._clock = clock
        self._privacy_mask = privacy_mask
        try:
            picamera2 = importlib.import_module("picamera2")
            devices = importlib.import_module("picamera2.devices")
        except ImportError as exc:
            raise Imx500Error(PICAMERA2_HINT + f" ({exc})") from exc
        self._mapped_array: Any = picamera2.MappedArray
        path = Path(network_file)
        if not path.is_file():
            raise Imx500Error(f"IMX500 network firmware {path} is missing ({MODELS_HINT})")
        # The IMX500 object first: it loads the network firmware, then the camera is opened by its number.
        try:
            imx500 = devices.IMX500(str(path))
        except RuntimeError as exc:
            raise Imx500Error(f"no IMX500 (Raspberry Pi AI Camera) is usable: {exc}") from exc
        self._imx500: Any = imx500
        self._read_intrinsics(imx500, path)
        self.input_size: tuple[int, int] = tuple(int(v) for v in imx500.get_input_size())  # type: ignore[assignment]
        self._blanked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._mask: BoolMask | None = None
        self.roi: Rect | None = None  # the inference ROI in force; None = detections off (no clear area)
        self._roi_crop: Rect | None = None  # the ScalerCrop the ROI was derived for
        self._settle = 0
        self._started = False
        try:
            cam = picamera2.Picamera2(imx500.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise Imx500Error(f"cannot open the AI camera (camera {imx500.camera_num}): {exc}") from exc
        try:
            self._configure(cam)
        except Exception as exc:
            cam.close()
            raise Imx500Error(f"cannot configure the AI camera: {exc}") from exc
        self._cam: Any = cam

    def _read_intrinsics(self, imx500: Any, path: Path) -> None:
        intrinsics = getattr(imx500, "network_intrinsics", None)
        task = getattr(intrinsics, "task", None) or ("pose estimation" if "pose" in path.name else "object detection")
        if task not in ("object detection", "pose estimation"):
            raise Imx500Error(
                f"{path.name} is a {task} network; WardSight decodes pose estimation (YOLOv8 pose) and object"
                " detection (post-processed SSD) networks"
            )
        self.task: str = task
        self._bbox_normalization = bool(getattr(intrinsics, "bbox_normalization", False) or False)
        self._bbox_order = str(getattr(intrinsics, "bbox_order", "yx") or "yx")
        rate = getattr(intrinsics, "inference_rate", None)
        self._fps = float(rate) if rate else 30.0

    def _configure(self, cam: Any) -> None:
        stream = {"format": "RGB888", "size": self._requested if self.host_frames else SENSOR_ONLY_STREAM}
        config = cam.create_preview_configuration(main=stream, controls={"FrameRate": self._fps}, buffer_count=12)
        cam.configure(config)
        main = cam.camera_configuration()["main"]
        if self.host_frames:
            if main["format"] != "RGB888":
                raise Imx500Error(f"the AI camera gave main format {main['format']}, not RGB888")
            self.frame_size: tuple[int, int] = (int(main["size"][0]), int(main["size"][1]))
        else:
            self.frame_size = self._requested  # the frame the people's coordinates refer to; it never exists
        if self._privacy_mask is not None:
            mask = np.asarray(self._privacy_mask(*self.frame_size), dtype=np.bool_).copy()
            self._mask = mask if mask.any() else None
        # The largest crop the ISP may show; corrected from each frame's ScalerCrop metadata.
        limits = cam.camera_controls.get("ScalerCrop")
        crop = tuple(int(v) for v in limits[1]) if limits else (0, 0, *FULL_SENSOR)
        self._set_roi(crop)  # type: ignore[arg-type]
        if self.host_frames:
            cam.pre_callback = self._blank
        cam.start()
        self._started = True

    def _set_roi(self, crop: Rect) -> None:
        roi = clear_roi(self._mask, crop)
        self._roi_crop = crop
        # Set before start() the ROI holds from the first frame; later, frames already in flight used the old one.
        self._settle = ROI_SETTLE_FRAMES if self._started else 0
        if roi is None:
            log.warning("AI camera: privacy regions leave no clear rectangle; person detection is off")
            roi = (crop[0], crop[1], 2, 2)  # a sliver in the corner; its results are discarded
            self.roi = None
        else:
            self.roi = roi
        self._imx500.set_inference_roi_abs(roi)
        log.info("AI camera: inference ROI %s (visible sensor area %s)", roi, crop)

    # -- camera thread ---------------------------------------------------------------------------------

    def _blank(self, request: Any) -> None:
        try:
            if self._mask is not None:
                with self._mapped_array(request, "main") as m:
                    m.array[self._mask] = 0
        except Exception:
            log.exception("privacy blanking failed in the camera callback; blacking out the whole frame")
            try:
                with self._mapped_array(request, "main") as m:
                    m.array[...] = 0
            except Exception:
                log.exception("could not black out the frame")
            return
        self._blanked.add(request)

    # -- capture -----------------------------------------------------------------------------------------

    def read(self) -> Imx500Frame:
        cam = self._cam
        if cam is None:
            raise Imx500Error("the AI camera is closed")
        if not self.host_frames:
            return self._read_metadata(cam)
        try:
            request = cam.capture_request(wait=self._timeout)
        except TimeoutError as exc:
            raise Imx500Error(f"the AI camera stopped delivering frames (none within {self._timeout:g} s)") from exc
        try:
            if request not in self._blanked:
                raise Imx500Error("frame discarded: privacy blanking did not run on it in the camera")
            self._blanked.discard(request)
            metadata = request.get_metadata()
            with self._mapped_array(request, "main", write=False) as m:
                image = np.asarray(cv2.cvtColor(m.array, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        finally:
            request.release()
        people, has_tensor = self._people(metadata)
        return Imx500Frame(self._clock(), image, people, has_tensor)

    def _read_metadata(self, cam: Any) -> Imx500Frame:
        """Sensor-only: the frame's metadata and nothing else (``capture_metadata`` maps no image buffer)."""
        try:
            metadata = cam.capture_metadata(wait=self._timeout)
        except TimeoutError as exc:
            raise Imx500Error(f"the AI camera stopped delivering frames (none within {self._timeout:g} s)") from exc
        people, has_tensor = self._people(metadata)
        return Imx500Frame(self._clock(), None, [p for p in people if not self._in_privacy_region(p)], has_tensor)

    def _in_privacy_region(self, person: Person) -> bool:
        """A person whose box centre or any confident keypoint lies in a privacy region."""
        if self._mask is None:
            return False
        h, w = self._mask.shape
        x1, y1, x2, y2 = person.box
        points = [((x1 + x2) / 2, (y1 + y2) / 2)]
        points += [(float(x), float(y)) for x, y, score in person.keypoints if score >= KEYPOINT_SEEN]
        return any(self._mask[min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)] for x, y in points)

    def _people(self, metadata: dict[str, Any]) -> tuple[list[Person], bool]:
        crop_md = metadata.get("ScalerCrop")
        crop: Rect = tuple(int(v) for v in crop_md) if crop_md else self._roi_crop  # type: ignore[assignment]
        if crop != self._roi_crop:
            self._set_roi(crop)  # the visible area moved: the old ROI may now include a privacy region
        outputs = self._imx500.get_outputs(metadata, add_batch=True)
        if outputs is None:
            return [], False  # no tensor came with this frame: nothing detected, not an error
        if self._settle > 0:
            self._settle -= 1
            return [], True  # computed with an ROI we cannot vouch for
        if self.roi is None:
            return [], True
        if self.task == "pose estimation":
            people = decode_yolov8_pose(
                outputs,
                input_size=self.input_size,
                roi=self.roi,
                scaler_crop=crop,
                frame_size=self.frame_size,
                min_score=self.min_score,
            )
            return people, True
        people = decode_ssd(
            outputs,
            input_size=self.input_size,
            roi=self.roi,
            scaler_crop=crop,
            frame_size=self.frame_size,
            bbox_normalization=self._bbox_normalization,
            bbox_order=self._bbox_order,
            min_score=self.min_score,
        )
        return people, True

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            stop_and_close(cam)


class Imx500PersonBackend(Backend):
    """The ``Backend`` face of the AI camera: ``detect(frame)`` answers for frames that ``read()`` delivered.

    The network ran in the sensor when the frame was taken, so there is nothing to run on an arbitrary image:
    a frame this camera did not deliver (or one older than the last few) raises ``Imx500Error``.
    """

    name = "imx500"
    KEEP = 4

    def __init__(self, camera: Imx500Camera) -> None:
        self.camera = camera
        self.last_timings = {}
        self._recent: list[tuple[weakref.ref[npt.NDArray[np.uint8]], list[Person]]] = []

    def read(self) -> Imx500Frame:
        t0 = time.perf_counter()
        frame = self.camera.read()
        if frame.image is not None:
            self._recent = [*self._recent[-(self.KEEP - 1) :], (weakref.ref(frame.image), frame.people)]
        self.last_timings = {"capture": time.perf_counter() - t0}
        return frame

    def detect(self, frame: Frame) -> list[Person]:
        for ref, people in reversed(self._recent):
            if ref() is frame:
                return list(people)
        raise Imx500Error("the IMX500 detects on the sensor: pass a frame that this backend's read() delivered")

    def close(self) -> None:
        self.camera.close()


# -- registry --------------------------------------------------------------------------------------------


def probe(network_file: Path | str | None = None) -> Availability:
    try:
        picamera2 = importlib.import_module("picamera2")
        importlib.import_module("picamera2.devices")
    except ImportError as exc:
        return Availability(False, PICAMERA2_HINT + f" ({exc})")
    try:
        cameras = picamera2.Picamera2.global_camera_info()
    except Exception as exc:
        return Availability(False, f"cannot list cameras: {exc}")
    found = [c for c in cameras if str(c.get("Model", "")).lower() == "imx500"]
    if not found:
        return Availability(False, "no IMX500 (Raspberry Pi AI Camera) is attached")
    network = Path(network_file or os.environ.get("WARDSIGHT_IMX500_NETWORK") or DEFAULT_NETWORK)
    if not network.is_file():
        return Availability(False, f"IMX500 network firmware {network} is missing ({MODELS_HINT})")
    return Availability(True, f"IMX500 AI Camera {found[0].get('Id', '')} with {network.name}")


def create(
    *,
    network_file: Path | str | None = None,
    size: tuple[int, int] = (1280, 720),
    privacy_mask: MaskFor | None = None,
    min_score: float = 0.4,
    host_frames: bool = True,
    **_: Any,
) -> Backend:
    network = Path(network_file or os.environ.get("WARDSIGHT_IMX500_NETWORK") or DEFAULT_NETWORK)
    camera = Imx500Camera(network, size=size, privacy_mask=privacy_mask, min_score=min_score, host_frames=host_frames)
    return Imx500PersonBackend(camera)


register(BackendEntry("imx500", probe, create))
