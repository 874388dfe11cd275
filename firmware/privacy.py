"""Privacy blackout: polygons zeroed in the frame buffer, in place, before any other code sees it."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

Polygon = Sequence[tuple[float, float]]  # frame-relative (0..1) x, y


class PrivacyMask:
    """Zeroes the given polygons in frames of any size (the pixel mask is cached per size)."""

    def __init__(self, polygons: Sequence[Polygon]) -> None:
        self.polygons = [np.asarray(p, dtype=np.float64) for p in polygons]
        self._size: tuple[int, int] | None = None
        self._mask: npt.NDArray[np.bool_] | None = None

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def mask_for(self, width: int, height: int) -> npt.NDArray[np.bool_]:
        if self._size != (width, height) or self._mask is None:
            canvas = np.zeros((height, width), dtype=np.uint8)
            scale = np.array([width, height], dtype=np.float64)
            pts = [np.round(p * scale).astype(np.int32) for p in self.polygons]
            cv2.fillPoly(canvas, pts, 1)
            self._mask = canvas.astype(bool)
            self._size = (width, height)
        return self._mask

    def apply(self, frame: npt.NDArray[np.uint8]) -> None:
        """Zero every pixel inside a polygon, in place."""
        if self.polygons:
            frame[self.mask_for(frame.shape[1], frame.shape[0])] = 0
