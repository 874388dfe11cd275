"""A fleet server with simulated devices for the console's browser tests and screenshots.

Each simulated device enrolls from a real bundle through the firmware's own code (``IdentityStore.enroll``)
and then talks to the server through the firmware's ``FleetClient`` (per-request proofs, nonces, its
short-lived credential) on its own thread: heartbeats with made-up readings, maintenance jobs (verified
with the server's job key, ``push_config`` validated with the device-config schema before it "applies"),
model-update offers (stepping through the update states) and, on request, signed events. A ``push_config`` of the
zone editor (``merge = "zones"``) is merged into the device's own file by the firmware's code
(:func:`firmware.jobs.layout.merge_layout`).
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from firmware.identity import IdentityStore
from firmware.jobs.layout import LayoutEditError, merge_layout
from firmware.preview import PREVIEW_HEADER, SCENE_PATH, SceneSnapshot, SnapshotPerson, SnapshotRegion, SnapshotZone
from firmware.transport import NotAuthorizedError, UnreachableError
from fleet.accounts import service as operators
from fleet.config import ServerConfig
from fleet.enrollment import tokens
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from wardsight import wire
from wardsight.bundle import Bundle
from wardsight.device_config import MERGE_PARAM, MERGE_ZONES, DeviceConfig, LayoutEdit

PASSWORD = "correct horse battery staple"
FAST_HASHING = {"password_memory_kib": 1024, "password_time_cost": 1}
USERS = {"alice": "admin", "olga": "operator", "victor": "viewer"}

# A standing person's 17 COCO keypoints: x offset from the body's centre line, y in frame pixels.
SKELETON = [(0, 190), (-8, 182), (8, 182), (-16, 186), (16, 186), (-40, 250), (40, 250), (-55, 330), (55, 330),
             (-60, 400), (60, 400), (-28, 410), (28, 410), (-30, 520), (30, 520), (-32, 630), (32, 630)]  # fmt: skip


@dataclass
class Readings:
    fps: float = 14.8
    cpu_temp_c: float = 54.0
    accelerator: str = "cpu"
    accelerator_configured: str | None = None
    accelerator_temp_c: float | None = None
    models: dict[str, str] = field(default_factory=lambda: {"pose_net": "1.0"})
    warnings: list[str] = field(default_factory=list)
    privacy_mode: wire.PrivacyMode | None = "blackout-at-capture"  # None: an older agent
    system: wire.SystemVersion | None = None  # the system image (None: not reported)
    dropped_fps: float = 0.0  # frames the source drops a second (a camera or file faster than the analysis)


def _reported(polygon: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """A polygon as the agent reports it (firmware/preview.py: rounded to 4 decimals)."""
    return tuple((round(x, 4), round(y, 4)) for x, y in polygon)


class SimDevice:
    """One enrolled device on its own thread (see the module docstring)."""

    def __init__(self, store: IdentityStore, readings: Readings, *, heartbeat_s: float = 2.0) -> None:
        self.identity, self.client = store.client()
        self.key = wire.load_private_key(store.key_path)
        self.job_key = wire.decode_public_key(self.identity.job_key) if self.identity.job_key else None
        self.readings = readings
        self.heartbeat_s = heartbeat_s
        self.config_text: str | None = None
        self.pushed: list[wire.Job] = []  # the push_config jobs it applied
        self.frame_size = (1280, 720)
        self.jobs_seen: list[str] = []
        self.update_states: list[str] = []
        self.started = time.time()
        self.preview_until = 0.0
        self.frames = 0
        self.dropped = 0
        self.silent = threading.Event()  # set: stop sending (the device "goes offline")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.device_id}", daemon=True)

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def start(self) -> SimDevice:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # ---- what the agent would send -------------------------------------------------------------------

    def heartbeat(self) -> None:
        r = self.readings
        t = time.time() - self.started
        self.frames += int((r.fps or 0) * self.heartbeat_s)
        self.dropped += int(r.dropped_fps * self.heartbeat_s)
        wobble = 0.4 * ((int(t) % 7) - 3) / 3
        health = wire.Health(
            device_id=self.device_id,
            sent_at=time.time(),
            uptime_s=t,
            agent_version="0.1.0",
            accelerator=r.accelerator,
            accelerator_configured=r.accelerator_configured,
            cpu_temp_c=round(r.cpu_temp_c + wobble, 1),
            accelerator_temp_c=r.accelerator_temp_c,
            mem_used_mb=round(150 + 3 * wobble, 1),
            mem_total_mb=3800.0,
            fps=round(max(0.0, r.fps + wobble), 2) if r.fps else r.fps,
            frames_processed=self.frames,
            frames_dropped=self.dropped,
            outbox_pending=0,
            stage_ms={"pose": round(19.5 + 2 * wobble, 2), "capture": 2.6},
            models=dict(r.models),
            warnings=list(r.warnings),
            privacy_mode=r.privacy_mode,
            system=r.system,
        )
        reply = self.client.heartbeat(health)
        if reply.headers.get(PREVIEW_HEADER) == "1":
            self.preview_until = time.time() + 10

    def scene(self) -> SceneSnapshot:
        """Two people as boxes and skeletons on a frame of ``frame_size`` (1280x720 unless a test sets another; at
        least 960x720); the zones and privacy regions from its config, as the agent reports them."""
        t = time.time() - self.started
        width, height = self.frame_size
        people = []
        for track, (x0, speed) in enumerate(((300.0, 60.0), (900.0, -35.0)), start=1):
            cx = x0 * width / 1280 + (speed * t) % 300
            kps = [(min(float(width), max(0.0, cx + dx)), y, 0.9) for dx, y in SKELETON]
            xs = [k[0] for k in kps]
            box = (max(0.0, min(xs) - 20), 150.0, min(float(width), max(xs) + 20), 650.0)
            people.append(SnapshotPerson(track_id=track, score=0.9, box=box, keypoints=tuple(kps)))
        zones: tuple[SnapshotZone, ...] = ()
        regions: tuple[SnapshotRegion, ...] = ()
        if self.config_text:
            config = DeviceConfig.model_validate(tomllib.loads(self.config_text))
            zones = tuple(SnapshotZone(name=z.name, kind=z.kind, polygon=_reported(z.polygon)) for z in config.zones)
            regions = tuple(SnapshotRegion(polygon=_reported(r.polygon)) for r in config.privacy_regions)
        return SceneSnapshot(time=time.time(), frame_width=width, frame_height=height, people=tuple(people),
                             zones=zones, privacy_regions=regions)  # fmt: skip

    def _post_scene(self) -> None:
        body = self.scene().model_dump_json().encode()
        reply = self.client.request("POST", SCENE_PATH, body, "application/json")
        if reply.headers.get(PREVIEW_HEADER) == "1":
            self.preview_until = time.time() + 10

    def send_event(
        self, app: str, kind: str, severity: str = "info", *, track_id: int | None = None, **data: float | bool
    ) -> str:
        event = wire.Event(
            event_id=wire.new_event_id(),
            device_id=self.device_id,
            room=self.identity.room,
            app=app,  # type: ignore[arg-type]
            type=kind,
            severity=severity,  # type: ignore[arg-type]
            time=self.client.server_now(),
            track_id=track_id,
            data=data,
        )
        reply = self.client.post_event("", wire.sign_event(event, self.key))
        if reply.status not in (200, 201, 202):
            raise AssertionError(f"event refused: {reply.status} {reply.error}")
        return event.event_id

    def _report_job(self, job_id: str, state: str, reason: str | None = None, progress: float | None = None) -> None:
        report = wire.JobReport(job_id=job_id, state=state, reason=reason, progress=progress)  # type: ignore[arg-type]
        body = report.model_dump_json(exclude_none=True).encode()
        self.client.request("POST", f"/api/v1/device/jobs/{job_id}", body, "application/json")

    def _jobs(self) -> None:
        # No ?wait=: a device proof's htu is the bare path, so the firmware client cannot long-poll yet.
        reply = self.client.request("GET", "/api/v1/device/jobs")
        if reply.status != 200 or self.job_key is None:
            return
        for token in reply.body.get("jobs", []):
            job = wire.verify_job(token, self.job_key)
            if job.job_id in self.jobs_seen:
                continue
            self.jobs_seen.append(job.job_id)
            self._report_job(job.job_id, "received")
            self._report_job(job.job_id, "running", progress=0.5)
            time.sleep(0.3)
            if job.kind == "push_config":
                try:
                    text = self._pushed_text(job)
                    DeviceConfig.model_validate(tomllib.loads(text))
                except LayoutEditError as exc:
                    self._report_job(job.job_id, "refused", reason=exc.reason)
                    continue
                except (tomllib.TOMLDecodeError, ValidationError):
                    self._report_job(job.job_id, "refused", reason="invalid_config")
                    continue
                self.config_text = text
                self.pushed.append(job)
            self._report_job(job.job_id, "succeeded", progress=1.0)

    def _pushed_text(self, job: wire.Job) -> str:
        """The device.toml a push_config job makes: its text, or (the zone editor's ``merge = "zones"``) this
        device's own file with the edit merged in by the firmware's own code."""
        if job.params.get(MERGE_PARAM) != MERGE_ZONES:
            return job.config or ""
        return merge_layout(self.config_text or "", LayoutEdit.model_validate_json(job.config or ""))

    def _updates(self) -> None:
        reply = self.client.request("GET", "/api/v1/device/update")
        if reply.status != 200:
            return
        offer = wire.UpdateOffer.model_validate(reply.body)
        steps = ["downloading", "downloaded", "installed", "activated", "healthy"]
        done = len(self.update_states)
        if done >= len(steps):
            return
        state = steps[done]
        report = wire.UpdateReport(rollout_id=offer.rollout_id, model=offer.model, version=offer.version, state=state)  # type: ignore[arg-type]
        got = self.client.request(
            "POST", "/api/v1/device/update", report.model_dump_json().encode(), "application/json"
        )
        if got.status == 202:
            self.update_states.append(state)
            if state == "healthy":
                self.readings.models[offer.model] = offer.version

    def _run(self) -> None:
        next_beat = 0.0
        next_update = 0.0
        next_scene = 0.0
        while not self._stop.is_set():
            if self.silent.is_set():
                self._stop.wait(0.5)
                continue
            try:
                now = time.time()
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + self.heartbeat_s
                if now < self.preview_until and now >= next_scene:
                    self._post_scene()
                    next_scene = now + 1.0
                if now >= next_update:
                    self._updates()
                    next_update = now + self.update_every_s
                self._jobs()
                self._stop.wait(0.7)
            except NotAuthorizedError:  # pending or quarantined: as the agent does, wait and try again
                self._stop.wait(1.0)
            except UnreachableError:
                self._stop.wait(0.5)

    update_every_s: float = 2.0


def make_token(db_path: Path, room: str, *, site: str | None, ward: str | None, approval: bool = False) -> str:
    plaintext, record = tokens.new_token(room, time.time(), 3600, site=site, ward=ward, require_approval=approval)
    db = FleetDB(db_path)
    try:
        db.add_token(record)
    finally:
        db.close()
    return plaintext


def enroll(server: BackgroundServer, token: str, workdir: Path, name: str) -> IdentityStore:
    store = IdentityStore(workdir)
    store.dir.mkdir(parents=True, exist_ok=True)
    store.enroll(Bundle(server.url, token, server.ca_pem, insecure_http=server.ca_pem is None), name)
    return store


@dataclass
class SimFleet:
    server: BackgroundServer
    config: ServerConfig
    work: Path
    devices: dict[str, SimDevice] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def add(self, name: str, room: str, readings: Readings | None = None, *, site: str = "st-marys",
            ward: str | None = None, approval: bool = False, start: bool = True) -> SimDevice:  # fmt: skip
        assert self.config.database is not None
        token = make_token(self.config.database, room, site=site, ward=ward or room.split("-")[0], approval=approval)
        store = enroll(self.server, token, self.work / "devices" / name, name)
        device = SimDevice(store, readings or Readings())
        self.devices[name] = device
        return device.start() if start else device

    def db(self) -> FleetDB:
        assert self.config.database is not None
        return FleetDB(self.config.database)

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        db = self.db()
        try:
            return list(db.db.query(sql, params or []))
        finally:
            db.close()

    def set_status(self, name: str, status: str, by: str = "user:olga") -> None:
        db = self.db()
        try:
            db.set_status(self.devices[name].device_id, status, reason="test", by=by, now=time.time(),
                          allowed_from=("pending", "active", "quarantined"))  # fmt: skip
        finally:
            db.close()

    def stop(self) -> None:
        for device in self.devices.values():
            device._stop.set()
        for device in self.devices.values():
            device.stop()
        self.server.stop()


def start_sim_fleet(work: Path, **config_over: Any) -> SimFleet:
    """A TLS fleet server (the fleet's own CA) with the console, three accounts and no devices yet."""
    config = ServerConfig(
        port=0,
        database=work / "server" / "fleet.db",
        keys_dir=work / "server" / "fleet-keys",
        offline_grace_seconds=5,
        offline_check_seconds=0.5,
        console_refresh_seconds=1.0,
        **FAST_HASHING,
        **config_over,
    )
    db = FleetDB(config.database)  # type: ignore[arg-type]
    try:
        for username, role in USERS.items():
            operators.create_operator(db.db, username, PASSWORD, role, time.time(), config)  # type: ignore[arg-type]
    finally:
        db.close()
    server = BackgroundServer(config).start()
    return SimFleet(server, config, work)


def publish_model(sim: SimFleet, name: str, version: str, keys: Path) -> None:
    """Publish a tiny model package with offline keys, through the same functions ``wardsight ota`` uses."""
    from signing.client import Server
    from signing.keys import generate_keys
    from signing.metadata import init_repository, publish
    from tests.fleet.ota.test_ota_repository import make_package

    assert sim.config.database is not None
    db = sim.db()
    try:
        token = operators.create_api_token(db.db, f"publish-{name}-{version}", "admin", "test", time.time())
    finally:
        db.close()
    conn = Server(sim.url, token, ca_pem=sim.server.ca_pem)
    if not (keys / "root.key").exists():
        generate_keys(keys)
        init_repository(keys, conn)
    publish(make_package(sim.work / "packages", name, version), keys, conn)


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def draw_shape(page: Any, points: tuple[tuple[float, float], ...]) -> None:
    """In the console's zone editor: start a shape, click its ``points`` on the scene canvas (fractions of the
    canvas's width and height), finish it."""
    page.get_by_role("button", name="Start a new shape").click()
    canvas = page.locator("canvas.scene")
    box = canvas.bounding_box()
    for x, y in points:
        canvas.click(position={"x": box["width"] * x, "y": box["height"] * y})
    page.get_by_role("button", name="Finish shape").click()


def jobs_of(sim: SimFleet, device: SimDevice) -> list[dict[str, Any]]:
    return sim.query("SELECT * FROM jobs WHERE device_id = ? ORDER BY updated_at", [device.device_id])


def loads(text: str) -> Any:
    return json.loads(text)


# ---- devices that answer collect_diagnostics with a real bundle (the job page's output) ----------------------


def diagnostics_text(device: SimDevice) -> str:
    """A diagnostics bundle as the agent builds it (``firmware.diagnostics.build_bundle``: versions, health, config,
    recent jobs, warnings and log lines), from this simulated device's own identity, readings and config."""
    from firmware.diagnostics import build_bundle, flatten

    ident, r = device.identity, device.readings
    now = time.time()
    config = DeviceConfig.model_validate(tomllib.loads(device.config_text)) if device.config_text else None
    logs = [
        f"2024-06-10T08:0{i}:00Z INFO wardsight.device.agent: frame batch {i} processed at {r.fps} fps"
        for i in range(6)
    ]
    logs.append("2024-06-10T08:07:00Z WARNING wardsight.device.sender: the server answered 503; retrying in 4 s")
    sections = [
        ("device", [f"device_id = {ident.device_id}", f"name = {ident.name}", f"room = {ident.room}",
                    f"device_time = {now:.3f}", f"server_time = {device.client.server_now():.3f}"]),
        ("versions", ["wardsight = 0.1.0", "python = 3.11.2", "numpy = 1.26.4"]),
        ("health", flatten({"fps": r.fps, "cpu_temp_c": r.cpu_temp_c, "models": dict(r.models)})),
        ("config", flatten(config.model_dump(mode="json")) if config else ["unknown"]),
        ("jobs", [f"{job_id} collect_diagnostics running" for job_id in device.jobs_seen[-3:]]),
        ("recent errors", logs[-1:]),
        ("logs", logs),
    ]  # fmt: skip
    return build_bundle(sections)


class DiagnosingDevice(SimDevice):
    """A simulated device that answers ``collect_diagnostics`` with :func:`diagnostics_text` (other kinds as any)."""

    def _jobs(self) -> None:
        reply = self.client.request("GET", "/api/v1/device/jobs")
        if reply.status == 200 and self.job_key is not None:
            for token in reply.body.get("jobs", []):
                job = wire.verify_job(token, self.job_key)
                if job.kind != "collect_diagnostics" or job.job_id in self.jobs_seen:
                    continue
                self.jobs_seen.append(job.job_id)
                try:
                    self._report_job(job.job_id, "received")
                    report = wire.JobReport(job_id=job.job_id, state="succeeded", output=diagnostics_text(self))
                    body = report.model_dump_json(exclude_none=True).encode()
                    self.client.request("POST", f"/api/v1/device/jobs/{job.job_id}", body, "application/json")
                except UnreachableError:  # (a slow server on a loaded machine): the next poll reports it again
                    self.jobs_seen.remove(job.job_id)
                    raise
        super()._jobs()


def add_diagnosing(sim: SimFleet, name: str, room: str, readings: Readings | None = None) -> DiagnosingDevice:
    """Enroll a :class:`DiagnosingDevice` in ``sim`` (site st-marys, the ward from the room) and start it."""
    assert sim.config.database is not None
    token = make_token(sim.config.database, room, site="st-marys", ward=room.split("-")[0])
    store = enroll(sim.server, token, sim.work / "devices" / name, name)
    device = DiagnosingDevice(store, readings or Readings())
    sim.devices[name] = device
    device.start()
    return device


def sign_in(browser: Any, sim: SimFleet, username: str, *, path: str = "#/fleet", accept: bool = True) -> Any:
    """A Playwright page signed in as ``username`` whose confirmations are recorded (``page.dialogs``: their
    messages) and answered with ``page.accept[0]`` (yes unless a test sets it to False); the caller closes
    ``page.context``. Script errors are in ``page.console_errors``."""
    context = browser.new_context(ignore_https_errors=True, base_url=sim.url, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    page.dialogs, page.accept, page.console_errors = [], [accept], []

    def answer(dialog: Any) -> None:
        page.dialogs.append(dialog.message)
        dialog.accept() if page.accept[0] else dialog.dismiss()

    page.on("dialog", answer)
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    page.goto(f"/{path}")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page
