"""Self-test of a model file before the agent may switch to it: it loads, runs and answers sanely, in time.

The test runs in a **separate process** (:func:`run_selftest`), so a model file that crashes the runtime
(a corrupt flatbuffer can take LiteRT down with a segfault) or hangs it only fails the test: the agent
keeps running its current model. Inside that process, :func:`check_model`:

1. loads the file with the runtime its build names, exactly as the agent will (``CpuPoseBackend`` for a
   CPU/LiteRT MoveNet build, with the input settings from the package's manifest; a Hailo HEF or an Edge TPU
   model on its accelerator, :mod:`firmware.ota.selftest_accel`);
2. runs it on a built-in synthetic frame (:func:`test_frame`: made in code, no camera, no stored image);
3. checks the raw output: the decoder's shape (``[1, 6, 56]`` for MoveNet MultiPose), every value finite,
   every score in [0, 1]; and the decoded people: boxes inside the frame, keypoints finite;
4. checks each inference finished within ``max_invoke_seconds``.

``python -m firmware.ota.selftest MODEL [--build JSON]`` runs :func:`check_model` and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from accelerators.base import Backend
from accelerators.catalog import MOVENET_MULTIPOSE, ModelManifest
from accelerators.types import Person
from wardsight.fetch import Artifact
from wardsight.modelpkg import Build

SUPPORTED = {("cpu", "litert", "movenet_multipose")}
OUTPUT_SHAPE = {"movenet_multipose": (1, 6, 56)}
DEFAULT_MAX_INVOKE_SECONDS = 5.0
DEFAULT_TIMEOUT = 90.0


@dataclass(frozen=True)
class SelfTestResult:
    ok: bool
    reason: str  # "ok", or a report reason code: load_failed, bad_output, too_slow, timeout, crashed, unsupported
    detail: str
    seconds: float


def factory_build() -> Build:
    """The factory model's build, as a package manifest would describe it."""
    m = MOVENET_MULTIPOSE
    return Build(
        backend="cpu",
        runtime="litert",
        file=m.artifact.filename,
        sha256=m.artifact.sha256,
        size=m.artifact.size,
        input={"long_side": m.input_long_side, "multiple": m.input_multiple, "dtype": m.input_dtype},
        decoder=m.decoder,
    )


def pose_manifest(build: Build, name: str = "ota-model", version: str = "0") -> ModelManifest:
    """The catalog description ``CpuPoseBackend`` takes, made from a package's build."""
    base = MOVENET_MULTIPOSE
    long_side = build.input.get("long_side", base.input_long_side)
    multiple = build.input.get("multiple", base.input_multiple)
    return ModelManifest(
        name=name,
        version=version,
        task="pose",
        runtime=build.runtime,
        input_long_side=int(long_side) if isinstance(long_side, int | float) else base.input_long_side,
        input_multiple=int(multiple) if isinstance(multiple, int | float) else base.input_multiple,
        input_dtype=str(build.input.get("dtype", base.input_dtype)),
        decoder=build.decoder,
        artifact=Artifact(name, build.file, build.sha256, build.size, "from an OTA package", ()),
    )


def test_frame(width: int = 640, height: int = 480) -> npt.NDArray[np.uint8]:
    """A deterministic RGB frame: a gradient floor, a wall, a bright upright figure-sized block, a head."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    frame[..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    frame[..., 2] = 96
    frame[: height // 2] //= 2  # the wall, darker than the floor
    cx, top = width // 2, height // 6
    body_w, body_h = width // 10, height // 2
    frame[top + body_h // 5 : top + body_h, cx - body_w // 2 : cx + body_w // 2] = (200, 60, 60)
    head = (x - cx) ** 2 + (y - (top + body_h // 10)) ** 2 <= (body_w // 3) ** 2
    frame[head] = (230, 190, 160)
    return frame


def _fail(reason: str, detail: str, started: float) -> SelfTestResult:
    return SelfTestResult(False, reason, detail[:300], round(time.perf_counter() - started, 3))


def _finite_scores(values: npt.NDArray[np.float32]) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values >= 0.0) and np.all(values <= 1.0))


class _Failed(Exception):
    """A check that failed: the report reason code and what was seen."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _unsupported(build: Build) -> str | None:
    """Why there is no self-test for ``build`` (and so no switching to it), or None."""
    if (build.backend, build.runtime, build.decoder) not in SUPPORTED:
        return f"no self-test for {build.backend}/{build.runtime}/{build.decoder}"
    if str(build.input.get("dtype", "uint8")) != "uint8":
        return f"input dtype {build.input.get('dtype')} is not uint8"
    if build.input.get("multiple", 32) != 32:  # the agent's letterbox rounds to multiples of 32
        return f"input multiple {build.input.get('multiple')} is not 32"
    return None


def check_model(
    path: Path, build: Build, *, threads: int = 1, max_invoke_seconds: float = DEFAULT_MAX_INVOKE_SECONDS
) -> SelfTestResult:
    """Load ``path`` as ``build`` says and check it on the built-in frame (in this process: see the module doc)."""
    started = time.perf_counter()
    if build.backend in ("hailo", "coral"):
        return _check_accelerated(path, build, max_invoke_seconds, started)
    why = _unsupported(build)
    if why is not None:
        return _fail("unsupported", why, started)
    from ai_edge_litert.interpreter import Interpreter

    from accelerators.cpu import CpuPoseBackend
    from accelerators.litert import ModelLoadError

    manifest = pose_manifest(build)
    frame = test_frame()
    try:
        backend = CpuPoseBackend(path, manifest=manifest, num_threads=threads, min_score=0.0)
        raw_interp = Interpreter(model_path=str(path), num_threads=threads)
    except (ModelLoadError, ValueError, RuntimeError) as exc:
        return _fail("load_failed", str(exc), started)
    try:
        slowest = _check_raw_output(raw_interp, frame, manifest.input_long_side, build.decoder)
        people, agent_slowest = _check_people(backend, frame)
        slowest = max(slowest, agent_slowest)
        if slowest > max_invoke_seconds:
            return _fail("too_slow", f"an inference took {slowest:.2f} s (limit {max_invoke_seconds:.2f} s)", started)
    except _Failed as exc:
        return _fail(exc.reason, exc.detail, started)
    except (ValueError, RuntimeError) as exc:
        return _fail("bad_output", f"inference failed: {exc}", started)
    finally:
        backend.close()
    detail = f"{len(people)} people on the test frame, slowest inference {slowest * 1000:.0f} ms"
    return SelfTestResult(True, "ok", detail, round(time.perf_counter() - started, 3))


def _check_accelerated(path: Path, build: Build, max_invoke_seconds: float, started: float) -> SelfTestResult:
    """A Hailo or Coral build, on its accelerator (:mod:`firmware.ota.selftest_accel`)."""
    from firmware.ota import selftest_accel
    from wardsight.errors import WardSightError

    why = selftest_accel.unsupported(build)
    if why is not None:
        return _fail("unsupported", why, started)
    try:
        backend, where = selftest_accel.open_accelerated(path, build)
    except WardSightError as exc:
        return _fail("load_failed", str(exc), started)
    try:
        people, slowest = _check_people(backend, test_frame())
    except _Failed as exc:
        return _fail(exc.reason, exc.detail, started)
    except (ValueError, RuntimeError, WardSightError) as exc:
        return _fail("bad_output", f"inference failed: {exc}", started)
    finally:
        backend.close()
    if slowest > max_invoke_seconds:
        return _fail("too_slow", f"an inference took {slowest:.2f} s (limit {max_invoke_seconds:.2f} s)", started)
    detail = f"{len(people)} people on the test frame {where}, slowest inference {slowest * 1000:.0f} ms"
    return SelfTestResult(True, "ok", detail, round(time.perf_counter() - started, 3))


def _check_raw_output(interp: Any, frame: npt.NDArray[np.uint8], long_side: int, decoder: str) -> float:
    """The raw output, on exactly the tensor the agent's preprocessing makes: shape, finite, scores in [0, 1].
    Returns how long the inference took."""
    from accelerators import movenet

    inputs = interp.get_input_details()
    if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["dtype"] != np.uint8:
        raise _Failed("bad_input", f"input is not one [1, H, W, 3] uint8 tensor: {inputs[:2]}")
    box = movenet.Letterbox.for_frame(frame.shape[1], frame.shape[0], long_side)
    canvas = np.zeros((1, box.in_h, box.in_w, 3), dtype=np.uint8)
    box.apply(frame, canvas[0])
    interp.resize_tensor_input(inputs[0]["index"], list(canvas.shape))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], canvas)
    t0 = time.perf_counter()
    interp.invoke()
    took = time.perf_counter() - t0
    outputs = interp.get_output_details()
    raw = np.asarray(interp.get_tensor(outputs[0]["index"]), dtype=np.float32)
    want = OUTPUT_SHAPE[decoder]
    if len(outputs) != 1 or tuple(raw.shape) != want:
        raise _Failed("bad_output", f"output shape {[tuple(o['shape']) for o in outputs]}, expected {want}")
    if not np.all(np.isfinite(raw)):
        raise _Failed("bad_output", "output holds NaN or infinity")
    rows = raw[0]
    scores = np.concatenate([rows[:, 2:51:3].ravel(), rows[:, 55]])
    if not _finite_scores(scores):
        raise _Failed("bad_output", f"scores outside [0, 1]: {scores.min():.3g}..{scores.max():.3g}")
    return took


def _check_people(backend: Backend, frame: npt.NDArray[np.uint8]) -> tuple[list[Person], float]:
    """The agent's own path: ``backend.detect`` twice (the first call also sizes the tensors); every box inside
    the frame, keypoints finite. Returns the people and the slowest of the two inferences."""
    slowest = 0.0
    people: list[Person] = []
    for _ in range(2):
        t0 = time.perf_counter()
        people = backend.detect(frame)
        slowest = max(slowest, time.perf_counter() - t0)
    h, w = frame.shape[:2]
    for person in people:
        x1, y1, x2, y2 = person.box
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h) or not math.isfinite(person.score):
            raise _Failed("bad_output", f"a person's box {person.box} is outside the frame")
        if not np.all(np.isfinite(person.keypoints)) or not _finite_scores(person.keypoints[:, 2]):
            raise _Failed("bad_output", "a person's keypoints are not finite or scores outside [0, 1]")
    return people, slowest


def run_selftest(
    path: Path,
    build: Build,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    threads: int = 1,
    max_invoke_seconds: float = DEFAULT_MAX_INVOKE_SECONDS,
) -> SelfTestResult:
    """:func:`check_model` in a child process, killed after ``timeout`` seconds (a crash or hang fails the test)."""
    started = time.perf_counter()
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    args = [
        sys.executable,
        "-m",
        "firmware.ota.selftest",
        str(path),
        "--build",
        build.model_dump_json(),
        "--threads",
        str(threads),
        "--max-invoke-seconds",
        str(max_invoke_seconds),
    ]
    try:
        done = subprocess.run(
            args, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired:
        return _fail("timeout", f"the self-test did not finish within {timeout:.0f} s", started)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return _fail("crashed", f"the self-test process exited with {done.returncode}: {tail[0]}", started)
    try:
        fields = json.loads(lines[-1])
        ok, reason, detail = bool(fields["ok"]), str(fields["reason"]), str(fields["detail"])
    except (ValueError, KeyError, TypeError):
        return _fail("crashed", f"the self-test printed no result: {lines[-1][:100]}", started)
    return SelfTestResult(ok, reason, detail, round(time.perf_counter() - started, 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.ota.selftest", description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--build", help="the build's JSON from the package manifest (default: the factory model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-invoke-seconds", type=float, default=DEFAULT_MAX_INVOKE_SECONDS)
    args = parser.parse_args(argv)
    build = Build.model_validate_json(args.build) if args.build else factory_build()
    result = check_model(args.model, build, threads=args.threads, max_invoke_seconds=args.max_invoke_seconds)
    print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
