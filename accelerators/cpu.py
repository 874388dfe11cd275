"""The CPU backend: MoveNet MultiPose on LiteRT (ai-edge-litert)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from accelerators import movenet
from accelerators.base import Backend, Frame
from accelerators.catalog import MOVENET_MULTIPOSE, ModelManifest
from accelerators.litert import ModelLoadError
from accelerators.types import Person


class CpuPoseBackend(Backend):
    name = "cpu"

    def __init__(
        self,
        model_path: Path,
        *,
        manifest: ModelManifest = MOVENET_MULTIPOSE,
        num_threads: int = 2,
        min_score: float = 0.15,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.manifest = manifest
        self.min_score = min_score
        try:
            self._interp = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load model {model_path}: {exc}") from None
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._box: movenet.Letterbox | None = None
        self._canvas: np.ndarray | None = None

    def _prepare(self, frame_w: int, frame_h: int) -> movenet.Letterbox:
        box = self._box
        if box is None or (box.frame_w, box.frame_h) != (frame_w, frame_h):
            box = movenet.Letterbox.for_frame(frame_w, frame_h, self.manifest.input_long_side)
            self._interp.resize_tensor_input(self._input["index"], [1, box.in_h, box.in_w, 3])
            self._interp.allocate_tensors()
            self._input = self._interp.get_input_details()[0]
            self._output = self._interp.get_output_details()[0]
            self._canvas = np.zeros((1, box.in_h, box.in_w, 3), dtype=np.uint8)
            self._box = box
        return box

    def detect(self, frame: Frame) -> list[Person]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        t0 = time.perf_counter()
        box = self._prepare(frame.shape[1], frame.shape[0])
        canvas = self._canvas
        assert canvas is not None
        box.apply(frame, canvas[0])
        self._interp.set_tensor(self._input["index"], canvas)
        t1 = time.perf_counter()
        self._interp.invoke()
        t2 = time.perf_counter()
        raw = self._interp.get_tensor(self._output["index"])[0]
        people = movenet.decode(raw, box, self.min_score)
        self.last_timings = {"preprocess": t1 - t0, "invoke": t2 - t1, "decode": time.perf_counter() - t2}
        return people
