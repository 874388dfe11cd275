"""Fake-only controls for the fake ``hailo_platform`` (not part of the real package).

``add_device`` plugs in a chip (BDF, architecture, temperatures); ``register_hef`` makes a path load as a HEF whose
"network" is a Python function from the uint8 input tensor to float outputs in Hailo's layout (name -> NHWC
array, or for an NMS_BY_CLASS output a list of (n, 5) [y0, x0, y1, x1, score] arrays, one per class);
``register_hef_content`` makes any file with those bytes that HEF. ``load_world("module:function")`` calls a
function that does both; the package calls it on import with ``$FAKE_HAILO_WORLD``, so that a child process
(the OTA self-test) sees the same machine as the test that started it: the hardware is the machine's, not the
process's.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .pyhailort import pyhailort as _rt
from .pyhailort.pyhailort import DeviceArchitectureTypes, FormatType


@dataclass
class FakeDeviceSpec:
    device_id: str
    architecture: DeviceArchitectureTypes
    board_name: str = "Hailo-8"
    firmware_version: str = "4.23.0 (release,app,extended context switch buffer)"
    serial_number: str = ""
    part_number: str = ""
    product_name: str = ""
    ts0_temperature: float = 48.5
    ts1_temperature: float = 47.9
    temperature_reads: int = 0
    unplugged: bool = False


@dataclass
class FakeStreamSpec:
    """One HEF stream. ``native`` is the type the device produces; ``scale``/``zero_point`` its quant info."""

    name: str
    shape: tuple[int, ...] = ()
    native: FormatType = FormatType.UINT8
    scale: float = 1.0
    zero_point: float = 0.0
    nms_classes: int = 0  # > 0: an NMS_BY_CLASS output with this many classes
    nms_max_bboxes: int = 0


@dataclass
class FakeHef:
    architecture: DeviceArchitectureTypes
    input_shape: tuple[int, int, int]
    outputs: list[FakeStreamSpec]
    infer: Callable[[Any], dict[str, Any]]
    input_name: str = "yolov8s_pose/input_layer1"
    latency_s: float = 0.0
    fail_with: Exception | None = None
    calls: list[Any] = field(default_factory=list)

    def input_spec(self) -> FakeStreamSpec:
        return FakeStreamSpec(self.input_name, self.input_shape, FormatType.UINT8)


def reset() -> None:
    """Unplug every device, forget every HEF and every held device."""
    _rt._WORLD.devices.clear()
    _rt._WORLD.hefs.clear()
    _rt._WORLD.hef_contents.clear()
    _rt._WORLD.held.clear()
    _rt._WORLD.callback_errors.clear()


def add_device(
    device_id: str = "0001:01:00.0", architecture: DeviceArchitectureTypes = DeviceArchitectureTypes.HAILO8L, **kw: Any
) -> FakeDeviceSpec:
    spec = FakeDeviceSpec(device_id, architecture, **kw)
    _rt._WORLD.devices.append(spec)
    return spec


def register_hef(path: str, hef: FakeHef) -> FakeHef:
    _rt._WORLD.hefs[str(path)] = hef
    return hef


def register_hef_content(data: bytes, hef: FakeHef) -> FakeHef:
    """Make any file holding ``data`` load as ``hef`` (a HEF is its bytes: a copy of it loads the same)."""
    _rt._WORLD.hef_contents[hashlib.sha256(data).hexdigest()] = hef
    return hef


def load_world(spec: str) -> None:
    """Call ``module:function`` (e.g. from ``$FAKE_HAILO_WORLD``) with this module, to plug in devices and register
    HEFs in this copy of the fake (the one imported as ``hailo_platform`` in a child process)."""
    module, _, function = spec.partition(":")
    getattr(importlib.import_module(module), function)(sys.modules[__name__])


def held_devices() -> list[str]:
    """Device ids currently held by an unreleased VDevice."""
    return list(_rt._WORLD.held)


def callback_errors() -> list[BaseException]:
    return list(_rt._WORLD.callback_errors)
