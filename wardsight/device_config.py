"""The device agent's configuration schema (one validated model; file + WARDSIGHT_DEVICE_* overrides).

Part of the shared contract: the device loads it, and the fleet server validates configurations it pushes
with the same model before a job carries them to the device, which validates again before applying.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from wardsight.keypoints import DEFAULT_KEYPOINTS, KEYPOINT_INDEX
from wardsight.settings import StrictModel, load_config
from wardsight.wire import Identifier

ENV_PREFIX = "WARDSIGHT_DEVICE_"
# What a reboot job runs: the image's root helper unit, which its polkit rule lets the agent's user start. Where
# that unit does not exist (a laptop) the job fails cleanly ("reboot_command_failed") instead of rebooting.
DEFAULT_REBOOT_COMMAND = ("systemctl", "--no-block", "start", "wardsight-reboot.service")

Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]


def default_name() -> str:
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:64].strip("-.")
    return name or "wardsight-device"


class SourceConfig(StrictModel):
    kind: Literal["file", "camera", "stream", "picamera", "imx500"] = Field(
        "file",
        description="file: a video file; camera: USB/V4L2 by index; stream: an RTSP/HTTP network camera;"
        " picamera: a Pi camera module; imx500: the Raspberry Pi AI Camera (camera and person detector in one).",
    )
    url: str | None = Field(None, description="rtsp:// or http(s):// URL for kind=stream (credentials allowed).")
    stall_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0
    path: Path | None = Field(None, description="Video file for kind=file; the demo footage if unset.")
    camera_index: Annotated[int, Field(ge=0, le=63)] = 0
    size: tuple[Annotated[int, Field(ge=64, le=4096)], Annotated[int, Field(ge=64, le=4096)]] = (1280, 720)
    fps: Annotated[float, Field(gt=0, le=120, description="Pi camera frame rate.")] = 15.0
    loop: bool = Field(False, description="Start the file again at its end.")
    realtime: bool = Field(True, description="Pace a file at its frame rate, dropping stale frames.")
    host_frames: bool = Field(
        True,
        description="kind=imx500 only: false is sensor-only mode, where no image ever reaches this computer (the"
        " AI Camera's network finds people and their pose in the sensor; the agent reads only its metadata).",
    )

    @model_validator(mode="after")
    def _sensor_only_needs_the_ai_camera(self) -> SourceConfig:
        if not self.host_frames and self.kind != "imx500":
            raise ValueError(
                f"host_frames = false (sensor-only) needs kind = imx500, the AI Camera that runs the network in"
                f" the sensor; a {self.kind} source always hands images to the agent"
            )
        return self


# ---- zones and privacy regions ---------------------------------------------------------------------------

ZoneKind = Literal["door", "dispenser", "bed", "floor", "room"]
PolygonPoints = Annotated[list[Point], Field(min_length=3, max_length=64)]
RegionName = Annotated[str, Field(min_length=1, max_length=64)]


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``p``, collinear with ``a``-``b``, lies on that segment (ends included)."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_meet(p1: tuple[float, float], p2: tuple[float, float], q1: tuple[float, float],
                   q2: tuple[float, float]) -> bool:  # fmt: skip
    """The closed segments p1-p2 and q1-q2 cross or touch."""
    d1, d2, d3, d4 = _cross(q1, q2, p1), _cross(q1, q2, p2), _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return any(
        d == 0 and _on_segment(p, a, b)
        for d, p, a, b in ((d1, p1, q1, q2), (d2, p2, q1, q2), (d3, q1, p1, p2), (d4, q2, p1, p2))
    )


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why the outline ``points`` (in order, closed back to the first) is not a simple polygon, or None if it is.

    Two edges that are not neighbours may not cross or touch, and an edge may not run back along the one before it.
    A point repeated right after itself (or a last point equal to the first) is ignored. An outline with no area
    (all points on one line) is left to the dry run's "has no area". Points are numbered from 1, as given.
    """
    ring: list[tuple[int, tuple[float, float]]] = []
    for number, (x, y) in enumerate(points, start=1):
        if not ring or ring[-1][1] != (x, y):
            ring.append((number, (float(x), float(y))))
    while len(ring) > 1 and ring[0][1] == ring[-1][1]:
        ring.pop()
    n = len(ring)
    if n < 3 or all(_cross(ring[0][1], ring[i][1], ring[i + 1][1]) == 0 for i in range(1, n - 1)):
        return None
    edges = [(ring[i], ring[(i + 1) % n]) for i in range(n)]
    name = [f"the edge from point {a[0]} to point {b[0]}" for a, b in edges]
    for i in range(n):
        for j in range(i + 1, n):
            (_, p1), (_, p2) = edges[i]
            (_, q1), (_, q2) = edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours: they share one end
                first, second = (i, j) if j == i + 1 else (j, i)
                start, shared, end = edges[first][0][1], edges[first][1][1], edges[second][1][1]
                back = (start[0] - shared[0]) * (end[0] - shared[0]) + (start[1] - shared[1]) * (end[1] - shared[1])
                if _cross(shared, start, end) == 0 and back > 0:
                    return f"its outline crosses itself: {name[second]} runs back along {name[first]}"
            elif _segments_meet(p1, p2, q1, q2):
                return f"its outline crosses itself: {name[i]} crosses {name[j]}"
    return None


def _simple(what: str, points: Sequence[Sequence[float]]) -> None:
    problem = polygon_problem(points)
    if problem is not None:
        raise ValueError(f"{what}: {problem} (give the points in order around the shape)")


class PrivacyRegion(StrictModel):
    """A polygon, in frame-relative coordinates (0..1), zeroed in every frame at capture."""

    name: RegionName
    polygon: PolygonPoints


class ZoneConfig(StrictModel):
    """A named polygon (frame-relative) and which keypoints put a person in it."""

    name: Identifier
    kind: ZoneKind
    polygon: PolygonPoints
    keypoints: list[str] = Field(default_factory=list, description="COCO keypoint names; empty: the kind's default.")
    min_keypoints: Annotated[int, Field(ge=1, le=17)] = 1
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.3

    @field_validator("keypoints")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [k for k in value if k not in KEYPOINT_INDEX]
        if unknown:
            raise ValueError(f"unknown keypoint '{unknown[0]}' (COCO names such as left_wrist)")
        return value



def outline_problem(config: DeviceConfig) -> str | None:
    """The first zone or privacy region whose outline crosses itself, said plainly; None when all are simple.

    Checked on what is new (a pushed configuration, on the server and again on the device, and the zone editor's
    shapes), never when a device loads its own file: a device whose file holds a shape drawn before this check
    keeps starting (the mask of a self-crossing region still covers its area), and the next edit fixes it.
    """
    shapes = [(f"privacy region '{r.name}'", r.polygon) for r in config.privacy_regions]
    shapes += [(f"zone '{z.name}'", z.polygon) for z in config.zones]
    for what, points in shapes:
        problem = polygon_problem(points)
        if problem is not None:
            return f"{what}: {problem} (give the points in order around the shape)"
    return None


# The console's zone editor changes only zones and privacy regions: a push_config job with params {MERGE_PARAM:
# MERGE_ZONES} whose config is a LayoutEdit (JSON), which the device applies to its own device.toml
# (firmware/jobs/layout.py). A device that does not know the mode refuses it (JSON is not TOML): it never replaces
# its file with the edit.
MERGE_PARAM = "merge"
MERGE_ZONES = "zones"
REPORTED_DIGITS = 4  # the device reports its polygons to the console rounded to this many decimals


class ZoneShape(StrictModel):
    """A zone as the editor draws it; a changed zone keeps its other settings (keypoints, scores) on the device."""

    name: Identifier
    kind: ZoneKind
    polygon: PolygonPoints

    @model_validator(mode="after")
    def _simple_outline(self) -> ZoneShape:
        _simple(f"zone '{self.name}'", self.polygon)
        return self


class RegionShape(StrictModel):
    """A new privacy region."""

    name: RegionName
    polygon: PolygonPoints

    @model_validator(mode="after")
    def _simple_outline(self) -> RegionShape:
        _simple(f"privacy region '{self.name}'", self.polygon)
        return self


class RegionRef(StrictModel):
    """One of the device's privacy regions, by its polygon as the device reported it (its name stays on the
    device): the device's region whose every point is within one reported unit (10^-REPORTED_DIGITS)."""

    polygon: PolygonPoints


class ZoneChanges(StrictModel):
    add: Annotated[list[ZoneShape], Field(max_length=64)] = Field(default_factory=list)  # names not on the device
    change: Annotated[list[ZoneShape], Field(max_length=64)] = Field(default_factory=list)  # new kind and polygon
    remove: Annotated[list[Identifier], Field(max_length=64)] = Field(default_factory=list)


class RegionChanges(StrictModel):
    add: Annotated[list[RegionShape], Field(max_length=64)] = Field(default_factory=list)
    remove: Annotated[list[RegionRef], Field(max_length=64)] = Field(default_factory=list)


class LayoutEdit(StrictModel):
    """Zones and privacy regions to add, change and remove on one device; nothing else of its configuration.

    The device refuses the whole edit if a zone to change or remove is not there, a zone to add already is, or a
    privacy region to remove is not there (its layout changed since the editor loaded it).
    """

    v: Literal[1] = 1
    zones: ZoneChanges = Field(default_factory=ZoneChanges)
    privacy_regions: RegionChanges = Field(default_factory=RegionChanges)

    @model_validator(mode="after")
    def _one_change_per_zone(self) -> LayoutEdit:
        z, r = self.zones, self.privacy_regions
        names = [s.name for s in z.add] + [s.name for s in z.change] + list(z.remove)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"zone '{twice[0]}' is named more than once (add, change or remove it once)")
        if not (names or r.add or r.remove):
            raise ValueError("the edit changes nothing")
        return self


class OccupancyConfig(StrictModel):
    stable_seconds: Annotated[float, Field(ge=0, le=60, description="A count must hold this long (s).")] = 1.0
    min_score: Annotated[float, Field(ge=0, le=1, description="Person confidence to be counted.")] = 0.15
    zones: list[Identifier] = Field(default_factory=list, description="Zones counted separately (zone_index order).")
    patient_zone: Identifier | None = Field(None, description="The patient's bed zone, for patient-alone time.")
    patient_alone_seconds: Annotated[float, Field(gt=0, le=86400, description="Alone this long alerts (s).")] = 1800
    max_people: Annotated[int, Field(ge=1, le=50)] | None = Field(None, description="Over-capacity above this.")
    visiting_hours: tuple[Annotated[float, Field(ge=0, le=24)], Annotated[float, Field(ge=0, le=24)]] | None = None
    after_hours_max_people: Annotated[int, Field(ge=1, le=50)] = 2
    utc_offset_hours: Annotated[float, Field(ge=-14, le=14, description="Local time = UTC + this (h).")] = 0.0
    cooldown_seconds: Annotated[float, Field(ge=0, le=86400)] = 600.0


class FallSettings(StrictModel):
    """The fall app (firmware/apps/fall.py): descents to the floor from any posture. A descent that ends in a zone of
    kind "bed" is never a fall; one that ends in a zone of kind "floor" always lands on the floor."""

    enabled: bool = True
    window_seconds: Annotated[float, Field(gt=0, le=10, description="Up to down within (s).")] = 2.5
    min_drop: Annotated[float, Field(gt=0, le=2, description="Body-centre drop (body heights).")] = 0.2
    confirm_seconds: Annotated[float, Field(ge=0, le=30, description="Down this long before alerting (s).")] = 0.5
    settle_seconds: Annotated[float, Field(ge=0, le=30, description="Not up this long before alerting (s).")] = 1.5
    still_down_seconds: Annotated[float, Field(gt=0, le=3600, description="Follow-up after (s).")] = 60.0
    get_up_seconds: Annotated[float, Field(gt=0, le=60, description="Standing this long resolves (s).")] = 2.0
    attended_seconds: Annotated[float, Field(gt=0, le=600, description="Someone beside this long resolves (s).")] = 5.0


class BedExitSettings(StrictModel):
    """Bed-exit warnings, per room policy (high fall-risk rooms); needs a zone of kind "bed"."""

    enabled: bool = False
    bed_zone: Identifier | None = Field(None, description="Name of the bed zone; default: the first zone of kind bed.")
    memory_seconds: Annotated[float, Field(gt=0, le=86400, description="Lying in bed within (s).")] = 600.0


class HygieneSettings(StrictModel):
    """Hand hygiene at the door; zones default to every zone of kind door, dispenser and bed."""

    enabled: bool = False
    door_zones: list[Identifier] | None = None
    dispenser_zones: list[Identifier] | None = None
    patient_zones: list[Identifier] | None = None
    rub_seconds: Annotated[float, Field(gt=0, le=120, description="Rubbing needed (s); WHO: 20-30.")] = 20.0
    dispenser_dwell_seconds: Annotated[float, Field(gt=0, le=30, description="Wrists at the dispenser (s).")] = 1.0
    lost_seconds: Annotated[float, Field(gt=0, le=60, description="Unseen this long: unknown (s).")] = 3.0
    use_hands: bool = Field(True, description="Use hand landmarks (runs the hand models) besides pose wrists.")


class MaskSettings(StrictModel):
    """Mask compliance; alerts only where the room policy requires masks. Runs the face models."""

    enabled: bool = False
    masks_required: bool = False
    grace_seconds: Annotated[float, Field(ge=0, le=3600, description="Unmasked this long alerts (s).")] = 30.0
    window_seconds: Annotated[float, Field(gt=0, le=86400, description="Counts per window (s).")] = 300.0
    cooldown_seconds: Annotated[float, Field(ge=0, le=86400)] = 300.0
    face_every_frames: Annotated[int, Field(ge=1, le=100, description="Run the face models every Nth frame.")] = 5


class AcceleratorSettings(StrictModel):
    """Which inference backend runs the pose model. The CPU is always the fallback."""

    kind: Literal["auto", "cpu", "hailo", "coral"] = Field(
        "auto", description="auto: a Hailo or Coral when one is present and has a model file below, else the CPU."
    )
    hailo_hef: Path | None = Field(None, description="YOLOv8-pose HEF compiled for this chip (hailo8 or hailo8l).")
    coral_model: Path | None = Field(None, description="Edge TPU compiled person detector (.tflite).")
    imx500_network: Path | None = Field(
        None, description="AI Camera network firmware (.rpk); default the YOLOv8n pose network from imx500-models."
    )


class UpdateGates(StrictModel):
    """What a new model or system must show before the device keeps it (the self-test, the trial's health check).
    The defaults suit a Raspberry Pi 4/5 on its CPU; a slower device (a heavy model, an emulated one) needs longer."""

    health_frames: Annotated[int, Field(ge=1, le=10000, description="Frames a trial must process.")] = 30
    health_seconds: Annotated[float, Field(gt=0, le=86400, description="... within this (s).")] = 120.0
    selftest_timeout: Annotated[float, Field(gt=0, le=3600, description="The self-test's time limit (s).")] = 90.0
    max_invoke_seconds: Annotated[float, Field(gt=0, le=600, description="Slowest self-test inference (s).")] = 5.0


class DeviceConfig(StrictModel):
    name: Identifier = Field(default_factory=default_name)
    server_url: str = Field("http://127.0.0.1:8765", description="Fleet server base URL.")
    model: str = "movenet-multipose"
    accelerator: AcceleratorSettings = Field(default_factory=AcceleratorSettings)
    threads: Annotated[int, Field(ge=1, le=16)] = 2
    min_person_score: Annotated[float, Field(ge=0, le=1)] = 0.15
    model_mirrors: list[Path] = Field(default_factory=list, description="Offline mirror directories.")
    source: SourceConfig = Field(default_factory=SourceConfig)
    privacy_regions: list[PrivacyRegion] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)
    occupancy: OccupancyConfig = Field(default_factory=OccupancyConfig)
    fall: FallSettings = Field(default_factory=FallSettings)
    bed_exit: BedExitSettings = Field(default_factory=BedExitSettings)
    mask: MaskSettings = Field(default_factory=MaskSettings)
    hand_hygiene: HygieneSettings = Field(default_factory=HygieneSettings)
    heartbeat_seconds: Annotated[float, Field(ge=0.05, le=3600, description="Health report interval.")] = 30.0
    updates: UpdateGates = Field(default_factory=UpdateGates)
    reboot_command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=32)] = Field(
        default_factory=lambda: list(DEFAULT_REBOOT_COMMAND),
        description="What a reboot job runs (program and arguments, no shell). Local to the device: a pushed"
        " configuration that changes it is refused.",
    )

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _references(self) -> DeviceConfig:
        """Zone names used by the apps must exist; a zone must be enterable; visiting hours must be a range."""
        names = {z.name for z in self.zones}
        used = [("occupancy.zones", n) for n in self.occupancy.zones] + [
            ("occupancy.patient_zone", self.occupancy.patient_zone),
            ("bed_exit.bed_zone", self.bed_exit.bed_zone),
        ]
        h = self.hand_hygiene
        for key in ("door_zones", "dispenser_zones", "patient_zones"):
            used += [(f"hand_hygiene.{key}", n) for n in getattr(h, key) or []]
        for key, name in used:
            if name is not None and name not in names:
                raise ValueError(
                    f"{key} names zone '{name}', which is not among the zones ({', '.join(sorted(names))})"
                )
        for z in self.zones:
            parts = z.keypoints or DEFAULT_KEYPOINTS.get(z.kind, ())
            if z.min_keypoints > len(parts):
                raise ValueError(
                    f"zone {z.name}: min_keypoints {z.min_keypoints} but only {len(parts)} keypoints count"
                )
        hours = self.occupancy.visiting_hours
        if hours is not None and hours[0] == hours[1]:
            raise ValueError("occupancy.visiting_hours must be two different hours")
        return self


def load_device_config(data_dir: Path, path: Path | None, environ: Mapping[str, str]) -> DeviceConfig:
    """Load ``path`` (or ``<data dir>/device.toml`` if it exists) with environment overrides."""
    if path is None and (data_dir / "device.toml").is_file():
        path = data_dir / "device.toml"
    return load_config(DeviceConfig, path=path, env_prefix=ENV_PREFIX, environ=environ)
