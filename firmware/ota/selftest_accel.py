"""The self-test of an accelerator build (a Hailo HEF, an Edge TPU model), run by :mod:`firmware.ota.selftest` in
its separate process: the build is loaded on the accelerator by the same backend class the agent opens it with
(:class:`~accelerators.hailo.HailoPoseBackend`, :class:`~accelerators.coral.CoralDetector`), which is where the
runtime itself refuses a HEF for another chip (``HailoRTHEFNotCompatibleWithDevice``); the self-test then runs the
agent's ``detect`` on the built-in frame twice and checks the people (boxes inside the frame, keypoints finite,
scores in [0, 1]) and the time.

The device is opened beside the agent, which keeps it open for its running model: HailoRT's model scheduler
shares a device between processes only through its multi-process service (``multi_process_service``, EDGE_APIS.md
2.3), which the agent does not use; whether a second process can open a Hailo in use without it is unverified on
hardware. If it cannot, the self-test fails ``load_failed`` and the package is rejected, never activated.
"""

from __future__ import annotations

from pathlib import Path

from accelerators.base import Backend
from firmware.ota.builds import major_minor
from wardsight.errors import WardSightError
from wardsight.modelpkg import Build

DECODERS = {("hailo", "hailort"): ("yolov8_pose", "yolov8_nms"), ("coral", "edgetpu"): ("ssd_postprocess",)}


def unsupported(build: Build) -> str | None:
    """Why there is no self-test for this accelerator build, or None."""
    decoders = DECODERS.get((build.backend, build.runtime), ())
    if build.decoder not in decoders:
        return f"no self-test for {build.backend}/{build.runtime}/{build.decoder}"
    return None


def open_accelerated(path: Path, build: Build) -> tuple[Backend, str]:
    """The build opened on its accelerator, and where it runs (for the result's detail). Raises
    :class:`~wardsight.errors.WardSightError` when it does not load (the runtime refuses it, a HEF for another
    HailoRT)."""
    if build.backend == "hailo":
        from accelerators.hailo import HailoPoseBackend

        hailo = HailoPoseBackend(path)
        health = hailo.health()
        runtime = hailo.runtime_version
        if build.runtime_version and (runtime is None or major_minor(runtime) != major_minor(build.runtime_version)):
            hailo.close()
            raise WardSightError(f"the HEF is for HailoRT {build.runtime_version}; this runtime is {runtime}")
        return hailo, f"on the {health['chip']} at {health['device_id']} (HailoRT {runtime})"
    from accelerators.coral import CoralDetector

    return CoralDetector(path, use_tpu=True), "on the Edge TPU"
