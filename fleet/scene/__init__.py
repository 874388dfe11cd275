"""The zone editor's live room view: devices post privacy-safe scene snapshots while someone watches.

- ``POST /api/v1/device/scene`` (an authenticated device, JSON :class:`wardsight.wire.SceneSnapshot`): kept in
  memory (:mod:`fleet.scene.store`), only the latest per device (each post overwrites the last; nothing is
  written to disk), and forgotten ``SNAPSHOT_TTL_SECONDS`` after it arrived. The zones and privacy regions a
  snapshot carries are kept until the device sends others.
- ``GET /api/v1/devices/{id}/scene`` (operator): the latest snapshot's ``time``, ``frame_width``,
  ``frame_height`` (also as ``frame_size``) and ``people`` (``live`` false, ``people`` empty and the rest
  ``null`` when none is fresh), with the device's ``zones`` and ``privacy_regions`` (``null`` until the
  device has sent them). Each request also means
  "someone is watching": for ``WATCH_SECONDS`` afterwards, replies to that device's heartbeats and scene
  posts carry ``WardSight-Preview: 1`` (:func:`fleet.scene.store.preview_wanted`), and the device sends a
  snapshot every 2 s until they stop. The first request of a watching period is audited (``device.scene.watch``).

The header is added by a response hook (:func:`fleet.scene.routes.preview_header`) to successful
``POST /api/v1/device/heartbeat`` and ``/scene`` replies, whose device is the proof's signer (a 2xx there means
the proof was verified).
"""

from __future__ import annotations

from aiohttp import web

from fleet.scene import routes
from fleet.scene.store import SCENES_KEY, Scenes
from wardsight.wire import SCENE_PATH


def setup(app: web.Application) -> None:
    """Add the scene routes, the in-memory store and the preview header hook."""
    app[SCENES_KEY] = Scenes()
    app.on_response_prepare.append(routes.preview_header)
    app.router.add_post(SCENE_PATH, routes.post_scene)
    app.router.add_get("/api/v1/devices/{id}/scene", routes.get_scene)
