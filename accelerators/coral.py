"""Coral Edge TPU backend: an SSD person detector through LiteRT with the Edge TPU delegate (libedgetpu).

API facts relied on (/work/shared/reference/EDGE_APIS.md section 3; pycoral ``utils/edgetpu.py`` and
``adapters/detect.py``; Frigate ``detectors/plugins/edgetpu_tfl.py``):

- The interpreter is ai-edge-litert's (pycoral's apt packages need Python < 3.10); the Edge TPU is the delegate
  ``load_delegate("libedgetpu.so.1", {"device": ...})``, which raises ``ValueError`` when no TPU is present (an
  ``OSError``-style failure when libedgetpu itself is missing) and ``RuntimeError`` on unsupported platforms.
- Edge TPU models are fully quantised: the input is uint8 or int8 [1, h, w, 3] with ``quantization`` =
  (scale, zero_point). A uint8 model takes the raw 0..255 RGB pixels as they are. An int8 model with zero point
  -128 takes pixel - 128 (what Frigate does by flipping the top bit); any other int8 quantisation is applied with
  the formula q = round(real / scale + zero_point), ``real`` being the pixel mapped onto ``input_range``.
- ``TFLite_Detection_PostProcess`` gives four outputs. pycoral's rule decides their order: when output 3 has
  one element the order is boxes [1, N, 4] (ymin, xmin, ymax, xmax, normalised), classes [1, N], scores [1, N],
  count [1] (TF1 models, which the Coral model zoo's SSDs are); otherwise scores, boxes, count, classes (TF2).
- Class ids follow the COCO label maps of those models (``coco_labels.txt``: 0 = person).

The detector has no keypoints: each Person carries 17 keypoints of score 0 (the box centre), so pose-based apps
see "no pose" rather than a made-up one.

``use_tpu=False`` runs the same code path on the CPU, without the delegate: that is how the tests run it for real
on a quantised (not Edge-TPU-compiled) model. A model compiled by ``edgetpu_compiler`` holds an
``edgetpu-custom-op`` that only the delegate can run; on the CPU it fails to load, with a message saying so.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.base import Backend, Frame
from accelerators.registry import Availability, BackendEntry, register
from accelerators.types import Person
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.accelerators.coral")

EDGETPU_LIBRARY = "libedgetpu.so.1"
INSTALL_HINT = "libedgetpu is not installed (apt install libedgetpu1-std)"
PERSON_CLASS = 0  # COCO label maps of the Coral detection models: "0 person"
# USB accelerator before and after its firmware is loaded (Global Unichip, then Google), as listed by lsusb.
USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


class CoralError(WardSightError):
    """The Edge TPU or the model cannot be used; the message says why."""


def _litert() -> Any:
    try:
        return importlib.import_module("ai_edge_litert.interpreter")
    except ImportError as exc:
        raise CoralError("ai-edge-litert is not installed (pip install ai-edge-litert)") from exc


def list_edge_tpus() -> list[dict[str, str]]:
    """Edge TPUs as pycoral lists them, [{"type": "usb" | "pci", "path": str}]; pycoral if importable, else sysfs."""
    try:
        edgetpu = importlib.import_module("pycoral.utils.edgetpu")
    except ImportError:
        edgetpu = None
    if edgetpu is not None:
        return [dict(d) for d in edgetpu.list_edge_tpus()]
    found = [{"type": "pci", "path": p} for p in sorted(glob.glob("/dev/apex_*"))]
    for dev in sorted(glob.glob("/sys/bus/usb/devices/*")):
        try:
            ids = (Path(dev, "idVendor").read_text().strip(), Path(dev, "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in USB_IDS:
            found.append({"type": "usb", "path": dev})
    return found


def load_edgetpu_delegate(device: str | None = None) -> Any:
    """The Edge TPU delegate (``device`` as pycoral takes it: None, ":N", "usb[:N]", "pci[:N]").

    Raises:
        CoralError: libedgetpu is missing, or no (such) Edge TPU is attached.
    """
    litert = _litert()
    options = {"device": device} if device else {}
    try:
        return litert.load_delegate(EDGETPU_LIBRARY, options)
    except (ValueError, OSError) as exc:
        # libedgetpu missing and "no Edge TPU found" both surface here (ValueError "Failed to load delegate").
        tpus = list_edge_tpus()
        if tpus:
            raise CoralError(f"cannot open Edge TPU {device or tpus[0]['path']}: {exc}") from exc
        raise CoralError(f"{INSTALL_HINT}, or no Edge TPU is attached: {exc}") from exc
    except RuntimeError as exc:
        raise CoralError(f"the Edge TPU delegate is not supported on this platform: {exc}") from exc


class CoralDetector(Backend):
    """People from an SSD detection model with a TFLite_Detection_PostProcess head, on the Edge TPU."""

    name = "coral"

    def __init__(
        self,
        model_path: Path | str,
        *,
        device: str | None = None,
        use_tpu: bool = True,
        min_score: float = 0.4,
        person_class: int = PERSON_CLASS,
        max_people: int = 20,
        input_range: tuple[float, float] = (0.0, 1.0),
        num_threads: int | None = None,
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1]; got {min_score}")
        self.min_score = float(min_score)
        self.person_class = int(person_class)
        self.max_people = int(max_people)
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.last_timings = {}
        litert = _litert()
        path = Path(model_path)
        if not path.is_file():
            raise CoralError(f"model file {path} does not exist")
        delegates = [load_edgetpu_delegate(device)] if use_tpu else []
        try:
            interp = litert.Interpreter(
                model_path=str(path), experimental_delegates=delegates or None, num_threads=num_threads
            )
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            hint = ""
            if "edgetpu-custom-op" in str(exc):
                hint = " (an Edge TPU compiled model needs the Edge TPU: use_tpu=True)"
            raise CoralError(f"cannot load model {path}: {exc}{hint}") from None
        self._interp: Any = interp
        self._setup_input(path)
        self._setup_outputs(path)

    # -- model description ------------------------------------------------------------------------------

    def _setup_input(self, path: Path) -> None:
        details = self._interp.get_input_details()
        if len(details) != 1:
            raise CoralError(f"{path}: expected one image input, found {len(details)}")
        inp = details[0]
        shape = tuple(int(v) for v in inp["shape"])
        dtype = np.dtype(inp["dtype"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise CoralError(f"{path}: input must be [1, h, w, 3]; got {list(shape)}")
        if dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise CoralError(
                f"{path}: input is {dtype.name}, not a quantised (uint8/int8) Edge TPU model; quantise it fully and"
                " compile it with edgetpu_compiler"
            )
        scale, zero_point = (float(inp["quantization"][0]), int(inp["quantization"][1]))
        self._input_index = int(inp["index"])
        self._input_dtype = dtype
        self._input_quant = (scale, zero_point)
        self.input_size = (shape[2], shape[1])  # (width, height)

    def _setup_outputs(self, path: Path) -> None:
        outs = self._interp.get_output_details()
        if len(outs) != 4:
            raise CoralError(f"{path}: not an SSD post-processed model (expected 4 outputs, found {len(outs)})")
        sizes = [int(np.prod(d["shape"])) for d in outs]
        if sizes[3] == 1:  # pycoral's rule: TF1 order boxes, classes, scores, count
            order = {"boxes": 0, "classes": 1, "scores": 2, "count": 3}
        else:  # TF2 order scores, boxes, count, classes
            order = {"scores": 0, "boxes": 1, "count": 2, "classes": 3}
        shapes = {k: tuple(int(v) for v in outs[i]["shape"]) for k, i in order.items()}
        n = shapes["boxes"][1] if len(shapes["boxes"]) == 3 else -1
        if (
            shapes["boxes"] != (1, n, 4)
            or shapes["classes"] != (1, n)
            or shapes["scores"] != (1, n)
            or int(np.prod(shapes["count"])) != 1
        ):
            raise CoralError(f"{path}: outputs are not TFLite_Detection_PostProcess's: {shapes}")
        self._outputs = {k: outs[i] for k, i in order.items()}
        self.max_detections = n

    # -- inference ---------------------------------------------------------------------------------------

    def quantise_input(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
        """The model input for an RGB uint8 image already at the input size."""
        if self._input_dtype == np.uint8:
            return rgb  # raw pixels, as the Edge TPU models expect
        scale, zero_point = self._input_quant
        if zero_point == -128 or scale == 0.0:
            return (rgb.astype(np.int16) - 128).astype(np.int8)
        lo, hi = self.input_range
        real = lo + rgb.astype(np.float32) * ((hi - lo) / 255.0)
        return np.clip(np.round(real / scale + zero_point), -128, 127).astype(np.int8)

    def _output(self, key: str) -> npt.NDArray[np.float32]:
        d = self._outputs[key]
        raw = np.asarray(self._interp.get_tensor(d["index"]))
        if raw.dtype == np.float32:
            return raw
        scale, zero_point = d["quantization"]
        return ((raw.astype(np.float32) - float(zero_point)) * float(scale)).astype(np.float32)

    def detect(self, frame: Frame) -> list[Person]:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be RGB uint8 (h, w, 3); got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        t0 = time.perf_counter()
        iw, ih = self.input_size
        resized = cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_LINEAR) if (w, h) != (iw, ih) else frame
        tensor = np.ascontiguousarray(self.quantise_input(np.asarray(resized, dtype=np.uint8)))[np.newaxis]
        self._interp.set_tensor(self._input_index, tensor)
        t1 = time.perf_counter()
        self._interp.invoke()
        t2 = time.perf_counter()
        people = self.decode(
            self._output("boxes")[0],
            self._output("classes")[0],
            self._output("scores")[0],
            int(self._output("count").reshape(-1)[0]),
            (w, h),
        )
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": t1 - t0, "invoke": t2 - t1, "decode": t3 - t2}
        return people

    def decode(
        self,
        boxes: npt.NDArray[np.float32],
        classes: npt.NDArray[np.float32],
        scores: npt.NDArray[np.float32],
        count: int,
        frame_size: tuple[int, int],
    ) -> list[Person]:
        """People among the first ``count`` rows of the post-process outputs, boxes scaled to ``frame_size``."""
        w, h = frame_size
        people: list[Person] = []
        for i in range(max(0, min(count, len(scores)))):
            score = float(scores[i])
            if round(float(classes[i])) != self.person_class or score < self.min_score:
                continue
            ymin, xmin, ymax, xmax = (float(np.clip(v, 0.0, 1.0)) for v in boxes[i])
            if xmax <= xmin or ymax <= ymin:
                continue
            box = (xmin * w, ymin * h, xmax * w, ymax * h)
            kps = np.zeros((17, 3), np.float32)
            kps[:, 0], kps[:, 1] = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            people.append(Person(box, min(1.0, score), kps))
        people.sort(key=lambda p: -p.score)
        return people[: self.max_people]

    def close(self) -> None:
        self._interp = None


def library_installed() -> bool:
    """Whether libedgetpu is on this machine at all (the delegate may still find no TPU)."""
    return ctypes.util.find_library("edgetpu") is not None or any(
        os.path.exists(p) for p in ("/usr/lib/libedgetpu.so.1", "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1")
    )


def probe() -> Availability:
    try:
        litert = _litert()
    except CoralError as exc:
        return Availability(False, str(exc))
    if not library_installed():
        # No library at all: say so without asking LiteRT (whose failed Delegate complains in __del__).
        return Availability(False, INSTALL_HINT)
    try:
        litert.load_delegate(EDGETPU_LIBRARY, {})
    except (ValueError, OSError):
        if os.path.exists("/dev/apex_0") or list_edge_tpus():
            return Availability(False, f"{INSTALL_HINT}, or the Edge TPU is busy")
        return Availability(False, INSTALL_HINT)
    except RuntimeError as exc:
        return Availability(False, f"the Edge TPU delegate is not supported here: {exc}")
    tpus = list_edge_tpus()
    return Availability(True, f"Edge TPU at {tpus[0]['path'] if tpus else 'the default device'}")


def create(
    *,
    model_path: Path,
    device: str | None = None,
    min_score: float = 0.4,
    **_: Any,
) -> Backend:
    return CoralDetector(model_path, device=device, min_score=min_score)


register(BackendEntry("coral", probe, create))
