"""Fake ``picamera2.request``: ref-counted ``CompletedRequest`` and the zero-copy ``MappedArray``.

Buffer layouts follow the real ``MappedArray.__enter__`` / ``Helpers.make_array``; see the package docstring.
Every call that gives the process image pixels is counted (``FakeSensor.pixels_handed_out``, see the package
docstring); the count is taken here, where the pixels leave the camera buffer.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from .camera import Picamera2

RGB_FORMATS = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}  # bytes per pixel
PLANAR_YUV_FORMATS = ("YUV420", "YVU420")
# What the real picamera2/formats.py accepts on main/lores; the fake can render only the first two groups.
KNOWN_FORMATS = (
    *RGB_FORMATS,
    *PLANAR_YUV_FORMATS,
    "NV21",
    "NV12",
    "YVYU",
    "YUYV",
    "UYVY",
    "VYUY",
    "RGB161616",
    "BGR161616",
    "MJPEG",
)
PIL_MODES = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}  # Helpers._get_pil_mode
STRIDE_ALIGN = 64  # bytes; Pi 5 (PiSP) row alignment
PAD_BYTE = 0xA5  # fills the row padding beyond the image width
POISON_BYTE = 0x5A  # fills a buffer when it goes back to the camera (it will be overwritten by a later frame)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def stride_for(fmt: str, width: int) -> int:
    if fmt in RGB_FORMATS:
        return _align(width * RGB_FORMATS[fmt], STRIDE_ALIGN)
    if fmt in PLANAR_YUV_FORMATS:
        return _align(width, 2 * STRIDE_ALIGN)  # so that the half-width chroma rows stay aligned too
    raise NotImplementedError(f"the fake picamera2 does not render format {fmt}")


def framesize_for(fmt: str, stride: int, height: int) -> int:
    return stride * height * 3 // 2 if fmt in PLANAR_YUV_FORMATS else stride * height


def shaped_view(flat: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """The real MappedArray reshape: a view (never a copy) of the flat stream buffer."""
    fmt, (w, h), stride = config["format"], config["size"], config["stride"]
    if fmt in RGB_FORMATS:
        bpp = RGB_FORMATS[fmt]
        rows = flat[: h * stride].reshape((h, stride))
        array = rows[:, : w * bpp].reshape((h, w, bpp))
    elif fmt in PLANAR_YUV_FORMATS:
        array = flat.reshape((h * 3 // 2, stride))
    else:
        raise RuntimeError("Format " + fmt + " not supported")
    assert np.shares_memory(array, flat), "the fake's MappedArray must be zero-copy"
    return array


def render(scene_bgr: np.ndarray, config: dict[str, Any], out: np.ndarray) -> None:
    """Write the scene (a BGR image) into a flat stream buffer in the stream's format, resized to its size."""
    fmt, (w, h), stride = config["format"], config["size"], config["stride"]
    bgr = cv2.resize(scene_bgr, (w, h), interpolation=cv2.INTER_AREA)
    out.fill(PAD_BYTE)
    if fmt in RGB_FORMATS:
        pixels = {
            "RGB888": bgr,  # libcamera RGB888 = B, G, R in memory
            "BGR888": bgr[..., ::-1],  # libcamera BGR888 = R, G, B in memory
            "XRGB8888": np.dstack([bgr, np.full((h, w), 255, np.uint8)]),  # B, G, R, X
            "XBGR8888": np.dstack([bgr[..., ::-1], np.full((h, w), 255, np.uint8)]),  # R, G, B, X
        }[fmt]
        shaped_view(out, config)[...] = pixels
        return
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)  # Y (h*w), U (h/2*w/2), V (h/2*w/2)
    y, u, v = i420[: w * h], i420[w * h : w * h * 5 // 4], i420[w * h * 5 // 4 :]
    if fmt == "YVU420":
        u, v = v, u
    out[: h * stride].reshape(h, stride)[:, :w] = y.reshape(h, w)
    c_stride, c_size = stride // 2, (h // 2) * (stride // 2)
    base = h * stride
    out[base : base + c_size].reshape(h // 2, c_stride)[:, : w // 2] = u.reshape(h // 2, w // 2)
    out[base + c_size : base + 2 * c_size].reshape(h // 2, c_stride)[:, : w // 2] = v.reshape(h // 2, w // 2)


class CompletedRequest:
    """One completed frame. The holder owns one reference and must ``release()`` it."""

    def __init__(self, picam2: Picamera2, slot: int, metadata: dict[str, Any]) -> None:
        self.picam2 = picam2
        self.ref_count = 1
        self.lock: threading.Lock = picam2.request_lock
        self.config: dict[str, Any] | None = {
            k: dict(v) if isinstance(v, dict) else v
            for k, v in picam2.camera_config.items()  # type: ignore[union-attr]
        }
        self.stream_map: dict[str, Any] | None = dict(picam2.stream_map)
        self.slot = slot
        self.stop_count = picam2.stop_count
        self.configure_count = picam2.configure_count
        self._buffers: dict[str, np.ndarray] | None = picam2._pool[slot]
        self._metadata = dict(metadata)
        self._sensor = picam2.sensor  # counts pixel hand-outs even after the camera is closed

    def _hand_out(self, kind: str) -> None:
        """Count one hand-out of image pixels to the process (fake-only bookkeeping)."""
        self.picam2.pixels_handed_out += 1
        self._sensor.pixels_handed_out += 1
        self._sensor.pixel_handouts[kind] += 1

    def acquire(self) -> None:
        with self.lock:
            if self.ref_count <= 0:  # the real one checks == 0 only, so it misses a request released twice
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                assert self._buffers is not None
                self.picam2._recycle(self, self._buffers)
                self._buffers = None
                self.config = None
                self.stream_map = None

    @property
    def released(self) -> bool:
        return self._buffers is None

    def _buffer(self, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        if self._buffers is None or self.config is None or self.stream_map is None:
            raise RuntimeError("fake picamera2: request used after release (its buffer went back to the camera)")
        if self.stream_map.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        if name not in self._buffers:
            raise RuntimeError(f"fake picamera2: stream {name!r} is not simulated")
        return self._buffers[name], self.config[name]

    def make_buffer(self, name: str) -> np.ndarray:
        flat, _ = self._buffer(name)
        self._hand_out("make_buffer")
        return flat.copy()

    def make_array(self, name: str) -> np.ndarray:
        flat, config = self._buffer(name)
        self._hand_out("make_array")
        return np.ascontiguousarray(shaped_view(flat, config)).copy()

    def make_image(self, name: str, width: int | None = None, height: int | None = None) -> Any:
        """A PIL image, as the real ``Helpers.make_image`` builds it (pillow is a dependency of the real package;
        the fake imports it only here, so without pillow this raises ``ModuleNotFoundError``)."""
        image_module = importlib.import_module("PIL.Image")
        flat, config = self._buffer(name)
        mode = PIL_MODES.get(config["format"])
        if mode is None:
            raise RuntimeError(f"Stream format {config['format']} not supported for PIL images")
        self._hand_out("make_image")
        rgb = np.ascontiguousarray(shaped_view(flat, config)).copy()
        image = image_module.frombuffer("RGB", (rgb.shape[1], rgb.shape[0]), rgb, "raw", mode, rgb.strides[0], 1)
        w, h = width or rgb.shape[1], height or rgb.shape[0]
        return image if (w, h) == (rgb.shape[1], rgb.shape[0]) else image.resize((w, h))

    def get_metadata(self) -> dict[str, Any]:
        if self._buffers is None:
            raise RuntimeError("fake picamera2: request used after release (its buffer went back to the camera)")
        if "CnnInputTensor" in self._metadata:  # the IMX500's input image (CnnEnableInputTensor): pixels too
            self._hand_out("CnnInputTensor")
        return dict(self._metadata)


class MappedArray:
    """``with MappedArray(request, "main") as m: m.array[...] = 0`` writes into the camera buffer itself."""

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True) -> None:
        self.__request = request
        self.__stream = stream
        self.__reshape = reshape
        self.__write = write
        self.__array: np.ndarray | None = None
        request._buffer(stream)  # a released request or an undefined stream fails here, as in the real one

    def __enter__(self) -> MappedArray:
        flat, config = self.__request._buffer(self.__stream)
        self.__request._hand_out("MappedArray")
        array = shaped_view(flat, config) if self.__reshape else flat[:]
        if not self.__write:
            array = array.view()
            array.flags.writeable = False
        self.__array = array
        return self

    def __exit__(self, *exc: object) -> None:
        self.__array = None

    @property
    def array(self) -> np.ndarray | None:
        return self.__array
