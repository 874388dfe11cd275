"""The Raspberry Pi AI Camera as the agent's frame source: the camera and the accelerator are one device.

``accelerators.imx500`` runs the person network inside the sensor and hands each frame over with the people
found in it. This source yields those frames to the agent; the same backend object then answers
``detect(frame)`` for them, so the agent's loop is unchanged. The camera blanks privacy regions in its
buffers (``pre_callback``) and keeps them out of the network's view with the inference ROI;
:meth:`FrameSource.read` zeroes them once more before anything else sees the frame. In sensor-only mode
(``source.host_frames = false``) there is no frame: each capture carries the people alone.
"""

from __future__ import annotations

from accelerators.imx500 import Imx500PersonBackend
from firmware.privacy import PrivacyMask
from firmware.sources import CapturedFrame, FrameSource


class Imx500Source(FrameSource):
    def __init__(self, backend: Imx500PersonBackend, privacy: PrivacyMask | None = None, fps: float = 15.0) -> None:
        super().__init__(privacy)
        self.backend = backend
        self._fps = fps

    def _capture(self) -> CapturedFrame | None:
        frame = self.backend.read()
        if frame.image is None:  # sensor-only: the people alone, in the coordinates of the camera's frame size
            self._size = self.backend.camera.frame_size
            return CapturedFrame(frame.timestamp, None, people=frame.people)
        h, w = frame.image.shape[:2]
        self._size = (w, h)
        return CapturedFrame(frame.timestamp, frame.image)

    def close(self) -> None:
        self.backend.close()
