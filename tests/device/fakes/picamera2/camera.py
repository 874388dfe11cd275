"""Fake ``picamera2.Picamera2`` plus the fake-only rig that attaches cameras (see the package docstring)."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from types import MappingProxyType
from typing import Any

import numpy as np

from .request import KNOWN_FORMATS, POISON_BYTE, CompletedRequest, framesize_for, render, stride_for

STREAM_KEYS = {"format", "size", "stride", "preserve_ar"}
RAW_FORMAT = "SBGGR10_CSI2P"


class Preview(Enum):
    NULL = 0
    DRM = 1
    QT = 2
    QTGL = 3


class FakeSensor:
    """An attached camera module: the scenes it 'sees' (BGR images, cycled) and how it can fail."""

    def __init__(
        self,
        scenes: Sequence[np.ndarray],
        *,
        model: str = "imx708",
        pixel_array: tuple[int, int] = (4608, 2592),
        frame_duration_range: tuple[int, int] = (8333, 2_000_000),  # microseconds: what the sensor mode allows
        camera_id: str = "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
        open_error: bool = False,
    ) -> None:
        if not scenes:
            raise ValueError("a fake camera needs at least one scene")
        for s in scenes:
            if s.dtype != np.uint8 or s.ndim != 3 or s.shape[2] != 3:
                raise ValueError("scenes are BGR uint8 images of shape (h, w, 3), as cv2.imread returns")
        self.scenes = list(scenes)
        self.model, self.pixel_array, self.camera_id = model, pixel_array, camera_id
        self.frame_duration_range = frame_duration_range
        self.open_error = open_error
        self.frames_left: int | None = None  # None = delivers for ever
        self.error: BaseException | None = None
        self.delivered = 0
        self.opened_by: Picamera2 | None = None
        self.cameras: list[Picamera2] = []  # every Picamera2 that opened this sensor, newest last
        self.network: Any = None  # an IMX500 sensor's on-sensor network (devices.imx500 FakeNetwork/FakePoseNetwork)
        # Every time image pixels of this camera reached the process (see the package docstring), and by which call.
        self.pixels_handed_out = 0
        self.pixel_handouts: Counter[str] = Counter()

    def fail_after(self, frames: int) -> None:
        """Deliver this many more frames, then stop (a cable pulled, a sensor hung): captures time out."""
        self.frames_left = frames

    def fail_with(self, error: BaseException) -> None:
        """The next captures raise this error."""
        self.error = error

    @property
    def camera(self) -> Picamera2:
        """The newest Picamera2 that opened this sensor."""
        if not self.cameras:
            raise AssertionError("no Picamera2 has opened this fake camera")
        return self.cameras[-1]

    def next_scene(self) -> np.ndarray:
        scene = self.scenes[self.delivered % len(self.scenes)]
        self.delivered += 1
        return scene


_attached: list[FakeSensor] = []


def add_camera(scenes: Sequence[np.ndarray], **kwargs: Any) -> FakeSensor:
    """Attach a camera; its index is its position (the real list is sorted by id; here, by attachment)."""
    sensor = FakeSensor(scenes, **kwargs)
    _attached.append(sensor)
    return sensor


def attached() -> list[FakeSensor]:
    return list(_attached)


def reset() -> None:
    _attached.clear()


# Per use case, as the real create_{preview,still,video}_configuration have them: the main stream's defaults (size
# None: the sensor's full resolution) and the NoiseReductionMode / FrameDurationLimits controls.
_USE_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "preview": (
        {"format": "XBGR8888", "size": (640, 480), "preserve_ar": True},
        {"NoiseReductionMode": 1, "FrameDurationLimits": (100, 83333)},
    ),
    "still": (
        {"format": "BGR888", "size": None, "preserve_ar": True},
        {"NoiseReductionMode": 2, "FrameDurationLimits": (100, 1_000_000_000)},
    ),
    "video": (
        {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True},
        {"NoiseReductionMode": 3, "FrameDurationLimits": (33333, 33333)},
    ),
}


_NO_UPDATES: Mapping[str, Any] = MappingProxyType({})  # the real builders' ``main={}`` default, immutable


def _configuration_method(kind: str, *, buffer_count: int, display: str | None) -> Callable[..., dict[str, Any]]:
    """``Picamera2.create_<kind>_configuration``: the real three share one signature and differ in the defaults of
    ``buffer_count``, ``display`` / ``encode`` and ``use_case``, and in the main stream's and the controls'."""
    main_default, nr_and_fdl = _USE_CASES[kind]

    def create_configuration(
        self: Picamera2,
        main: Mapping[str, Any] | None = _NO_UPDATES,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = buffer_count,
        controls: dict[str, Any] | None = None,
        display: str | None = display,
        encode: str | None = display,
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = kind,
    ) -> dict[str, Any]:
        if self._sensor is None:
            raise RuntimeError("Camera not opened")
        if main is None:
            # The real builder passes main=None through _make_initial_stream_config (-> None) into align_stream,
            # which subscripts it: there is no configuration without a main stream (EDGE_APIS.md 1.2).
            raise TypeError("'NoneType' object is not subscriptable")
        main_cfg = self._stream(main_default | {"size": main_default["size"] or self.sensor_resolution}, dict(main))
        assert main_cfg is not None
        lores_cfg = self._stream({"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}, lores)
        raw_cfg = self._stream({"format": RAW_FORMAT, "size": main_cfg["size"]}, {} if raw is None else raw)
        return {
            "use_case": use_case,
            "transform": transform or "Transform(identity)",
            "colour_space": colour_space or "Sycc",
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": raw_cfg,
            "controls": nr_and_fdl | dict(controls or {}),
            "sensor": dict(sensor or {}),
            "display": display,
            "encode": encode,
        }

    create_configuration.__name__ = f"create_{kind}_configuration"
    create_configuration.__qualname__ = f"Picamera2.{create_configuration.__name__}"
    return create_configuration


class _Stall(Exception):
    """No frame can complete: all buffers held, the sensor stopped, or the event loop died."""


class Picamera2:
    def __init__(self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None, allocator: Any = None):
        info = self.global_camera_info()
        sensor = _attached[info[camera_num]["Num"]]  # IndexError for a missing camera, as in the real one
        self.request_lock = threading.Lock()
        self.camera_idx = camera_num
        self._reset_flags()
        if sensor.open_error or sensor.opened_by is not None:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self._sensor: FakeSensor | None = sensor
        sensor.opened_by = self
        sensor.cameras.append(self)
        self.is_open = True
        # fake-only observation points
        self.taps: list[Callable[[CompletedRequest], None]] = []
        self.outstanding = 0  # requests handed out (to the app or to callbacks) whose buffers are not back
        self.requests_issued = 0
        self.unreleased_at_close = 0
        self.flushes = 0  # cancel_all_and_flush() calls
        self.pixels_handed_out = 0  # this camera's share of sensor.pixels_handed_out

    def _reset_flags(self) -> None:
        self.camera_config: dict[str, Any] | None = None
        self.stream_map: dict[str, Any] = {}
        self.started = False
        self.stop_count = 0
        self.configure_count = 0
        self.pre_callback: Callable[[CompletedRequest], None] | None = None
        self.post_callback: Callable[[CompletedRequest], None] | None = None
        self.controls: dict[str, Any] = {}
        self._pool: list[dict[str, np.ndarray]] = []
        self._free: list[int] = []
        self._loop_error: BaseException | None = None

    # -- enumeration and properties ---------------------------------------------------------------------

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [
            {"Model": s.model, "Location": 2, "Rotation": 0, "Id": s.camera_id, "Num": i}
            for i, s in enumerate(_attached)
        ]

    @property
    def sensor(self) -> FakeSensor:
        if self._sensor is None:
            raise RuntimeError("Camera not opened")
        return self._sensor

    @property
    def camera_properties(self) -> dict[str, Any]:
        if self._sensor is None:
            return {}
        return {"Model": self._sensor.model, "PixelArraySize": self._sensor.pixel_array, "Location": 2}

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        lo, hi = self.sensor.frame_duration_range
        w, h = self.sensor.pixel_array
        imx500 = {"CnnEnableInputTensor": (False, True, False)} if self.sensor.model == "imx500" else {}
        return imx500 | {
            "FrameDurationLimits": (lo, hi, 33333),
            "NoiseReductionMode": (0, 4, 0),
            "ExposureTime": (1, 66_666_666, 20000),
            "AnalogueGain": (1.0, 16.0, 1.0),
            "AeEnable": (False, True, True),
            "AwbEnable": (False, True, True),
            "ScalerCrop": ((0, 0, 64, 64), (0, 0, w, h), (0, 0, w, h)),
        }

    @property
    def sensor_resolution(self) -> tuple[int, int]:
        return self.sensor.pixel_array

    # -- configurations ---------------------------------------------------------------------------------

    @staticmethod
    def _stream(defaults: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any] | None:
        if given is None:
            return None
        for key in given:
            if key not in STREAM_KEYS:
                raise ValueError("Bad key " + repr(key) + ": can only be " + repr(STREAM_KEYS))
        stream = defaults | given
        if isinstance(stream.get("size"), tuple):
            w, h = stream["size"]
            stream["size"] = (w - w % 2, h - h % 2)  # align_stream(optimal=False)
        return stream

    create_preview_configuration = _configuration_method("preview", buffer_count=4, display="main")
    create_still_configuration = _configuration_method("still", buffer_count=1, display=None)
    create_video_configuration = _configuration_method("video", buffer_count=6, display="main")

    # -- configure / start / stop / close ---------------------------------------------------------------

    @staticmethod
    def _check_stream(stream: Any, name: str) -> None:
        if type(stream) is not dict:
            raise RuntimeError(name + " stream should be a dictionary")
        for key in ("format", "size"):
            if key not in stream:
                raise RuntimeError(f"{key} not found in {name} stream")
        fmt = stream["format"]
        if type(fmt) is not str:
            raise RuntimeError("format in " + name + " stream should be a string")
        if name != "raw" and fmt not in KNOWN_FORMATS:
            raise RuntimeError("Bad format " + fmt + " in stream " + name)
        size = stream["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def configure(self, camera_config: Any = None) -> None:
        if self._sensor is None:
            raise RuntimeError("Camera not opened")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None or isinstance(camera_config, str):
            camera_config = {"still": self.create_still_configuration, "video": self.create_video_configuration}.get(
                camera_config or "preview", self.create_preview_configuration
            )()
        if not isinstance(camera_config, dict):
            raise NotImplementedError("the fake picamera2 takes dict or named configurations only")
        config: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in camera_config.items()}
        self.camera_config = None
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        bad_keys = set(config.get("sensor") or {}) - {"bit_depth", "output_size"}
        if bad_keys:
            raise RuntimeError(f"Unexpected keys {bad_keys} in sensor configuration")
        self._check_stream(config["main"], "main")
        if config["lores"] is not None:
            self._check_stream(config["lores"], "lores")
            (mw, mh), (lw, lh) = config["main"]["size"], config["lores"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        if config["raw"] is not None:
            self._check_stream(config["raw"], "raw")
        for name in ("display", "encode"):
            if config.get(name) is not None and config[name] not in config:
                raise RuntimeError(f"{name.capitalize()} stream {config[name]} was not defined")
        self._check_controls(config["controls"])
        simulated = [n for n in ("main", "lores") if config[n] is not None]
        for name in simulated:
            s = config[name]
            s["stride"] = stride_for(s["format"], s["size"][0])
            s["framesize"] = framesize_for(s["format"], s["stride"], s["size"][1])
        if config["raw"] is not None:
            config["raw"].update(stride=None, framesize=None)
        self.stream_map = {n: (n if config[n] is not None else None) for n in ("main", "lores", "raw")}
        count = int(config["buffer_count"])
        self._pool = [{n: np.empty(config[n]["framesize"], np.uint8) for n in simulated} for _ in range(count)]
        self._free = list(range(count))
        self.outstanding = 0
        self.controls = dict(config["controls"])
        self.camera_config = config
        self.configure_count += 1

    def _check_controls(self, controls: dict[str, Any]) -> None:
        for name in controls:
            if name not in self.camera_controls and name != "FrameRate":
                raise RuntimeError(f"Control {name} is not advertised by libcamera")

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        return self.camera_config[name]

    def set_controls(self, controls: dict[str, Any]) -> None:
        self._check_controls(controls)
        controls = dict(controls)
        if "FrameRate" in controls:  # the virtual control, converted as controls.py does
            rate = controls.pop("FrameRate")
            lo, hi = (rate, rate) if isinstance(rate, (int, float)) else rate
            controls["FrameDurationLimits"] = (int(1e6 / hi), int(1e6 / lo))
        self.controls.update(controls)

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            # The real camera would quietly fall back to the preview configuration here (see the docstring).
            raise RuntimeError("Camera has not been configured")
        if self._sensor is None:
            raise RuntimeError("Camera not opened")
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.stop_count += 1
            self.started = False

    def close(self) -> None:
        if self._sensor is None:
            return
        self.stop()
        self.unreleased_at_close = self.outstanding
        self._sensor.opened_by = None
        self._sensor = None
        self.is_open = False

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the frame pipeline -----------------------------------------------------------------------------

    def _recycle(self, request: CompletedRequest, buffers: dict[str, np.ndarray]) -> None:
        """Called by CompletedRequest.release() at ref count 0: the buffer goes back to the camera."""
        for flat in buffers.values():
            flat.fill(POISON_BYTE)  # a later frame will overwrite it; anything still viewing it sees the change
        if request.configure_count == self.configure_count:
            self._free.append(request.slot)
            self.outstanding -= 1

    def _next_request(self) -> CompletedRequest:
        if self._loop_error is not None:
            raise _Stall(f"the camera event loop died: pre_callback raised {self._loop_error!r}")
        sensor = self.sensor
        if sensor.frames_left is not None and sensor.frames_left <= 0:
            raise _Stall("the camera stopped delivering frames")
        if not self._free:
            raise _Stall(f"all {len(self._pool)} buffers are held by unreleased requests, so no frame can complete")
        assert self.camera_config is not None
        slot = self._free.pop(0)
        self.outstanding += 1
        scene = sensor.next_scene()
        if sensor.frames_left is not None:
            sensor.frames_left -= 1
        for name, flat in self._pool[slot].items():
            render(scene, self.camera_config[name], flat)
        lo, hi = sensor.frame_duration_range
        duration = min(max(int(self.controls.get("FrameDurationLimits", (33333, 33333))[1]), lo), hi)
        metadata = {
            "SensorTimestamp": sensor.delivered * duration * 1000,
            "FrameDuration": duration,
            "ExposureTime": min(duration, 20000),
            "ScalerCrop": (0, 0, *sensor.pixel_array),
        }
        return CompletedRequest(self, slot, metadata)

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> CompletedRequest:
        if signal_function is not None or wait is False:
            raise NotImplementedError("the fake picamera2 models blocking captures only")
        if self.post_callback is not None:
            raise NotImplementedError("the fake picamera2 does not model post_callback timing")
        if self._sensor is None:
            raise RuntimeError("fake picamera2: capture_request on a closed camera (the real one would hang)")
        if not self.started:
            raise RuntimeError("fake picamera2: capture_request before start() (the real one would hang)")
        if self.sensor.error is not None:
            raise self.sensor.error
        try:
            request = self._next_request()
        except _Stall as stall:
            raise self._stalled(wait, str(stall)) from None
        self.requests_issued += 1
        try:
            if self.pre_callback is not None:
                self.pre_callback(request)
            for tap in self.taps:
                tap(request)
        except Exception as exc:
            request.release()
            self._loop_error = exc  # the real event-loop thread dies; every later capture stalls
            raise self._stalled(wait, f"the camera event loop died: pre_callback raised {exc!r}") from exc
        return request  # the caller now holds the one reference

    @staticmethod
    def _stalled(wait: Any, why: str) -> Exception:
        if wait is None or wait is True:
            return RuntimeError(f"fake picamera2: capture_request would block for ever: {why}")
        return TimeoutError(f"no frame within {wait} s: {why}")

    def cancel_all_and_flush(self) -> None:
        """Real: cancels queued capture jobs (a timed-out job would otherwise take a request later). The fake's
        captures are synchronous, so there is nothing queued; the call is counted."""
        self.flushes += 1

    @contextlib.contextmanager
    def captured_request(self, wait: Any = None, flush: Any = None) -> Iterator[CompletedRequest]:
        request = self.capture_request(wait=wait, flush=flush)
        try:
            yield request
        finally:
            request.release()

    def _captured(self, wait: Any, signal_function: Any) -> contextlib.AbstractContextManager[CompletedRequest]:
        if signal_function is not None or wait is False:
            raise NotImplementedError("the fake picamera2 models blocking captures only")
        return self.captured_request(wait=wait)

    def capture_array(self, name: str = "main", wait: Any = None, signal_function: Any = None) -> np.ndarray:
        with self._captured(wait, signal_function) as request:
            return request.make_array(name)

    def capture_arrays(
        self, names: Sequence[str] = ("main",), wait: Any = None, signal_function: Any = None
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        with self._captured(wait, signal_function) as request:
            return [request.make_array(name) for name in names], request.get_metadata()

    def capture_buffer(self, name: str = "main", wait: Any = None, signal_function: Any = None) -> np.ndarray:
        with self._captured(wait, signal_function) as request:
            return request.make_buffer(name)

    def capture_buffers(
        self, names: Sequence[str] = ("main",), wait: Any = None, signal_function: Any = None
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        with self._captured(wait, signal_function) as request:
            return [request.make_buffer(name) for name in names], request.get_metadata()

    def capture_image(self, name: str = "main", wait: Any = None, signal_function: Any = None) -> Any:
        with self._captured(wait, signal_function) as request:
            return request.make_image(name)

    def capture_metadata(self, wait: Any = None, signal_function: Any = None) -> dict[str, Any]:
        """The next frame's metadata only; the request is released here, no pixel reaches the caller."""
        with self._captured(wait, signal_function) as request:
            return request.get_metadata()
