"""The accelerators an OTA self-test child process sees in tests: what ``$FAKE_HAILO_WORLD`` names for the fake
``hailo_platform`` (a Hailo-8L on HailoRT 4.23 with HEFs known by their bytes) and what the fake Edge TPU's
``sitecustomize`` (tests/device/fakes/edgetpu_site) installs. Imported by the test and by the child alike."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

IN = 640
RUNTIME = "4.23.0"  # the fake hailo_platform's __version__


def hef_bytes(chip: str, runtime: str = RUNTIME) -> bytes:
    """The bytes of a fake HEF "compiled for" ``chip`` (a HEF is identified by its bytes: see the fake)."""
    return f"fake HEF: yolov8s_pose for {chip}, HailoRT {runtime}\n".encode() * 16


def pose_hef(fake: ModuleType, arch: Any) -> Any:
    """A YOLOv8-pose HEF (nine float outputs) whose "network" sees nobody: a model that loads and answers sanely."""
    specs = []
    n = 40
    for stride in (32, 16, 8):
        side = IN // stride
        for channels in (64, 1, 51):
            native = fake.FormatType.FLOAT32
            specs.append(fake.FakeStreamSpec(f"yolov8s_pose/conv{n}", (side, side, channels), native))
            n += 1

    def infer(tensor: np.ndarray) -> dict[str, np.ndarray]:
        return {s.name: np.zeros(s.shape, dtype=np.float32) for s in specs}

    return fake.FakeHef(arch, (IN, IN, 3), specs, infer)


def hailo8l_world(fake: ModuleType) -> None:
    """A Hailo-8L; the hailo8l and the hailo8 HEF of :func:`hef_bytes` load as what they are."""
    arch = fake.DeviceArchitectureTypes
    fake.add_device("0001:01:00.0", arch.HAILO8L)
    fake.register_hef_content(hef_bytes("hailo8l"), pose_hef(fake, arch.HAILO8L))
    fake.register_hef_content(hef_bytes("hailo8"), pose_hef(fake, arch.HAILO8))


class FakeDelegate:
    def __init__(self, library: str, options: dict[str, Any] | None) -> None:
        self.library, self.options = library, options


def install_fake_edgetpu() -> None:
    """An Edge TPU present: ``load_delegate("libedgetpu.so.1")`` gives a delegate; an interpreter handed it runs
    the model on the CPU (as test_coral's fake does: a model without ``edgetpu-custom-op`` computes the same)."""
    from ai_edge_litert import interpreter as litert

    real = litert.Interpreter

    def load_delegate(library: str, options: dict[str, Any] | None = None) -> FakeDelegate:
        if library != "libedgetpu.so.1":
            raise ValueError(f"Failed to load delegate from {library}\n")
        return FakeDelegate(library, options)

    def interpreter(model_path: Any = None, model_content: Any = None, experimental_delegates: Any = None,
                    num_threads: Any = None) -> Any:  # fmt: skip
        if not all(isinstance(d, FakeDelegate) for d in experimental_delegates or []):
            raise ValueError("not an Edge TPU delegate")
        return real(model_path=model_path, model_content=model_content, num_threads=num_threads)

    litert.load_delegate = load_delegate  # type: ignore[assignment]
    litert.Interpreter = interpreter  # type: ignore[assignment,misc]
