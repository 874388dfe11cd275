"""Live network streams (RTSP, MJPEG over HTTP) and local cameras that reconnect on their own, with backpressure.

``StreamSource`` opens the stream with OpenCV's FFmpeg backend (open and read timeouts passed as parameters at
open; RTSP forced onto TCP). A background thread reads frames continuously, converts each to RGB, zeroes the
privacy regions at once and puts it in a one-slot mailbox: a frame the agent has not taken yet is replaced by
the newer one and counted in ``stats.dropped``. That is the backpressure: when inference is slower than the
camera the agent always gets the newest frame and nothing queues; at most one undelivered frame is ever held.

When the stream cannot be opened, stops delivering (a failed read, or no frame within ``stall_timeout``), or
delivers only corrupt frames for ``stall_timeout``, the thread releases it and tries again after an exponential
backoff with jitter (0.5 s doubling to 30 s by default), reset once frames flow again. The source itself stays
alive throughout: ``_capture()`` (and so ``read()``) simply waits for the next frame, and returns None only once
the source is closed, so ``Agent.run`` keeps running across outages. Close the source (from any thread) to end a
run that is waiting for a stream that is down. With ``max_wait`` set, ``_capture()`` instead raises
``StreamUnavailable`` after that long without a frame.

Credentials never reach a log line or an error message: the URL is only ever shown through
:func:`firmware.streamurl.redact_url` (user info and credential-like query values replaced by ``***``).

RTSP transport: OpenCV reads FFmpeg options from the environment variable ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` at
each open. For rtsp:// and rtsps:// URLs, when the operator has not set it, it is set to ``rtsp_transport;tcp``
for the duration of the open call only (under a lock shared by all stream sources). Set the variable yourself
to choose other options (e.g. ``rtsp_transport;udp``); it is then left untouched.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import numpy.typing as npt

from firmware.clock import STEADY
from firmware.privacy import PrivacyMask
from firmware.sources import CapturedFrame, Frame, FrameSource, SourceError, TransientSourceError
from firmware.streamurl import redact_url, scrub, url_secrets

log = logging.getLogger("wardsight.device.source")

SCHEMES = ("rtsp", "rtsps", "http", "https")
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_TCP = "rtsp_transport;tcp"
_ENV_LOCK = threading.Lock()  # our opens set and restore the process-wide FFmpeg options variable one at a time


class StreamUnavailable(TransientSourceError):
    """No frame arrived within ``max_wait`` (the stream is down and being retried); transient."""


class Backoff:
    """Exponential backoff with jitter: ``initial`` doubling (by ``factor``) up to ``maximum`` seconds.

    Each delay is the nominal one shortened by a random fraction of up to ``jitter``, so many devices that lost
    the same server do not retry in lockstep, and no delay exceeds ``maximum``.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.25,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0.0 < initial <= maximum:
            raise SourceError(f"backoff needs 0 < initial <= maximum; got {initial}, {maximum}")
        if factor < 1.0 or not 0.0 <= jitter < 1.0:
            raise SourceError(f"backoff needs factor >= 1 and 0 <= jitter < 1; got {factor}, {jitter}")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rng = rng
        self._nominal = initial

    @property
    def nominal(self) -> float:
        """The next delay before jitter."""
        return self._nominal

    def next(self) -> float:
        delay = self._nominal * (1.0 - self.jitter * self._rng())
        self._nominal = min(self.maximum, self._nominal * self.factor)
        return delay

    def reset(self) -> None:
        self._nominal = self.initial


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces the frame waiting there, ``take`` waits for one. Never a queue."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: CapturedFrame | None = None
        self._closed = False

    def put(self, frame: CapturedFrame) -> bool:
        """Store ``frame``; True when it replaced one nobody took (that one is dropped)."""
        with self._cond:
            if self._closed:
                return True
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
        return replaced

    def take(self, timeout: float | None = None) -> CapturedFrame | None:
        """The waiting frame (removing it), waiting up to ``timeout`` seconds; None on timeout or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            if self._closed:
                return None
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frame = None
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return 0 if self._frame is None else 1


class StreamSource(FrameSource):
    """A network stream (rtsp://, rtsps://, http(s):// MJPEG and the like) or a local camera by index.

    Starts connecting at once in a background thread; the constructor does not wait (see ``wait_connected``).
    ``frame_size`` is (0, 0) until the first frame arrives, and follows the stream if it changes size.
    """

    def __init__(
        self,
        url: str | int,
        *,
        privacy: PrivacyMask | None = None,
        open_timeout: float = 10.0,
        stall_timeout: float = 5.0,
        max_wait: float | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = STEADY,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(privacy)
        if isinstance(url, bool) or not isinstance(url, int | str):
            raise SourceError(f"a stream is a URL or a camera index; got {type(url).__name__}")
        if isinstance(url, int):
            if url < 0:
                raise SourceError(f"camera index must be >= 0; got {url}")
            self.name = f"camera {url}"
        else:
            self.name = redact_url(url)
            scheme = urlsplit(url).scheme.lower() if self.name != "<unparseable url>" else ""
            if scheme not in SCHEMES:
                raise SourceError(f"unsupported stream URL {self.name}: the scheme must be one of {', '.join(SCHEMES)}")
            if not urlsplit(url).hostname:
                raise SourceError(f"stream URL {self.name} has no host")
        if open_timeout <= 0 or stall_timeout <= 0 or (max_wait is not None and max_wait <= 0):
            raise SourceError("open_timeout, stall_timeout and max_wait must be positive")
        self._url = url
        self._crashed: str | None = None
        self._secrets = url_secrets(url)
        self.open_timeout, self.stall_timeout, self.max_wait = open_timeout, stall_timeout, max_wait
        self.backoff = backoff or Backoff()
        self._clock, self._monotonic = clock, monotonic
        self._closing = threading.Event()
        self._sleep: Callable[[float], object] = sleep or self._closing.wait
        self._connected = threading.Event()
        self._mailbox = LatestFrame()
        # The capture thread's own copy: PrivacyMask caches its pixel mask per size, unsynchronised, so the
        # thread and read() (on the agent's thread) each get an instance; the polygons are the same.
        self._slot_mask = copy.copy(self.privacy)
        self.connects = 0  # successful connections (that delivered a frame)
        self.reconnects = 0  # connection attempts after the first
        self.received = 0  # good frames decoded from the stream
        self.last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_frame_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="wardsight-stream", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """True once frames are flowing (within ``timeout`` seconds)."""
        return self._connected.wait(timeout)

    def health(self) -> dict[str, float]:
        now = self._monotonic()
        err_at, frame_at = self._last_error_at, self._last_frame_at
        return {
            **super().health(),
            "connected": 1.0 if self.connected else 0.0,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "received": self.received,
            "pending": len(self._mailbox),
            "backoff_seconds": self.backoff.nominal,
            "last_error_age": -1.0 if err_at is None else now - err_at,  # -1: no error yet
            "last_frame_age": -1.0 if frame_at is None else now - frame_at,  # -1: no frame yet
        }

    def close(self) -> None:
        """Stop the capture thread and release the stream; a ``read()`` waiting in another thread returns None."""
        self._closing.set()
        self._mailbox.close()
        if self._thread is not threading.current_thread():
            self._thread.join(self.open_timeout + self.stall_timeout + 2.0)
            if self._thread.is_alive():
                log.warning("%s: capture thread still blocked in the stream; it exits when that returns", self.name)

    # -- FrameSource ------------------------------------------------------------------------------------

    def _capture(self) -> CapturedFrame | None:
        frame = self._mailbox.take(self.max_wait)
        if frame is None and self._crashed is not None:
            raise SourceError(f"{self.name}: {self._crashed}")  # not a clean end: let a supervisor restart us
        if frame is not None or self._mailbox.closed:
            return frame
        raise StreamUnavailable(
            f"{self.name}: no frame for {self.max_wait:g} s ({self.last_error or 'connecting'}); still retrying"
        )

    # -- the capture thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        attempts = 0
        try:
            while not self._closing.is_set():
                if attempts:
                    self.reconnects += 1
                attempts += 1
                cap = self._open()
                if cap is not None:
                    try:
                        self._pump(cap)
                    finally:
                        cap.release()
                        self._connected.clear()
                if self._closing.is_set():
                    break
                delay = self.backoff.next()
                log.info("%s: retrying in %.1f s (attempt %d)", self.name, delay, attempts + 1)
                self._sleep(delay)
        except Exception as exc:  # never die silently: the source would look alive and deliver nothing
            self._crashed = f"capture thread failed: {self._scrub(str(exc))}"
            self._error(self._crashed, level=logging.ERROR)
            self._mailbox.close()

    def _open(self) -> Any:
        try:
            cap = _open_capture(self._url, self.open_timeout, self.stall_timeout)
        except cv2.error as exc:
            self._error(f"cannot open stream: {self._scrub(str(exc))}")
            return None
        if not cap.isOpened():
            cap.release()
            self._error(f"cannot open stream (unreachable, refused, or nothing within {self.open_timeout:g} s)")
            return None
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if 1.0 <= fps <= 240.0:
            self._fps = fps
        return cap

    def _pump(self, cap: Any) -> None:
        """Read until the stream fails, stalls or delivers nothing usable for ``stall_timeout``."""
        last_good = self._monotonic()
        while not self._closing.is_set():
            try:
                ok, bgr = cap.read()
            except cv2.error as exc:
                ok, bgr = False, None
                self._error(f"read failed: {self._scrub(str(exc))}")
            if self._closing.is_set():
                return
            if not ok or bgr is None:
                self._error(f"stream stopped delivering frames (read failed, or none within {self.stall_timeout:g} s)")
                return
            image = _to_rgb(bgr)
            now = self._monotonic()
            if image is None:
                self._error(f"corrupt frame skipped ({getattr(bgr, 'shape', '?')})", level=logging.DEBUG)
                if now - last_good > self.stall_timeout:
                    self._error(f"only corrupt frames for {self.stall_timeout:g} s")
                    return
                continue
            last_good = now
            self._slot_mask.apply(image)  # before it is stored: no unmasked frame ever sits in the slot
            self._deliver(CapturedFrame(self._clock(), image), image.shape, now)

    def _deliver(self, frame: CapturedFrame, shape: tuple[int, ...], now: float) -> None:
        h, w = shape[:2]
        if (w, h) != self._size:
            if self._size != (0, 0):
                log.warning("%s: frame size changed from %dx%d to %dx%d", self.name, *self._size, w, h)
            self._size = (w, h)
        self.received += 1
        self._last_frame_at = now
        if not self._connected.is_set():
            self.connects += 1
            self.backoff.reset()
            self._connected.set()
            if self.connects == 1:
                log.info("%s: connected, %dx%d at %.3g fps", self.name, w, h, self._fps)
            else:
                log.warning("%s: reconnected (%d attempts so far)", self.name, self.reconnects)
        if self._mailbox.put(frame):
            self.stats.dropped += 1  # only this thread counts drops

    def _error(self, message: str, level: int = logging.WARNING) -> None:
        self.stats.errors += 1  # only this thread counts errors
        self.last_error = message
        self._last_error_at = self._monotonic()
        log.log(level, "%s: %s", self.name, message)

    def _scrub(self, text: str) -> str:
        """Remove the raw URL and its secrets from text we did not write ourselves (e.g. OpenCV's errors)."""
        return scrub(text, self._url, self.name, self._secrets)


@contextmanager
def _ffmpeg_options(url: str) -> Iterator[None]:
    """For RTSP, force TCP for this open unless the operator set the FFmpeg options variable."""
    if urlsplit(url).scheme.lower() not in ("rtsp", "rtsps"):
        yield
        return
    with _ENV_LOCK:
        if FFMPEG_OPTIONS_ENV in os.environ:
            yield
            return
        os.environ[FFMPEG_OPTIONS_ENV] = RTSP_TCP
        try:
            yield
        finally:
            os.environ.pop(FFMPEG_OPTIONS_ENV, None)


def _open_capture(url: str | int, open_timeout: float, read_timeout: float) -> Any:
    if isinstance(url, int):
        return cv2.VideoCapture(url)  # the platform's camera backend (V4L2 on Linux); FFmpeg cannot open indexes
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        round(open_timeout * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        round(read_timeout * 1000),
    ]
    with _ffmpeg_options(url):
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def _to_rgb(bgr: npt.NDArray[Any]) -> Frame | None:
    """A new RGB uint8 frame, or None for a frame that is not a usable colour image."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] < 2 or bgr.shape[1] < 2:
        return None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
