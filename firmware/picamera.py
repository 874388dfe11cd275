"""Raspberry Pi camera modules (libcamera) through Picamera2, with the privacy blackout inside the camera pipeline.

Privacy regions are zeroed in Picamera2's ``pre_callback``, in the camera's own buffers (the main stream and,
when configured, the lores stream), before the frame reaches anything else: not this source's copy, and not
an encoder or preview that may be attached later. ``FrameSource.read()`` masks the copy once more (idempotent).
It fails closed: a request that did not pass through our ``pre_callback`` (the blanking raised, or someone
replaced the callback) is released unread and the capture raises ``SourceError``.

Picamera2 comes from Raspberry Pi OS's apt (python3-picamera2, which brings the libcamera bindings); it is
imported only when this source is created. API facts relied on (raspberrypi/picamera2, see
/work/shared/reference/EDGE_APIS.md section 1): the main format "RGB888" is B, G, R in memory; a request from
``capture_request()`` must be released or the camera stalls once all its buffers are held; ``MappedArray`` is
a zero-copy view of a request's buffer; ``capture_request(wait=seconds)`` raises ``TimeoutError``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.picam import stop_and_close
from firmware.clock import STEADY
from firmware.privacy import PrivacyMask
from firmware.sources import CapturedFrame, FrameSource, SourceError

log = logging.getLogger("wardsight.device.source")

INSTALL_HINT = "picamera2 is not installed; on Raspberry Pi OS: sudo apt install python3-picamera2"
LORES_FORMATS = ("YUV420", "RGB888")  # YUV420 works on every Pi; an RGB lores stream needs a Pi 5 (PiSP)
BoolMask = npt.NDArray[np.bool_]


def _even_size(name: str, size: tuple[int, int]) -> tuple[int, int]:
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise SourceError(f"{name} must be a positive, even (width, height); got {size}")
    return w, h


class Picamera2Source(FrameSource):
    """A Raspberry Pi camera module by index, as RGB frames of ``size`` at ``fps``."""

    def __init__(
        self,
        camera_num: int = 0,
        *,
        size: tuple[int, int] = (1280, 720),
        fps: float = 15.0,
        lores_size: tuple[int, int] | None = None,
        lores_format: str = "YUV420",
        capture_timeout: float | None = None,  # seconds; default: 3 frame periods, at least 2 s
        privacy: PrivacyMask | None = None,
        clock: Callable[[], float] = STEADY,
    ) -> None:
        super().__init__(privacy)
        self.camera_num = camera_num
        self._clock = clock
        self._requested = _even_size("size", size)
        if not 0.1 <= fps <= 240.0:
            raise SourceError(f"fps must be between 0.1 and 240; got {fps}")
        self._fps = float(fps)
        self._timeout = capture_timeout if capture_timeout is not None else max(2.0, 3.0 / self._fps)
        lores = _even_size("lores_size", lores_size) if lores_size is not None else None
        if lores is not None and (lores[0] > self._requested[0] or lores[1] > self._requested[1]):
            raise SourceError(f"lores_size {lores} may not exceed size {self._requested}")
        if lores_format not in LORES_FORMATS:
            raise SourceError(f"lores_format must be one of {', '.join(LORES_FORMATS)}; got {lores_format!r}")

        try:
            picamera2 = importlib.import_module("picamera2")
        except ImportError as exc:
            detail = "" if exc.name in (None, "picamera2") else f" (importing it failed: {exc})"
            raise SourceError(INSTALL_HINT + detail) from exc
        self._mapped_array: Any = picamera2.MappedArray

        # Requests our pre_callback has blanked; weak, so frames nobody captured are simply forgotten.
        self._blanked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._main_mask: BoolMask | None = None
        self._lores_mask: BoolMask | None = None
        self._lores_chroma_mask: BoolMask | None = None  # YUV420 lores only: one entry per 2x2 pixel block
        self._lores_format = lores_format
        self._last_timestamp: int | None = None

        try:
            cam = picamera2.Picamera2(camera_num)
        except IndexError as exc:
            raise SourceError(
                f"Raspberry Pi camera {camera_num} not found (check the ribbon cable; `rpicam-hello --list-cameras`"
                " lists what libcamera sees)"
            ) from exc
        except Exception as exc:
            raise SourceError(f"cannot open Raspberry Pi camera {camera_num} (disabled, or busy): {exc}") from exc
        try:
            self._configure(cam, lores)
        except Exception as exc:
            cam.close()
            if isinstance(exc, SourceError):
                raise
            raise SourceError(f"cannot configure Raspberry Pi camera {camera_num}: {exc}") from exc
        self._cam: Any = cam

    def _configure(self, cam: Any, lores: tuple[int, int] | None) -> None:
        frame_us = round(1e6 / self._fps)
        config = cam.create_video_configuration(
            main={"format": "RGB888", "size": self._requested},
            lores={"format": self._lores_format, "size": lores} if lores is not None else None,
            controls={"FrameDurationLimits": (frame_us, frame_us)},
        )
        cam.configure(config)
        actual = cam.camera_configuration()
        main = actual["main"]
        if main["format"] != "RGB888":
            raise SourceError(f"camera {self.camera_num} gave main format {main['format']}, not RGB888")
        self._size: tuple[int, int] = (int(main["size"][0]), int(main["size"][1]))
        if self.privacy:
            if lores is not None:
                lw, lh = (int(v) for v in actual["lores"]["size"])
                lores_mask = self.privacy.mask_for(lw, lh).copy()
                self._lores_mask = lores_mask
                if self._lores_format == "YUV420":
                    blocks = lores_mask.reshape(lh // 2, 2, lw // 2, 2)
                    self._lores_chroma_mask = np.asarray(blocks.any(axis=(1, 3)), dtype=np.bool_)
            # Computed last, so the mask PrivacyMask keeps cached is the main one that read() uses.
            self._main_mask = self.privacy.mask_for(*self._size).copy()
        self._has_lores = lores is not None
        cam.pre_callback = self._blank  # before start(), so that the very first frame is blanked
        cam.start()

    # -- runs on the camera's event-loop thread, before any capture sees the request --------------------

    def _blank(self, request: Any) -> None:
        try:
            if self._main_mask is not None:
                with self._mapped_array(request, "main") as m:
                    m.array[self._main_mask] = 0
            if self._lores_mask is not None:
                with self._mapped_array(request, "lores") as m:
                    self._blank_lores(m.array)
        except Exception:
            log.exception("privacy blanking failed in the camera callback; blacking out the whole frame")
            self._black_out(request)
            return
        self._blanked.add(request)

    def _blank_lores(self, array: npt.NDArray[np.uint8]) -> None:
        assert self._lores_mask is not None
        if self._lores_chroma_mask is None:  # an RGB lores stream
            array[self._lores_mask] = 0
            return
        # YUV420 as (h*3//2, stride): h rows of Y, then U and V planes of h/2 rows of stride/2 bytes each.
        # Y = 0 with neutral chroma (128) is black; chroma blocks touching the region are neutralised.
        h, w = self._lores_mask.shape
        stride = array.shape[1]
        if array.shape[0] != h * 3 // 2:
            raise ValueError(f"unexpected YUV420 lores layout {array.shape} for {w}x{h}")
        flat = array.view()
        flat.shape = (-1,)  # raises rather than silently copying, so writes always land in the camera buffer
        flat[: h * stride].reshape(h, stride)[:, :w][self._lores_mask] = 0
        plane = (h // 2) * (stride // 2)
        for start in (h * stride, h * stride + plane):
            flat[start : start + plane].reshape(h // 2, stride // 2)[:, : w // 2][self._lores_chroma_mask] = 128

    def _black_out(self, request: Any) -> None:
        """Fail closed: zero every stream of a request we could not blank (it will not be read either)."""
        for name in ("main", "lores") if self._has_lores else ("main",):
            try:
                with self._mapped_array(request, name) as m:
                    m.array[...] = 0
            except Exception:
                log.exception("could not black out the %s stream", name)

    # -- FrameSource ------------------------------------------------------------------------------------

    def _fail(self, message: str) -> SourceError:
        self.stats.errors += 1
        log.error("%s", message)
        return SourceError(message)

    def _capture(self) -> CapturedFrame | None:
        cam = self._cam
        name = f"Raspberry Pi camera {self.camera_num}"
        if cam is None:
            raise SourceError(f"{name} is closed")
        try:
            request = cam.capture_request(wait=self._timeout)
        except TimeoutError as exc:
            # The timed-out job stays queued in Picamera2 and would take (and leak) the next request; drop it.
            with contextlib.suppress(Exception):
                cam.cancel_all_and_flush()
            raise self._fail(f"{name} stopped delivering frames (none within {self._timeout:g} s)") from exc
        except Exception as exc:
            raise self._fail(f"{name} failed to capture: {exc}") from exc
        try:
            if request not in self._blanked:
                raise self._fail(f"{name}: frame discarded, privacy blanking did not run on it in the camera")
            self._blanked.discard(request)
            with self._mapped_array(request, "main", write=False) as m:
                # One pass: B,G,R camera buffer -> a new RGB array that we own (the buffer is recycled on release).
                image = np.asarray(cv2.cvtColor(m.array, cv2.COLOR_BGR2RGB), dtype=np.uint8)
            self._count_drops(request)
        except SourceError:
            raise
        except Exception as exc:
            raise self._fail(f"{name}: unreadable frame: {exc}") from exc
        finally:
            request.release()
        w, h = self._size
        if image.shape != (h, w, 3):
            raise self._fail(f"{name} delivered a {image.shape} frame, expected {(h, w, 3)}")
        return CapturedFrame(self._clock(), image)

    def _count_drops(self, request: Any) -> None:
        """Frames the camera completed that we never read (we were slower than the camera)."""
        md = request.get_metadata()
        ts, duration = md.get("SensorTimestamp"), md.get("FrameDuration")
        if isinstance(ts, int) and isinstance(duration, int) and duration > 0:
            if self._last_timestamp is not None:
                self.stats.dropped += max(0, round((ts - self._last_timestamp) / (duration * 1000)) - 1)
            self._last_timestamp = ts

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            stop_and_close(cam)
