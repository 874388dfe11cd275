"""Frame sources behind one small interface. Privacy blackout happens here, at the boundary.

Every source implements ``_capture()``; the public ``read()`` applies the privacy mask to the buffer
before returning it, so no caller ever holds an unmasked frame. Frames are RGB uint8 and are never
written anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.types import Person
from firmware.clock import STEADY
from firmware.privacy import PrivacyMask
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.source")
Frame = npt.NDArray[np.uint8]


class SourceError(WardSightError):
    """A frame source cannot be opened or has failed."""


class TransientSourceError(SourceError):
    """No frame for now (a stream is down and being retried); the agent keeps going."""


@dataclass(frozen=True)
class CapturedFrame:
    """One frame: its time and the masked image, or (a sensor that runs the network itself, in sensor-only mode)
    no image at all and the people the sensor found, in the coordinates of a ``frame_size`` frame."""

    time: float  # seconds since the epoch for live sources; media time anchored at start for files
    image: Frame | None
    people: list[Person] | None = None  # set only by a source whose sensor found the people itself


@dataclass
class SourceStats:
    captured: int = 0
    dropped: int = 0
    errors: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class FrameSource(ABC):
    """Yields privacy-masked RGB frames. ``read()`` returns None when the source has ended."""

    _size: tuple[int, int] = (0, 0)  # set by each source once it knows its geometry
    _fps: float = 0.0

    def __init__(self, privacy: PrivacyMask | None = None) -> None:
        self.privacy = privacy or PrivacyMask([])
        self.stats = SourceStats()

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self._size

    @property
    def fps(self) -> float:
        """Nominal frames per second."""
        return self._fps

    @abstractmethod
    def _capture(self) -> CapturedFrame | None:
        """The next raw frame (RGB, writable), or None at the end."""

    def read(self) -> CapturedFrame | None:
        captured = self._capture()
        if captured is None:
            return None
        if captured.image is not None:
            self.privacy.apply(captured.image)  # before anyone else sees it
        self.stats.captured += 1
        return captured

    def health(self) -> dict[str, float]:
        w, h = self.frame_size
        return {
            "width": w,
            "height": h,
            "fps": self.fps,
            "captured": self.stats.captured,
            "dropped": self.stats.dropped,
            "errors": self.stats.errors,
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file."""


def _bgr_to_rgb(bgr: npt.NDArray[Any]) -> Frame:
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def first_in_its_slot(t: float, fps: float, last_slot: int | None) -> tuple[bool, int]:
    """Whether a frame at clip time ``t`` is the first of its 1/``fps`` slot (kept when feeding at ``fps``)."""
    slot = math.floor(t * fps + 1e-9)
    return last_slot is None or slot > last_slot, slot


class VideoFileSource(FrameSource):
    """A video file, paced at its frame rate (dropping frames we are too slow for) or as fast as possible.

    ``fps`` feeds at most that many frames per second of the clip's own time (the first frame of each 1/fps
    slot; the others are grabbed and dropped undecoded), as a slower device would see the scene.
    """

    def __init__(
        self,
        path: Path,
        *,
        realtime: bool = True,
        loop: bool = False,
        privacy: PrivacyMask | None = None,
        clock: Callable[[], float] = STEADY,
        sleep: Callable[[float], None] = time.sleep,
        fps: float | None = None,
    ) -> None:
        super().__init__(privacy)
        if fps is not None and fps <= 0:
            raise SourceError(f"frame rate must be positive, not {fps}")
        if not Path(path).is_file():
            raise SourceError(f"video file not found: {path}")
        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video file {path} (not a video, or an unsupported codec)")
        self._fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 25.0
        if not 1.0 <= self._fps <= 240.0:
            self._fps = 25.0
        self._size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if self._size[0] <= 0 or self._size[1] <= 0:
            raise SourceError(f"{path}: cannot determine frame size")
        self.realtime, self.loop = realtime, loop
        self._clock, self._sleep = clock, sleep
        self._start = clock()
        self._index = 0  # frames consumed from the start (across loops)
        self.max_fps = fps
        self._last_slot: int | None = None

    def _grab(self) -> bool:
        if self._cap.grab():
            return True
        if not self.loop:
            return False
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return bool(self._cap.grab())

    def _capture(self) -> CapturedFrame | None:
        while True:
            if self.realtime:
                self._pace()
            if not self._grab():
                return None
            t = self._start + self._index / self._fps
            self._index += 1
            if self.max_fps is not None:
                keep, slot = first_in_its_slot(t - self._start, self.max_fps, self._last_slot)
                if not keep:
                    self.stats.dropped += 1
                    continue
                self._last_slot = slot
            ok, bgr = self._cap.retrieve()
            if ok and bgr is not None and bgr.ndim == 3:
                return CapturedFrame(t, _bgr_to_rgb(bgr))
            self.stats.errors += 1
            log.warning("%s: undecodable frame %d skipped", self.path.name, self._index)

    def _pace(self) -> None:
        """Wait for the next frame's time, or skip the frames whose time has already passed."""
        due = self._start + self._index / self._fps
        now = self._clock()
        if now < due:
            self._sleep(due - now)
            return
        for _ in range(int((now - due) * self._fps)):
            if not self._grab():
                return
            self._index += 1
            self.stats.dropped += 1

    def close(self) -> None:
        self._cap.release()


class ReplaySource(FrameSource):
    """Still images replayed at a fixed rate (for tests and for checking a site's zones)."""

    def __init__(
        self, images: list[Frame], *, fps: float = 10.0, privacy: PrivacyMask | None = None, start: float = 0.0
    ) -> None:
        super().__init__(privacy)
        if not images:
            raise SourceError("replay source needs at least one image")
        self._images, self._fps, self._start, self._i = images, fps, start, 0
        self._size = (images[0].shape[1], images[0].shape[0])

    def _capture(self) -> CapturedFrame | None:
        if self._i >= len(self._images):
            return None
        image = self._images[self._i].copy()  # the caller owns (and may mask) its copy
        t = self._start + self._i / self._fps
        self._i += 1
        return CapturedFrame(t, image)
