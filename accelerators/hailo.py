"""The Hailo backend: YOLOv8-pose (or YOLOv8 detection with HailoRT NMS) on a Hailo-8/8L through HailoRT 4.x.

Uses HailoRT's InferModel API (``hailo_platform``, the hailo8 branch; apt ``hailo-all`` on Raspberry Pi OS):
``VDevice(params)`` -> ``create_infer_model(hef_path)`` -> input UINT8 / outputs FLOAT32 (or the HEF's native
uint8/uint16, dequantised here with each output's quant info) -> ``configure()`` -> ``create_bindings(
output_buffers=...)`` -> ``run_async`` + ``job.wait(timeout)`` (or ``run``). ``hailo_platform`` is imported lazily,
so this module always imports and :func:`probe` can say why the backend cannot run. Decoding is in
:mod:`accelerators.yolov8`.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from accelerators import yolov8
from accelerators.base import Backend, Frame
from accelerators.movenet import Letterbox
from accelerators.registry import Availability, BackendEntry, register
from accelerators.types import Person
from wardsight.errors import WardSightError

NOT_INSTALLED = "hailo_platform is not installed (sudo apt install hailo-all)"
NO_DEVICE = "no Hailo device found (Device.scan() is empty)"
SUPPORTED = ("HAILO8", "HAILO8L", "HAILO8_A0")
CHIP_NAMES = {
    "HAILO8_A0": "Hailo-8 (A0)",
    "HAILO8": "Hailo-8",
    "HAILO8L": "Hailo-8L",
    "HAILO15H": "Hailo-15H",
    "HAILO15L": "Hailo-15L",
    "HAILO15M": "Hailo-15M",
    "HAILO10H": "Hailo-10H",
}


class HailoError(WardSightError):
    """The Hailo runtime refused the model or failed an inference; the message says what to do."""


def _import_hailo() -> ModuleType:
    """``hailo_platform``, or :class:`HailoError` with the reason (missing, or native library mismatch)."""
    try:
        return importlib.import_module("hailo_platform")
    except ModuleNotFoundError as exc:
        if exc.name in (None, "hailo_platform"):
            raise HailoError(NOT_INSTALLED) from None
        raise HailoError(f"hailo_platform failed to import: {exc}") from None
    except Exception as exc:  # MissingPyHRTLib, or ImportError on a native/Python version mismatch
        raise HailoError(f"hailo_platform failed to import: {exc} (reinstall hailo-all)") from None


def _rt_class(hp: ModuleType, name: str) -> type[BaseException] | None:
    """An exception class from ``hailo_platform.pyhailort.pyhailort`` (only a few are re-exported at the top)."""
    inner = getattr(getattr(hp, "pyhailort", None), "pyhailort", None)
    cls = getattr(inner, name, None) or getattr(hp, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _is(hp: ModuleType, exc: BaseException, name: str) -> bool:
    cls = _rt_class(hp, name)
    return (cls is not None and isinstance(exc, cls)) or any(t.__name__ == name for t in type(exc).__mro__)


def arch_name(arch: Any) -> str:
    """``DeviceArchitectureTypes`` member -> "HAILO8L" (its ``.name``; str() of an IntEnum may be the number)."""
    return str(getattr(arch, "name", arch))


def chip_name(arch: str) -> str:
    return CHIP_NAMES.get(arch, arch)


def probe() -> Availability:
    try:
        hp = _import_hailo()
    except HailoError as exc:
        return Availability(False, str(exc))
    try:
        ids = [str(i) for i in hp.Device.scan()]
    except Exception as exc:  # driver missing / not loaded
        return Availability(False, f"Hailo device scan failed: {exc} (check `dmesg | grep -i hailo`)")
    if not ids:
        return Availability(False, NO_DEVICE)
    bdf = ids[0]
    try:
        with hp.Device(bdf) as device:
            arch = arch_name(device.control.identify().device_architecture)
    except Exception as exc:  # e.g. busy in another process: the device exists, the runtime will tell more
        return Availability(True, f"Hailo device at {bdf} (identify failed: {exc})")
    if arch not in SUPPORTED:
        return Availability(
            False,
            f"{chip_name(arch)} at {bdf} is not supported: this backend runs Hailo-8/8L on HailoRT 4.x "
            "(Hailo-10H needs hailo-h10-all / HailoRT 5.x)",
        )
    return Availability(True, f"{chip_name(arch)} at {bdf}")


class HailoPoseBackend(Backend):
    """People (and with a pose HEF, 17 COCO keypoints) from a YOLOv8 HEF on a Hailo-8/8L."""

    name = "hailo"

    def __init__(
        self,
        hef_path: Path | str,
        *,
        min_score: float = 0.25,
        iou_threshold: float = 0.7,
        max_people: int = 20,
        timeout_ms: int = 1000,
        async_inference: bool = True,
        float_outputs: bool = True,
        device_ids: list[str] | None = None,
    ) -> None:
        hp = _import_hailo()
        self._hp = hp
        self.hef_path = str(hef_path)
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.max_people = max_people
        self.timeout_ms = timeout_ms
        self.async_inference = async_inference
        self.frames = 0
        self.errors = 0
        self._stack = contextlib.ExitStack()
        try:
            params = hp.VDevice.create_params()
            params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
            if device_ids:
                params.device_ids = list(device_ids)
            try:
                self._vdevice = self._stack.enter_context(hp.VDevice(params))
            except hp.HailoRTException as exc:
                raise HailoError(f"cannot open the Hailo device: {exc} (is another process using it?)") from None
            self._identity = self._read_identity()
            self._setup(hp, float_outputs)
        except BaseException:
            self._stack.close()
            raise

    @property
    def hardware(self) -> str:
        """The chip as a package build names it ("hailo8", "hailo8l", "hailo10h"): the architecture, lower case."""
        return str(self._identity["architecture"]).lower()

    @property
    def runtime_version(self) -> str | None:
        """The HailoRT version this process runs (``hailo_platform.__version__``, which the native library must
        match to import at all)."""
        version = getattr(self._hp, "__version__", None)
        return str(version) if version else None

    # ------------------------------------------------------------------ setup
    def _read_identity(self) -> dict[str, Any]:
        devices = self._vdevice.get_physical_devices()
        if not devices:
            raise HailoError(NO_DEVICE)
        self._device = devices[0]
        info = self._device.control.identify()
        arch = arch_name(info.device_architecture)
        return {
            "device_id": str(self._device.device_id),
            "architecture": arch,
            "chip": chip_name(arch),
            "board_name": str(info.board_name),
            "firmware_version": str(info.firmware_version),
            "serial_number": str(info.serial_number or ""),
        }

    def _setup(self, hp: ModuleType, float_outputs: bool) -> None:
        hef = self.hef_path
        chip = f"{self._identity['chip']} at {self._identity['device_id']}"
        try:
            model = self._vdevice.create_infer_model(hef)
            model.set_batch_size(1)
            inp = model.input()  # a pose/detection HEF has one input
            inp.set_format_type(hp.FormatType.UINT8)
            self._is_nms = any(bool(model.output(n).is_nms) for n in model.output_names)
            for name in model.output_names:
                out = model.output(name)
                if float_outputs or out.is_nms:
                    out.set_format_type(hp.FormatType.FLOAT32)
            self._configured = self._stack.enter_context(model.configure())
        except hp.HailoRTException as exc:
            if _is(hp, exc, "HailoRTHEFNotCompatibleWithDevice"):
                other = "hailo8" if self._identity["architecture"] == "HAILO8L" else "hailo8l"
                raise HailoError(
                    f"{hef} was compiled for another Hailo architecture than this {chip}: use a HEF compiled for "
                    f"{self._identity['architecture'].lower()} (this one looks like a {other} build)"
                ) from None
            raise HailoError(f"cannot load HEF {hef} on the {chip}: {exc}") from None
        self._model = model
        h, w, c = (int(v) for v in inp.shape)
        if c != 3:
            raise HailoError(f"{hef}: input shape {inp.shape} is not (H, W, 3) RGB")
        self.input_shape = (h, w, c)
        self._canvas = np.full((h, w, 3), yolov8.PAD_VALUE, dtype=np.uint8)
        self._box: Letterbox | None = None
        self._outputs: dict[str, npt.NDArray[Any]] = {}
        self._quant: dict[str, yolov8.QuantInfo] = {}
        for name in model.output_names:
            out = model.output(name)
            dtype = {hp.FormatType.UINT8: np.uint8, hp.FormatType.UINT16: np.uint16}.get(out.format.type, np.float32)
            self._outputs[name] = np.empty(tuple(out.shape), dtype=dtype)
            if out.quant_infos:
                qi = out.quant_infos[0]
                self._quant[name] = yolov8.QuantInfo(float(qi.qp_scale), float(qi.qp_zp))
        if not self._is_nms:
            try:
                yolov8.pose_scales({n: a.shape for n, a in self._outputs.items()}, w, h)
            except ValueError as exc:
                raise HailoError(f"{hef} is not a YOLOv8-pose HEF: {exc}") from None
        self._bindings = self._configured.create_bindings(output_buffers=self._outputs)

    # ------------------------------------------------------------------ inference
    def _infer(self) -> None:
        self._bindings.input().set_buffer(self._canvas)
        cim = self._configured
        if not self.async_inference:
            cim.run([self._bindings], self.timeout_ms)
            return
        done: dict[str, Any] = {}
        finished = threading.Event()

        def on_done(completion_info: Any) -> None:
            done["exception"] = completion_info.exception
            finished.set()

        cim.wait_for_async_ready(timeout_ms=self.timeout_ms)
        job = cim.run_async([self._bindings], on_done)
        job.wait(self.timeout_ms)
        finished.wait(self.timeout_ms / 1000)  # the callback may run just after wait() returns
        if done.get("exception") is not None:
            raise done["exception"]

    def detect(self, frame: Frame) -> list[Person]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        t0 = time.perf_counter()
        fh, fw = frame.shape[:2]
        box = self._box
        h, w, _ = self.input_shape
        if box is None or (box.frame_w, box.frame_h) != (fw, fh):
            box = yolov8.letterbox_for(fw, fh, w, h)
            self._canvas[...] = yolov8.PAD_VALUE
            self._box = box
        box.apply(frame, self._canvas)
        t1 = time.perf_counter()
        try:
            self._infer()
        except self._hp.HailoRTException as exc:
            self.errors += 1
            raise HailoError(f"Hailo inference failed: {type(exc).__name__}: {exc}") from None
        t2 = time.perf_counter()
        if self._is_nms:
            name = self._model.output_names[0]
            per_class = self._bindings.output(name).get_buffer()
            people = yolov8.decode_nms_by_class(per_class, box, min_score=self.min_score)
        else:
            people = yolov8.decode_pose(
                self._outputs,
                box,
                quant=self._quant,
                min_score=self.min_score,
                iou_threshold=self.iou_threshold,
                max_people=self.max_people,
            )
        self.frames += 1
        self.last_timings = {"preprocess": t1 - t0, "invoke": t2 - t1, "decode": time.perf_counter() - t2}
        return people

    def health(self) -> dict[str, Any]:
        """Device identity, chip temperature (°C, the hotter of the two on-die sensors) and counters."""
        out: dict[str, Any] = dict(self._identity)
        out.update(hef=self.hef_path, input_shape=list(self.input_shape), frames=self.frames, errors=self.errors)
        try:
            temp = self._device.control.get_chip_temperature()
            out["temperature_c"] = round(max(float(temp.ts0_temperature), float(temp.ts1_temperature)), 1)
        except Exception as exc:  # health must never take the agent down
            out["temperature_error"] = f"{type(exc).__name__}: {exc}"
        return out

    def close(self) -> None:
        self._stack.close()


def create(
    *,
    hef_path: Path | str | None = None,
    num_threads: int = 2,  # accepted for a uniform settings surface; the host only decodes
    min_score: float = 0.25,
    **settings: Any,
) -> Backend:
    if hef_path is None:
        raise HailoError(
            "the hailo backend needs hef_path: a YOLOv8-pose HEF compiled for this chip "
            "(e.g. /usr/share/hailo-models/yolov8s_pose_h8l_pi.hef on a Hailo-8L)"
        )
    allowed = {"iou_threshold", "max_people", "timeout_ms", "async_inference", "float_outputs", "device_ids"}
    return HailoPoseBackend(hef_path, min_score=min_score, **{k: v for k, v in settings.items() if k in allowed})


register(BackendEntry("hailo", probe, create))
