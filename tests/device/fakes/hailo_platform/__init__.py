"""A fake ``hailo_platform`` package (HailoRT 4.x Python API, hailo8 branch): what WardSight's Hailo backend uses.

Why a fake: ``import hailo_platform`` loads the native ``_pyhailort`` extension and needs the hailort runtime of
the same version (apt ``hailo-all`` on Raspberry Pi OS), so off a Pi with a Hailo-8/8L it cannot be imported.
Tests put this package into ``sys.modules["hailo_platform"]`` (monkeypatch). Modelled on
``hailort/libhailort/bindings/python/platform/hailo_platform/pyhailort/pyhailort.py`` (4.23) as summarised in
``/work/shared/reference/EDGE_APIS.md`` section 2. Faithful:

- ``Device.scan()`` returns PCIe BDF strings ("0000:01:00.0"); ``Device()`` with none raises
  ``HailoRTException('HailoRT device not found in the system')``; ``device.control.identify()`` gives a
  ``BoardInformation`` whose ``device_architecture`` is a ``DeviceArchitectureTypes`` (HAILO8, HAILO8L, ...);
  ``control.get_chip_temperature()`` gives ``TemperatureInfo(ts0_temperature, ts1_temperature, sample_count)``.
- ``VDevice(params)`` takes free physical devices; none (or all held by another VDevice) raises
  ``HailoRTException('libhailort failed with error: 74 (HAILO_OUT_OF_PHYSICAL_DEVICES)')``, so a VDevice that is
  never released blocks the next one.
- ``create_infer_model(path)``: unknown file -> HailoRTException (HAILO_OPEN_FILE_FAILURE). ``configure()`` on a
  chip the HEF was not compiled for raises ``HailoRTHEFNotCompatibleWithDevice`` (a Hailo-8 HEF on a Hailo-8L; a
  Hailo-8L HEF runs on a Hailo-8). That class lives in ``hailo_platform.pyhailort.pyhailort`` only.
- Streams have ``name``, ``shape``, ``format.type``/``format.order``, ``quant_infos`` (``qp_scale``, ``qp_zp``),
  ``is_nms``; outputs default to the HEF's native type (UINT8/UINT16), ``set_format_type(FLOAT32)`` makes the
  runtime dequantise. The device "computes" float tensors (from a test-supplied function) and they are
  quantised with the output's quant info, so float32 outputs carry real quantisation error.
- NMS_BY_CLASS outputs are a flat float32 buffer of ``num_classes * (1 + 5 * max_bboxes)`` (per class a count
  then the boxes); ``get_buffer()`` decodes it into one (n, 5) array per class.
- ``create_bindings(output_buffers=...)`` / ``set_buffer``: buffers must be C-contiguous
  ("Buffer must be C_CONTIGUOUS") and match the stream's shape and dtype (HailoRTInvalidArgumentException).
- ``run(bindings_list, timeout_ms)`` and ``run_async(bindings_list, callback)``; the callback runs on another
  thread and is called with the keyword ``completion_info`` (``.exception`` None on success);
  ``job.wait(timeout_ms)`` and ``wait_for_async_ready`` raise ``HailoRTTimeout``.

Stricter than the real runtime (there these are silent bugs, races or crashes; here they fail at once):

- a ConfiguredInferModel used after ``shutdown()``/its ``with`` exited, a VDevice or Device used after
  ``release()``, or an InferModel whose formats change after ``configure()`` (they would be ignored):
  HailoRTInvalidOperationException;
- ``VDevice.release()`` while a ConfiguredInferModel made from it is still open (its ``with`` not exited):
  HailoRTInvalidOperationException;
- ``set_buffer`` on a binding whose job is still in flight, or running bindings with a buffer missing:
  HailoRTInvalidOperationException.

- ``create_infer_model``/``HEF`` find a registered HEF by its path or by the file's bytes (a copy of a HEF, e.g. in
  an OTA model slot, is the same HEF); ``configure()`` accepts a HEF on the architectures HailoRT's
  ``hef_arch_to_device_compatible_archs`` allows (a Hailo-8L HEF on a Hailo-8 too).

Fake-only controls live in ``hailo_platform._fake`` (``reset``, ``add_device``, ``register_hef``,
``register_hef_content``, ``load_world``, ``held_devices``); they are not part of the real package. With
``$FAKE_HAILO_WORLD`` set to ``module:function`` the package calls that function on import (``_fake.load_world``):
a child process imported as ``hailo_platform`` (the OTA self-test, with ``tests/device/fakes`` on its
``PYTHONPATH``) then sees the devices and HEFs the test described. Held devices are per process (unmodelled
across processes: see firmware/ota/selftest_accel.py).
"""

import os as _os

from . import pyhailort

# Only what the real ``__init__`` re-exports; the rest is imported from ``hailo_platform.pyhailort.pyhailort``.
from .pyhailort.pyhailort import (
    HEF,
    AsyncInferJob,
    Device,
    FormatOrder,
    FormatType,
    HailoCommunicationClosedException,
    HailoRTException,
    HailoRTStreamAbortedByUser,
    HailoSchedulingAlgorithm,
    HailoStreamInterface,
    VDevice,
)

__version__ = "4.23.0"

if _os.environ.get("FAKE_HAILO_WORLD"):
    from . import _fake

    _fake.load_world(_os.environ["FAKE_HAILO_WORLD"])

__all__ = [
    "HEF",
    "AsyncInferJob",
    "Device",
    "FormatOrder",
    "FormatType",
    "HailoCommunicationClosedException",
    "HailoRTException",
    "HailoRTStreamAbortedByUser",
    "HailoSchedulingAlgorithm",
    "HailoStreamInterface",
    "VDevice",
    "pyhailort",
]
