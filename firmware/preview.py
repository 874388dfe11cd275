"""A privacy-safe live view of the room for the zone editor: where people are, never what they look like.

:func:`build_snapshot` turns the agent's current :class:`~firmware.scene.Scene` into a
:class:`SceneSnapshot`: the frame's size, up to :data:`MAX_PEOPLE` people (box, the 17 COCO keypoints as
x, y, score, track id, score) and the configured zones and privacy regions (frame-relative polygons).
Numbers only, except zone names (identifiers) and kinds (an enumeration); no field can hold pixels.

:class:`SceneTap` is an app that only remembers the latest scene (add it to the agent's apps).
:class:`PreviewSender` posts a snapshot to ``POST /api/v1/device/scene`` every
:data:`PREVIEW_INTERVAL_SECONDS` while the server wants one: the server answers heartbeats and scene posts
with ``WardSight-Preview: 1`` while someone has the room's view open in the console; pass every such reply
to :meth:`PreviewSender.observe` (scene posts are observed by the sender itself). Without that header the
sender sends nothing.

The schema part of this module (down to :class:`SceneSnapshot`) imports nothing from ``firmware`` so that it
can move into the wire contract (``wardsight.wire``) as it is; the fleet server validates with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wardsight.wire import (
    KEYPOINT_COUNT,
    MAX_FRAME_SIDE,
    MAX_PEOPLE,
    MAX_POLYGON_POINTS,
    MAX_REGIONS,
    MAX_SCENE_BYTES,
    MAX_ZONES,
    PREVIEW_HEADER,
    PREVIEW_INTERVAL_SECONDS,
    SCENE_PATH,
    RelPoint,
    SceneSnapshot,
    SnapshotPerson,
    SnapshotRegion,
    SnapshotZone,
)

if TYPE_CHECKING:
    from firmware.apps.base import AppEvent
    from firmware.scene import Scene
    from firmware.transport import FleetClient, Reply

log = logging.getLogger("wardsight.device.preview")

# ---- building a snapshot from the agent's scene ---------------------------------------------------------------


def _clip(value: float, high: float, digits: int = 1) -> float:
    return round(min(max(float(value), 0.0), float(high)), digits)


def _polygon(points: Iterable[Sequence[float]]) -> tuple[RelPoint, ...]:
    return tuple((_clip(x, 1.0, 4), _clip(y, 1.0, 4)) for x, y in list(points)[:MAX_POLYGON_POINTS])


def build_snapshot(
    scene: Scene,
    *,
    zones: Sequence[Any] | None = None,
    privacy_regions: Sequence[Any] | None = None,
    to_wall: Callable[[float], float] | None = None,
) -> SceneSnapshot:
    """The snapshot of ``scene``: the :data:`MAX_PEOPLE` most confident people, coordinates clipped to the frame.

    ``zones`` are objects with ``name``, ``kind`` and ``polygon`` (``wardsight.device_config.ZoneConfig``),
    ``privacy_regions`` objects with ``polygon``; at most :data:`MAX_ZONES` / :data:`MAX_REGIONS` are sent.
    ``to_wall`` turns the scene's steady time into wall-clock time (default: the agent's steady clock).
    """
    if to_wall is None:
        from firmware.clock import STEADY

        to_wall = STEADY.to_wall
    w, h = scene.frame_size
    w, h = min(max(int(w), 1), MAX_FRAME_SIDE), min(max(int(h), 1), MAX_FRAME_SIDE)
    people = []
    for p in sorted(scene.people, key=lambda p: -p.score)[:MAX_PEOPLE]:
        person = p.track.person
        x1, y1, x2, y2 = (_clip(person.box[0], w), _clip(person.box[1], h), _clip(person.box[2], w),
                          _clip(person.box[3], h))  # fmt: skip
        keypoints = tuple(
            (_clip(x, w), _clip(y, h), _clip(s, 1.0, 3)) for x, y, s in person.keypoints[:KEYPOINT_COUNT].tolist()
        )
        people.append(
            SnapshotPerson(
                track_id=int(p.track_id) % 2**31,
                score=_clip(person.score, 1.0, 3),
                box=(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)),
                keypoints=keypoints,
            )
        )
    return SceneSnapshot(
        time=max(0.0, float(to_wall(scene.time))),
        frame_width=w,
        frame_height=h,
        people=tuple(people),
        zones=None
        if zones is None
        else tuple(SnapshotZone(name=z.name, kind=z.kind, polygon=_polygon(z.polygon)) for z in zones[:MAX_ZONES]),
        privacy_regions=None
        if privacy_regions is None
        else tuple(SnapshotRegion(polygon=_polygon(r.polygon)) for r in privacy_regions[:MAX_REGIONS]),
    )


def encode(snapshot: SceneSnapshot, max_bytes: int = MAX_SCENE_BYTES) -> bytes:
    """The snapshot as JSON within ``max_bytes``: without the zones and regions if they do not fit, then with
    fewer people (the most confident kept)."""
    candidates = [snapshot, snapshot.model_copy(update={"zones": None, "privacy_regions": None})]
    for candidate in candidates:
        body = candidate.model_dump_json(exclude_none=True).encode()
        if len(body) <= max_bytes:
            return body
    people = list(candidates[-1].people)
    while people:
        people.pop()
        body = candidates[-1].model_copy(update={"people": tuple(people)}).model_dump_json(exclude_none=True).encode()
        if len(body) <= max_bytes:
            return body
    raise ValueError("a snapshot without people does not fit")  # cannot happen with the bounds above


class SceneTap:
    """An "app" that emits nothing and remembers the latest scene, for :class:`PreviewSender`."""

    name = "preview"
    needs: frozenset[str] = frozenset()

    def __init__(self, zones: Sequence[Any] = (), privacy_regions: Sequence[Any] = ()) -> None:
        self._zones, self._regions = list(zones), list(privacy_regions)
        self._scene: Scene | None = None

    def update(self, scene: Scene) -> list[AppEvent]:
        self._scene = scene  # one reference swap: safe to read from the sender's thread
        return []

    @property
    def scene(self) -> Scene | None:
        return self._scene

    def snapshot(self) -> SceneSnapshot | None:
        """The latest scene as a snapshot with this device's zones and privacy regions; None before any frame."""
        scene = self._scene
        if scene is None:
            return None
        return build_snapshot(scene, zones=self._zones, privacy_regions=self._regions)


# ---- sending while someone watches -----------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def wants_preview(reply: Reply) -> bool | None:
    """What a reply says about previews: True / False for an accepted (2xx) request, None for a refusal."""
    if not 200 <= reply.status < 300:
        return None
    return (_header(reply.headers, PREVIEW_HEADER) or "").strip() == "1"


class PreviewSender:
    """Posts snapshots every ``interval`` seconds on its own thread, only while the server asks for them.

    Started idle. :meth:`observe` a heartbeat reply with ``WardSight-Preview: 1`` and it starts; each scene
    post's reply says whether to go on. A failure (server unreachable, device not accepted, a refused
    snapshot) stops it until the next reply that asks again. It never raises into the agent.
    """

    def __init__(
        self,
        client: FleetClient,
        snapshot: Callable[[], SceneSnapshot | None],
        *,
        interval: float = PREVIEW_INTERVAL_SECONDS,
    ) -> None:
        self._client, self._snapshot, self._interval = client, snapshot, interval
        self._cond = threading.Condition()
        self._wanted = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="scene-preview", daemon=True)
        self.sent = 0

    @property
    def wanted(self) -> bool:
        return self._wanted

    def observe(self, reply: Reply) -> None:
        """Take the server's wish from any device-API reply (a heartbeat's, typically)."""
        wish = wants_preview(reply)
        if wish is not None:
            self._set(wish)

    def _set(self, wanted: bool) -> None:
        with self._cond:
            self._wanted = wanted
            self._cond.notify_all()

    def send_once(self) -> bool:
        """Post the current snapshot (if the agent has seen a frame); returns whether the server wants more."""
        from firmware.transport import NotAuthorizedError, UnreachableError

        snapshot = self._snapshot()
        if snapshot is None:
            return self._wanted
        try:
            reply = self._client.request("POST", SCENE_PATH, encode(snapshot), "application/json")
        except (UnreachableError, NotAuthorizedError) as exc:
            log.warning("scene preview not delivered: %s", exc)
            self._set(False)
            return False
        wish = wants_preview(reply)
        if wish is None:
            log.warning("scene preview refused (HTTP %d): %s", reply.status, reply.error)
        else:
            self.sent += 1
        self._set(bool(wish))
        return bool(wish)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._wanted)
                if self._stopping:
                    return
            try:
                self.send_once()
            except Exception:  # the preview must never take the agent down
                log.exception("scene preview failed")
                self._set(False)
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, timeout=self._interval):
                    return

    def start(self) -> PreviewSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
