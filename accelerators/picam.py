"""What the two Picamera2 users (the AI camera in :mod:`accelerators.imx500`, the camera source in
``firmware.picamera``) do alike with the camera object; ``picamera2`` itself is imported by each of them."""

from __future__ import annotations

from typing import Any


def stop_and_close(cam: Any) -> None:
    """Stop a ``Picamera2`` and close it, closed even when ``stop()`` raises (the camera is free for the next one)."""
    try:
        cam.stop()
    finally:
        cam.close()
