"""Fixtures only the device tests use (shared ones such as ``shared`` and ``model_store``: tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from accelerators.cpu import CpuPoseBackend
from tests.device.fakes import picamera2 as fake_picamera2
from tests.device.fakes.picamera2 import devices as fake_devices
from tests.device.fakes.picamera2.devices import imx500 as fake_imx500_pkg


@pytest.fixture(scope="module")
def backend(movenet_path: Path) -> CpuPoseBackend:
    """The factory MoveNet MultiPose on the CPU, one per test module."""
    return CpuPoseBackend(movenet_path, num_threads=2)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``import picamera2`` (and its ``devices.IMX500``) resolve to the fakes; no camera is attached until a test
    adds one (the AI Camera tests; test_picamera.py has its own)."""
    fake_picamera2.reset()
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)
    monkeypatch.setitem(sys.modules, "picamera2.devices", fake_devices)
    monkeypatch.setitem(sys.modules, "picamera2.devices.imx500", fake_imx500_pkg)
    yield fake_picamera2
    fake_picamera2.reset()
