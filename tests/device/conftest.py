"""Fixtures only the device tests use (shared ones such as ``shared`` and ``model_store``: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelerators.cpu import CpuPoseBackend


@pytest.fixture(scope="module")
def backend(movenet_path: Path) -> CpuPoseBackend:
    """The factory MoveNet MultiPose on the CPU, one per test module."""
    return CpuPoseBackend(movenet_path, num_threads=2)
