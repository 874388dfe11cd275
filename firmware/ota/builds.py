"""Which build of a package this device can run: the backend it actually runs, and on a Hailo its chip and the
HailoRT version the HEF was compiled for.

The device describes itself as a :class:`DeviceTarget` (:func:`target_of` the backend running now: an accelerator
that fell back to the CPU is the CPU). :func:`choose` picks a build or raises :class:`Refused` with a report reason
code and a one-line detail. The rules for a HEF (a build with backend ``hailo``):

- **Chip.** A HEF runs on the architectures HailoRT maps its compiled-for architecture to (hailo-ai/hailort
  ``libhailort`` ``DeviceBase::hef_arch_to_device_compatible_archs`` and ``check_hef_is_compatible``): a
  ``hailo8`` HEF on a Hailo-8 only; a ``hailo8l`` HEF on a Hailo-8L or, with a "lower performance" warning, a
  Hailo-8; a ``hailo10h`` HEF on a Hailo-10H. Anything else fails with ``HailoRTHEFNotCompatibleWithDevice``
  (EDGE_APIS.md 2.7). An exact build is preferred. A HEF that names no chip is refused.
- **HailoRT version.** The HEF's compiled-for HailoRT ``major.minor`` must equal the device's (``hailo_platform``'s
  ``__version__``): Raspberry Pi pins hailort, the driver, the firmware and the HEFs as one release
  ("HEF files must match the runtime version", EDGE_APIS.md 2.0), and HailoRT 5.x runs Hailo-10 only. Patch
  releases may differ. A HEF that names no version is refused.

From the signed target's ``custom`` list (before downloading) only what it states is judged: a build there
without ``runtime_version`` passes on to the manifest's check after the download.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accelerators.base import Backend
from wardsight import modelpkg

# The HEF chips each device architecture loads, best first.
LOADS = {"hailo8": ("hailo8", "hailo8l"), "hailo8l": ("hailo8l",), "hailo10h": ("hailo10h",)}
CHIP_TEXT = {"hailo8": "Hailo-8", "hailo8l": "Hailo-8L", "hailo10h": "Hailo-10H"}


@dataclass(frozen=True)
class DeviceTarget:
    backend: str = "cpu"  # cpu, hailo, coral
    hardware: str | None = None  # on a Hailo: hailo8, hailo8l or hailo10h
    runtime_version: str | None = None  # on a Hailo: the HailoRT version, e.g. "4.23.0"

    def text(self) -> str:
        runs = self.backend + (f"/{self.hardware}" if self.hardware else "")
        return runs + (f" (HailoRT {self.runtime_version})" if self.runtime_version else "")


class Refused(Exception):
    """No build of the package can run here: ``code`` is the report's reason, ``detail`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def target_of(backend: Backend) -> DeviceTarget:
    """What ``backend`` runs now: an accelerator behind a :class:`~accelerators.fallback.FallbackBackend` that
    took over on the CPU is the CPU."""
    from accelerators.fallback import FallbackBackend

    if isinstance(backend, FallbackBackend):
        if backend.fallback_reason is not None:
            return DeviceTarget("cpu")
        backend = backend.primary
    name = str(getattr(backend, "name", "cpu"))
    if name == "hailo":
        return DeviceTarget("hailo", getattr(backend, "hardware", None), getattr(backend, "runtime_version", None))
    return DeviceTarget(name if name in ("coral", "imx500") else "cpu")


def backend_text(backend: str, hardware: str | None) -> str:
    runs = backend + (f"/{hardware}" if hardware else "")
    return f"this device runs {runs}; the package has no build for it"


def major_minor(version: str) -> tuple[int, ...]:
    return modelpkg.version_key(version)[:2]


def choose(builds: Sequence[modelpkg.Build], target: DeviceTarget) -> modelpkg.Build:
    """The manifest's build for ``target`` (see the module docstring), or :class:`Refused`."""
    fields = [b.model_dump() for b in builds]
    return builds[_pick(fields, target, complete=True)]


def check_signed(builds: Sequence[Any], target: DeviceTarget) -> None:
    """Judge the signed target's ``custom`` builds (dicts) before downloading: :class:`Refused` when what they
    state already rules this device out."""
    _pick([b for b in builds if isinstance(b, Mapping)], target, complete=False)


def _pick(builds: Sequence[Mapping[str, Any]], target: DeviceTarget, *, complete: bool) -> int:
    ours = [i for i, b in enumerate(builds) if b.get("backend") == target.backend]
    if target.backend != "hailo":
        for i in ours:
            if builds[i].get("hardware") in (None, target.hardware):
                return i
        raise Refused("no_build_for_backend", backend_text(target.backend, target.hardware))
    if not ours:
        raise Refused("no_build_for_backend", backend_text("hailo", target.hardware))
    if target.hardware not in LOADS or target.runtime_version is None:
        raise Refused("hailo_unidentified", f"this device's Hailo is not identified ({target.text()})")
    return _pick_hef(builds, ours, target, complete)


def _pick_hef(builds: Sequence[Mapping[str, Any]], ours: list[int], target: DeviceTarget, complete: bool) -> int:
    assert target.hardware is not None and target.runtime_version is not None
    loads = LOADS[target.hardware]
    seen: list[str] = []
    runtime_refused: list[str] = []
    for chip in loads:
        for i in ours:
            build = builds[i]
            if build.get("hardware") != chip:
                continue
            if "runtime_version" not in build and not complete:
                return i  # not stated in the signed target: the manifest says after the download
            version = build.get("runtime_version")
            if version is None:
                runtime_refused.append(f"a {chip} HEF that names no HailoRT version")
            elif major_minor(str(version)) != major_minor(target.runtime_version):
                runtime_refused.append(f"a {chip} HEF for HailoRT {version}")
            else:
                return i
    for i in ours:
        seen.append(str(builds[i].get("hardware") or "no chip named"))
    here = f"this device runs a {CHIP_TEXT[target.hardware]} on HailoRT {target.runtime_version}"
    if runtime_refused:
        return _refuse(
            "hef_for_another_hailort",
            f"{here}; the package has {', '.join(runtime_refused)} (a HEF loads on the HailoRT major.minor "
            "it was compiled for)",
        )
    return _refuse("hef_for_another_chip", f"{here}; the package's HEFs are for: {', '.join(sorted(set(seen)))}")


def _refuse(code: str, detail: str) -> int:
    raise Refused(code, detail)
