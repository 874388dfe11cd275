"""Whether a configuration change weakens a device's privacy, and how to say what changed (shared contract).

The fleet server classifies every ``push_config`` with these functions before it accepts one, and the device
decides again with them before it applies one, so both read "privacy-reducing" the same way. A change is
**privacy-reducing** when

- a privacy region before it is not covered, after it, by one privacy region that contains it: the region was
  removed, shrunk or moved (renaming a region, or growing it, is not a reduction); or
- the camera source changes: another kind, another stream (its URL without the credentials: a rotated camera
  password is no new camera), another video file, another camera index, or the AI Camera's sensor-only mode
  turned off (images would reach the device's memory).

Polygons are frame-relative (0..1), so a polygon's area is its share of the frame. Containment allows
:data:`TOLERANCE` (the precision the device reports its polygons in), so a region as the console read it back
still counts as the region the device has. Everything here is pure (no I/O).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wardsight.device_config import REPORTED_DIGITS, DeviceConfig, SourceConfig

TOLERANCE = 10.0**-REPORTED_DIGITS + 1e-9

Pt = tuple[float, float]


@dataclass(frozen=True)
class Region:
    """A privacy region by name (``None``: a region the device reported, whose name stays on the device)."""

    name: str | None
    polygon: tuple[Pt, ...]

    @staticmethod
    def of(name: str | None, polygon: Sequence[Sequence[float]]) -> Region:
        return Region(name, tuple((float(p[0]), float(p[1])) for p in polygon))

    @property
    def area(self) -> float:
        return polygon_area(self.polygon)

    def label(self, index: int) -> str:
        return f"'{self.name}'" if self.name is not None else f"#{index + 1} (as the device reported it)"


def regions_of(config: DeviceConfig) -> list[Region]:
    return [Region.of(r.name, r.polygon) for r in config.privacy_regions]


# ---- geometry -------------------------------------------------------------------------------------------------


def polygon_area(points: Sequence[Pt]) -> float:
    """The polygon's area (shoelace; a frame-relative polygon: its share of the frame)."""
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    return abs(twice) / 2.0


def _cross(o: Pt, a: Pt, b: Pt) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _distance_to_segment(p: Pt, a: Pt, b: Pt) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2))
    qx, qy = a[0] + t * dx, a[1] + t * dy
    return float(((p[0] - qx) ** 2 + (p[1] - qy) ** 2) ** 0.5)


def _edges(poly: Sequence[Pt]) -> list[tuple[Pt, Pt]]:
    return [(poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))]


def _on_boundary(p: Pt, poly: Sequence[Pt], eps: float) -> bool:
    return any(_distance_to_segment(p, a, b) <= eps for a, b in _edges(poly))


def _strictly_inside(p: Pt, poly: Sequence[Pt]) -> bool:
    """Even-odd ray casting (the caller handles points on the boundary)."""
    inside = False
    for a, b in _edges(poly):
        if (a[1] > p[1]) != (b[1] > p[1]):
            x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            if p[0] < x:
                inside = not inside
    return inside


def _inside_or_on(p: Pt, poly: Sequence[Pt], eps: float) -> bool:
    return _on_boundary(p, poly, eps) or _strictly_inside(p, poly)


def _cross_properly(p1: Pt, p2: Pt, q1: Pt, q2: Pt, eps: float) -> bool:
    """The segments cross at a point inside both (not merely touching within ``eps``)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if not ((d1 > 0 > d2) or (d1 < 0 < d2)) or not ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return False
    # Crossing near an end (within eps of the other segment) is touching, as rounding makes it.
    return not any(
        _distance_to_segment(p, a, b) <= eps for p, a, b in ((p1, q1, q2), (p2, q1, q2), (q1, p1, p2), (q2, p1, p2))
    )


def contains(outer: Sequence[Pt], inner: Sequence[Pt], eps: float = TOLERANCE) -> bool:
    """Whether the simple polygon ``outer`` covers the simple polygon ``inner`` (boundaries within ``eps``).

    Every point of ``inner``'s outline (its corners and the middles of its edges) must be inside or on ``outer``, no
    corner of ``outer`` may lie strictly inside ``inner`` (``outer``'s outline would cut through it), and no two
    edges may cross.
    """
    samples = list(inner) + [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in _edges(inner)]
    if not all(_inside_or_on(p, outer, eps) for p in samples):
        return False
    if any(_strictly_inside(p, inner) and not _on_boundary(p, inner, eps) for p in outer):
        return False
    return not any(_cross_properly(a, b, c, d, eps) for a, b in _edges(inner) for c, d in _edges(outer))


def same_polygon(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], eps: float = TOLERANCE) -> bool:
    """Point for point within ``eps`` (how the device matches a region the console names by its polygon)."""
    return len(a) == len(b) and all(
        abs(p[0] - q[0]) <= eps and abs(p[1] - q[1]) <= eps for p, q in zip(a, b, strict=True)
    )


# ---- what reduces privacy -----------------------------------------------------------------------------------


def percent(area: float) -> str:
    return f"{area * 100:.1f}%"


def region_reductions(before: Sequence[Region], after: Sequence[Region]) -> list[str]:
    """Why ``after`` hides less than ``before`` (empty: every region before is covered by one region after)."""
    reasons = []
    for index, old in enumerate(before):
        if any(contains(new.polygon, old.polygon) for new in after):
            continue
        named = [new for new in after if old.name is not None and new.name == old.name]
        if named:
            reasons.append(
                f"privacy region {old.label(index)} shrinks or moves"
                f" ({percent(old.area)} of the frame before, {percent(named[0].area)} after)"
            )
        else:
            reasons.append(f"privacy region {old.label(index)} ({percent(old.area)} of the frame) is removed")
    return reasons


def stream_identity(url: str | None) -> str | None:
    """The stream URL without its credentials (scheme, host, port, path, query): which camera it is."""
    if url is None:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url  # unparseable: compared as it is
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))


def source_reductions(before: SourceConfig, after: SourceConfig) -> list[str]:
    """Why ``after`` is another camera (or shows more of it) than ``before``; empty when it is the same one."""
    if before.kind != after.kind:
        return [f"the camera source changes from {before.kind} to {after.kind}"]
    kind = before.kind
    if kind == "stream" and stream_identity(before.url) != stream_identity(after.url):
        return ["the camera source changes to another stream URL"]
    if kind == "file" and before.path != after.path:
        return ["the camera source changes to another video file"]
    if kind in ("camera", "picamera") and before.camera_index != after.camera_index:
        return [f"the camera source changes from camera {before.camera_index} to camera {after.camera_index}"]
    if kind == "imx500" and not before.host_frames and after.host_frames:
        return ["the AI Camera's sensor-only mode is turned off (images would reach the device's memory)"]
    return []


def config_reductions(before: DeviceConfig, after: DeviceConfig) -> list[str]:
    """Every reason the change from ``before`` to ``after`` reduces privacy (empty: it does not)."""
    return region_reductions(regions_of(before), regions_of(after)) + source_reductions(before.source, after.source)


# ---- how the audit log says it ------------------------------------------------------------------------------


def regions_summary(regions: Sequence[Region] | None) -> list[dict[str, Any]] | None:
    """Names and areas (share of the frame, 4 decimals); None when not known."""
    if regions is None:
        return None
    return [{"name": r.name, "area": round(r.area, 4)} for r in regions]


def source_summary(source: SourceConfig | None) -> dict[str, Any] | None:
    """The source's kind and which camera, without credentials (a stream's host, a camera's index, a file's name)."""
    if source is None:
        return None
    out: dict[str, Any] = {"kind": source.kind}
    if source.kind == "stream" and source.url:
        try:
            out["host"] = urllib.parse.urlsplit(source.url).hostname
        except ValueError:
            out["host"] = None
    elif source.kind in ("camera", "picamera"):
        out["camera_index"] = source.camera_index
    elif source.kind == "file":
        out["file"] = source.path.name if source.path is not None else None
    elif source.kind == "imx500":
        out["sensor_only"] = not source.host_frames
    return out
