"""MediaPipe models (Apache-2.0) as published inside the mediapipe 0.10.14 wheel on PyPI.

Newer mediapipe wheels bundle no models. Only the wheel's files are needed, not the package, so the
wheel is downloaded for a fixed tag (cp311, manylinux2014 x86_64) whatever machine asks: a Pi on
Python 3.13 has no installable mediapipe 0.10.14 but reads the same files. One download serves every
model below when they are fetched together (``ArtifactStore.ensure_all``).
"""

from __future__ import annotations

from wardsight.fetch import Artifact, WheelSource

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.14"
MEDIAPIPE_PIP_ARGS = ("--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--implementation", "cp")
LICENCE = "Apache-2.0 (Google MediaPipe 0.10.14)"


def _mediapipe(name: str, member: str, sha256: str, size: int, description: str) -> Artifact:
    return Artifact(
        name=name,
        filename=member.rsplit("/", 1)[1],
        sha256=sha256,
        size=size,
        licence=LICENCE,
        description=description,
        sources=(WheelSource(MEDIAPIPE_REQUIREMENT, (member,), pip_args=MEDIAPIPE_PIP_ARGS),),
    )


FACE_FULL_RANGE = _mediapipe(
    "face-detection-full-range",
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
    "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    676_746,
    "BlazeFace full range: 192x192 input in [-1, 1], 2304 anchors x 16 (box + 6 keypoints); finds small faces",
)
FACE_SHORT_RANGE = _mediapipe(
    "face-detection-short-range",
    "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    229_714,
    "BlazeFace short range: 128x128 input in [-1, 1], 896 anchors x 16; close faces only",
)
PALM_DETECTION = _mediapipe(
    "palm-detection-lite",
    "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
    "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
    1_985_440,
    "Palm detection: 192x192 input in [0, 1], 2016 anchors x 18 (box + 7 keypoints)",
)
HAND_LANDMARK = _mediapipe(
    "hand-landmark-lite",
    "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
    "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
    2_071_597,
    "Hand landmarks: 224x224 input in [0, 1]; 21 x 3 landmarks, presence, handedness",
)

MEDIAPIPE_ARTIFACTS: tuple[Artifact, ...] = (FACE_FULL_RANGE, FACE_SHORT_RANGE, PALM_DETECTION, HAND_LANDMARK)
