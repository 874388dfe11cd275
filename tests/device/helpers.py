"""Helpers shared by the device tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def assert_on_the_wire(events) -> None:
    """Each app event goes through the agent's own stamping, signing and the server's verification."""
    from firmware.agent import EventStamper
    from wardsight import wire

    key = wire.generate_key()
    stamp = EventStamper("dev-1", "3B-12", lambda ev: wire.sign_event(ev, key), to_wall=lambda t: t)
    for event in events:
        wire.verify_event(stamp(event), lambda kid: key.public_key())
