"""The backend interface: a frame in, people out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

from accelerators.types import Person

Frame = npt.NDArray[np.uint8]  # (H, W, 3) RGB, already blacked out where privacy regions are


class Backend(ABC):
    """A people/pose detector on some runtime. ``detect`` must not keep a reference to ``frame``."""

    name: str
    #: Seconds spent in the last ``detect`` per internal step (e.g. preprocess, invoke, decode).
    last_timings: dict[str, float] = {}  # noqa: RUF012 - replaced per instance, never mutated in place

    @abstractmethod
    def detect(self, frame: Frame) -> list[Person]:
        """People in an RGB uint8 frame, in that frame's pixel coordinates."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources."""
