"""The 17 COCO body keypoints every backend reports, and which of them count for each kind of zone.

Shared by the device (decoders, zones) and the device-config schema the server validates pushed configs with.
"""

from __future__ import annotations

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
KEYPOINT_INDEX = {name: i for i, name in enumerate(COCO_KEYPOINTS)}

# Which body parts count for each kind of zone (overridable per zone).
DEFAULT_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "door": ("left_ankle", "right_ankle", "left_hip", "right_hip"),
    "dispenser": ("left_wrist", "right_wrist"),
    "bed": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "floor": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "room": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
}
