"""Helpers shared by the device tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from accelerators.catalog import MOVENET_MULTIPOSE
from wardsight import modelpkg


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def truncated_model(model: Path, tmp_path: Path) -> Path:
    """The first 100 kB of ``model`` as ``broken.tflite``: a file LiteRT refuses to load."""
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(model.read_bytes()[:100_000])
    return broken


def assert_refuses_bad_frames(detector) -> None:
    """A detector given something that is not an (H, W, 3) uint8 frame raises ValueError."""
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10), np.uint8))


def make_package(directory: Path, version: str, model: Path | bytes, name: str = MOVENET_MULTIPOSE.name) -> Path:
    """A real model package (one CPU build) holding ``model``: a model file, or bytes written to one here."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, bytes):
        (directory / "movenet.tflite").write_bytes(model)
        model = directory / "movenet.tflite"
    digest, size = modelpkg.describe_file(model)
    build = modelpkg.Build(
        backend="cpu",
        runtime="litert",
        file="movenet.tflite",
        sha256=digest,
        size=size,
        input={"long_side": 256, "multiple": 32, "dtype": "uint8"},
        decoder="movenet_multipose",
    )
    manifest = modelpkg.Manifest(name=name, version=version, task="pose", license="Apache-2.0", builds=[build])
    out = directory / f"{name}-{version}.wsm"
    modelpkg.write_package(out, manifest, {"movenet.tflite": model})
    return out


def assert_on_the_wire(events) -> None:
    """Each app event goes through the agent's own stamping, signing and the server's verification."""
    from firmware.agent import EventStamper
    from wardsight import wire

    key = wire.generate_key()
    stamp = EventStamper("dev-1", "3B-12", lambda ev: wire.sign_event(ev, key), to_wall=lambda t: t)
    for event in events:
        wire.verify_event(stamp(event), lambda kid: key.public_key())
