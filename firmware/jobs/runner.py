"""Maintenance jobs on the device: fetched by long poll, verified, run at most once, reported.

The device only connects outwards: :class:`JobRunner` runs a thread that asks ``GET /api/v1/device/jobs?wait=25``
and backs off on errors (it never lets a failure reach the agent). Each job is a compact JWS signed by the
server's job key (``job_key`` in ``identity.json``). Before anything runs, a job must

- verify with that key (else refused ``bad_signature``) and be of a known kind (``unknown_kind``);
- name this device (``wrong_device``);
- be new: executed job ids are kept in ``<device dir>/jobs.db`` (SQLite), written *before* a job runs, so a
  job runs at most once across restarts and crashes; a job seen again is refused ``replayed`` (unless its
  final report has not reached the server yet: then only that report is sent again);
- not be expired by the **server's** clock (``FleetClient.server_now()``; the device clock may be years off).

Final reports wait in the same database until the server has them (offline devices catch up). Jobs that end
the process (restart, a pushed configuration, a reboot) record where they are and are reported after the next
start (:meth:`JobRunner.resume`). A pushed configuration is validated with :class:`DeviceConfig` (and the
environment overrides) and dry-run (:func:`dry_run_config`: apps, zones, privacy regions, source description
and model files, without opening a camera); the previous file is kept and is restored by
:func:`recover_pushed_config` when the agent does not start with the new one.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, get_args

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.diagnostics import MAX_BUNDLE_BYTES, LogRing, build_bundle, flatten, install_log_ring
from firmware.identity import Identity
from firmware.transport import NotAuthorizedError, Reply, UnreachableError
from wardsight import __version__, wire
from wardsight.device_config import ENV_PREFIX, DeviceConfig
from wardsight.errors import WardSightError
from wardsight.fetch import ArtifactStore
from wardsight.paths import fsync_dir, write_file_atomically
from wardsight.settings import load_config

log = logging.getLogger("wardsight.device.jobs")

RESTART_EXIT_CODE = 75  # "start me again": systemd's Restart=always (or the test's supervisor) does
FACTORY_RESET_EXIT_CODE = 76  # wiped: do not expect to run again before a new enrollment
JOBS_PATH = wire.JOBS_PATH
ROTATE_PATH = wire.ROTATE_PATH
ROTATE_TYP = "wardsight-rotate+jws"
POLL_WAIT = 25.0
CLOCK_SKEW = 300.0  # a job may look issued this far in the future (server clock steps)
DEFAULT_REBOOT_COMMAND = ("systemctl", "reboot")
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MAX_LOG_LEVEL_SECONDS = 24 * 3600.0
DEFAULT_LOG_LEVEL_SECONDS = 900.0
KNOWN_KINDS = frozenset(get_args(wire.JobKind))


class JobTransport(Protocol):
    """What the runner needs of :class:`firmware.transport.FleetClient`."""

    device_id: str

    @property
    def clock_offset(self) -> float | None: ...

    def server_now(self) -> float: ...

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        query: str = "",
        timeout: float | None = None,
    ) -> Reply: ...

    def request_bound(
        self, method: str, path: str, make_body: Callable[[str], bytes], content_type: str | None
    ) -> Reply: ...

    def adopt_key(self, key: Ed25519PrivateKey, reply: Reply) -> None: ...


@dataclass(frozen=True)
class SelfTestOutcome:
    ok: bool
    reason: str
    detail: str


@dataclass
class JobHooks:
    """What the agent gives the runner: where its configuration lives and how to stop it."""

    config_path: Path  # the device.toml the agent loads (pushed configurations replace it)
    stop_agent: Callable[[int], None]  # stop the agent; the process then exits with this status
    environ: Mapping[str, str] = field(default_factory=dict)  # for WARDSIGHT_DEVICE_* overrides
    store: ArtifactStore | None = None  # model files a configuration needs must be present here
    config: DeviceConfig | None = None  # the running configuration (diagnostics)
    health: Callable[[], wire.Health] | None = None  # a current heartbeat report (diagnostics)
    pending_events: Callable[[], int] | None = None  # events not yet sent (drained before a key rotation)
    self_test: Callable[[], SelfTestOutcome] | None = None
    reboot_command: Sequence[str] = DEFAULT_REBOOT_COMMAND
    log_ring: LogRing | None = None
    update_waiting: Callable[[], None] | None = None  # the server says an update offer waits (wake the OTA loop)


class ConfigRefusedError(WardSightError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# ---- the ledger --------------------------------------------------------------------------------------


class JobLedger:
    """Executed job ids (at most once, across restarts) and final reports not yet delivered. SQLite."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,"
            " expires_at REAL NOT NULL, received_at REAL NOT NULL, detail TEXT NOT NULL DEFAULT '{}')"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS reports (job_id TEXT PRIMARY KEY, body TEXT NOT NULL, queued_at REAL NOT NULL)"
        )

    def claim(self, job: wire.Job, state: str = "running") -> bool:
        """Record ``job`` as executed; False if its id was seen before (the caller must not run it)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, kind, state, expires_at, received_at) VALUES (?, ?, ?, ?, ?)",
                (job.job_id, job.kind, state, job.expires_at, time.time()),
            )
            return cur.rowcount == 1

    def known(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def set_state(self, job_id: str, state: str, detail: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            if detail is None:
                self._db.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (state, job_id))
            else:
                self._db.execute(
                    "UPDATE jobs SET state = ?, detail = ? WHERE job_id = ?", (state, json.dumps(detail), job_id)
                )

    def in_state(self, *states: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(job_id, state, detail) of the jobs in ``states``, oldest first."""
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT job_id, state, detail FROM jobs WHERE state IN ({marks}) ORDER BY received_at",  # noqa: S608
                states,
            ).fetchall()
        return [(str(r[0]), str(r[1]), json.loads(r[2] or "{}")) for r in rows]

    def finish(self, report: wire.JobReport) -> None:
        """A final state: the job is done and its report waits for delivery (one transaction)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE jobs SET state = 'done' WHERE job_id = ?", (report.job_id,))
                self._db.execute(
                    "INSERT OR REPLACE INTO reports (job_id, body, queued_at) VALUES (?, ?, ?)",
                    (report.job_id, report.model_dump_json(exclude_none=True), time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def has_report(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM reports WHERE job_id = ?", (job_id,)).fetchone() is not None

    def reports(self) -> list[wire.JobReport]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM reports ORDER BY queued_at").fetchall()
        return [wire.JobReport.model_validate_json(r[0]) for r in rows]

    def delivered(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM reports WHERE job_id = ?", (job_id,))

    def recent(self, limit: int = 20) -> list[tuple[str, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, kind, state FROM jobs ORDER BY received_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def prune(self, expired_before: float) -> int:
        """Forget finished, reported jobs that expired before ``expired_before`` (server time): a replay of
        one is refused as expired anyway."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM jobs WHERE state = 'done' AND expires_at < ?"
                " AND job_id NOT IN (SELECT job_id FROM reports)",
                (expired_before,),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def ledger_path(device_dir: Path) -> Path:
    return device_dir / "jobs.db"


# ---- configuration ------------------------------------------------------------------------------------


def previous_config_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".previous")


def _polygon_area(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    return abs(sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n)))


def dry_run_config(config: DeviceConfig, store: ArtifactStore | None) -> None:
    """Build what the agent builds at start, except opening the camera and loading models.

    Raises :class:`ConfigRefusedError` (``config_would_not_start``) naming the first problem: apps that
    cannot be built (e.g. bed_exit with no bed zone), duplicate zone names, a privacy region or zone with no
    area (it would hide or find nothing), a stream without a URL, a missing video file, an unknown model, a
    model or footage file the agent would need but does not have.
    """
    from accelerators.catalog import get_model
    from firmware import runtime
    from wardsight.footage import DEMO_FOOTAGE

    def refuse(detail: str) -> ConfigRefusedError:
        return ConfigRefusedError("config_would_not_start", detail)

    for region in config.privacy_regions:
        if _polygon_area(region.polygon) < 1e-6:
            raise refuse(f"privacy region '{region.name}' has no area: it would hide nothing")
    for zone in config.zones:
        if _polygon_area(zone.polygon) < 1e-6:
            raise refuse(f"zone '{zone.name}' has no area")
    try:
        apps = runtime.build_apps(config)
        runtime.build_zones(config)
        manifest = get_model(config.model)
    except (WardSightError, ValueError) as exc:
        raise refuse(str(exc)) from None
    src = config.source
    if src.kind == "stream" and not src.url:
        raise refuse("source.kind = stream needs source.url")
    if src.kind == "stream" and src.url and not src.url.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        raise refuse("source.url must be an rtsp:// or http(s):// URL")
    if src.kind == "file" and src.path is not None and not src.path.is_file():
        raise refuse(f"source.path {src.path} is not a file on this device")
    if store is None:
        return
    needed = [manifest.artifact]
    if src.kind == "file" and src.path is None:
        needed.append(DEMO_FOOTAGE)
    wanted = set().union(*(a.needs for a in apps))
    if "faces" in wanted:
        from accelerators.facemask import FACEMASK_AIZOO
        from accelerators.mediapipe_models import FACE_FULL_RANGE

        needed += [FACE_FULL_RANGE, FACEMASK_AIZOO.artifact]
    if "hands" in wanted:
        from accelerators.mediapipe_models import HAND_LANDMARK, PALM_DETECTION

        needed += [PALM_DETECTION, HAND_LANDMARK]
    for artifact in needed:
        if not store.is_present(artifact):
            raise refuse(f"{artifact.name} is not on this device (run 'wardsight models fetch {artifact.name}')")


def validate_config_text(
    text: str, config_path: Path, environ: Mapping[str, str], store: ArtifactStore | None
) -> DeviceConfig:
    """The configuration the agent would start with if ``text`` replaced its file (env overrides included)."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pushed-", suffix=".toml", dir=config_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        config = load_config(DeviceConfig, path=Path(tmp), env_prefix=ENV_PREFIX, environ=environ)
    except WardSightError as exc:
        raise ConfigRefusedError("config_invalid", str(exc).replace(tmp, "pushed config")) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    dry_run_config(config, store)
    return config


def recover_pushed_config(device_dir: Path, config_path: Path) -> str | None:
    """Call at every start, before the configuration is loaded.

    A pushed configuration gets one start: if the agent started with it before and did not get as far as
    :meth:`JobRunner.resume` (the build failed and the supervisor started us again), the previous file is
    put back and the job is reported failed (``config_failed_at_start``). Returns what was done, or None.
    """
    path = ledger_path(device_dir)
    if not path.exists():
        return None
    ledger = JobLedger(path)
    try:
        for job_id, _, detail in ledger.in_state("config_applied"):
            starts = int(detail.get("starts", 0))
            if starts == 0:
                ledger.set_state(job_id, "config_applied", {**detail, "starts": 1})
                continue
            previous = previous_config_path(config_path)
            if detail.get("had_previous") and previous.exists():
                os.replace(previous, config_path)
                with contextlib.suppress(OSError):
                    fsync_dir(config_path.parent)
            elif not detail.get("had_previous"):
                config_path.unlink(missing_ok=True)
            ledger.finish(wire.JobReport(job_id=job_id, state="failed", reason="config_failed_at_start"))
            message = f"the configuration pushed by {job_id} did not start; the previous one is back"
            log.error("%s", message)
            return message
    finally:
        ledger.close()
    return None


# ---- self-test ---------------------------------------------------------------------------------------


def factory_self_test(store: ArtifactStore, model: str = "movenet-multipose", *, threads: int = 1) -> SelfTestOutcome:
    """The pose model loads and runs on the built-in synthetic frame within the time bound
    (``firmware.ota.selftest``, in a child process so a crash or hang only fails the test)."""
    from accelerators.catalog import get_model
    from firmware.ota.selftest import factory_build, run_selftest

    try:
        path = store.require(get_model(model).artifact)
    except WardSightError as exc:
        return SelfTestOutcome(False, "model_missing", str(exc))
    result = run_selftest(path, factory_build(), threads=threads)
    return SelfTestOutcome(result.ok, result.reason, result.detail)


# ---- the runner --------------------------------------------------------------------------------------


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _job_id_of(token: str) -> str | None:
    job_id = _unverified_claims(token).get("job_id")
    try:
        wire.JobReport(job_id=job_id, state="refused")  # the id's pattern
    except ValueError:
        return None
    return str(job_id)


def sign_possession(new_key: Ed25519PrivateKey, device_id: str, job_id: str, nonce: str) -> str:
    """Proof that the device holds ``new_key``, bound to the job and to the nonce of the rotation request."""
    claims = {
        "device_id": device_id,
        "job_id": job_id,
        "public_key": wire.encode_public_key(new_key.public_key()),
        "nonce": nonce,
    }
    return jwt.encode(claims, new_key, algorithm="EdDSA", headers={"typ": ROTATE_TYP})


class JobRunner:
    """Fetches, checks, runs and reports maintenance jobs for one enrolled device (see the module doc)."""

    def __init__(
        self,
        client: JobTransport,
        identity: Identity,
        device_dir: Path,
        hooks: JobHooks,
        *,
        wait: float = POLL_WAIT,
        min_interval: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.client = client
        self.identity = identity
        self.device_dir = device_dir
        self.hooks = hooks
        self.wait = max(0.0, min(30.0, wait))
        self.min_interval = min_interval
        self.max_backoff = max_backoff
        self.ledger = JobLedger(ledger_path(device_dir))
        self.ring = hooks.log_ring or install_log_ring()
        self._job_key = wire.decode_public_key(identity.job_key) if identity.job_key else None
        self._stop = threading.Event()
        self._halted = False  # a job ended this process: run nothing more
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)
        self._level_lock = threading.Lock()
        self._level_timer: threading.Timer | None = None
        self._level_before: int | None = None
        self._unreadable: set[int] = set()
        self._running: set[str] = set()  # jobs this process is running now
        self._update_seen = ""  # the update offer the server last named in a poll ("" for none)
        self.handled = 0

    # ---- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> JobRunner:
        self.resume()
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)  # a long poll in flight is left to the daemon thread
        self._restore_level()

    def close(self) -> None:
        self.stop()
        if not self._thread.is_alive():
            self.ledger.close()

    def resume(self) -> None:
        """After a start: finish the jobs that needed one (restart, reboot, pushed configuration) and fail the
        ones a crash interrupted. Their reports are queued and sent by the loop."""
        for job_id, state, _ in self.ledger.in_state("restarting", "rebooting", "config_applied", "running"):
            if state == "running":
                log.warning("job %s was interrupted by the end of the last run", job_id)
                report = wire.JobReport(job_id=job_id, state="failed", reason="interrupted")
            else:
                log.info("job %s done: the agent started again (%s)", job_id, state)
                report = wire.JobReport(job_id=job_id, state="succeeded")
            self.ledger.finish(report)

    # ---- the loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set() and not self._halted:
            started = time.monotonic()
            try:
                self.flush_reports()
                self.poll_once()
                failures = 0
            except (UnreachableError, NotAuthorizedError) as exc:
                failures += 1
                log.warning("jobs: %s", exc)
            except Exception:  # the job loop must never take the agent down
                failures += 1
                log.exception("jobs: unexpected error")
            if failures:
                delay = min(self.max_backoff, 2.0 ** min(failures - 1, 10)) * random.uniform(0.5, 1.0)  # noqa: S311
            else:
                delay = self.min_interval - (time.monotonic() - started)
            if delay > 0 and self._stop.wait(delay):
                return

    def poll_once(self, wait: float | None = None) -> int:
        """One long poll; handles what it brings. Returns how many jobs came."""
        wait = self.wait if wait is None else wait
        query = urllib.parse.urlencode({"wait": f"{wait:g}", wire.UPDATE_HINT_FIELD: self._update_seen})
        reply = self.client.request("GET", JOBS_PATH, query=query, timeout=wait + 15.0)
        if reply.status != 200:
            raise UnreachableError(f"job poll answered HTTP {reply.status}: {reply.error}")
        self._update_hint(reply.body.get(wire.UPDATE_HINT_FIELD))
        tokens = reply.body.get("jobs")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise UnreachableError("job poll answered without a list of jobs")
        for token in tokens:
            if self._stop.is_set() or self._halted:
                break
            try:
                self.handle(token)
            except (UnreachableError, NotAuthorizedError):
                raise
            except Exception:
                log.exception("job handling failed")
        if self.client.clock_offset is not None and not self._halted:
            self.ledger.prune(self.client.server_now() - 86400.0)
        return len(tokens)

    def _update_hint(self, hint: object) -> None:
        """The server named a (new) update offer for this device: wake the OTA loop to fetch it."""
        seen = hint if isinstance(hint, str) else ""
        if seen != self._update_seen:
            self._update_seen = seen
            if seen and self.hooks.update_waiting is not None:
                log.info("the server has an update waiting (%s)", seen)
                self.hooks.update_waiting()

    def flush_reports(self) -> int:
        """Send the final reports the server does not have yet; returns how many it took."""
        sent = 0
        for report in self.ledger.reports():
            self._post_report(report)
            self.ledger.delivered(report.job_id)
            sent += 1
        return sent

    def _post_report(self, report: wire.JobReport) -> None:
        """Raises when the server cannot be asked; a refusal (4xx) will not change, so it is only logged."""
        body = report.model_dump_json(exclude_none=True).encode()
        reply = self.client.request("POST", f"{JOBS_PATH}/{report.job_id}", body, "application/json")
        if 200 <= reply.status < 300:
            log.info(
                "job %s reported %s%s", report.job_id, report.state, f" ({report.reason})" if report.reason else ""
            )
        else:
            log.warning(
                "the server refused the report on job %s (HTTP %d): %s", report.job_id, reply.status, reply.error
            )

    def _progress(self, job_id: str, state: wire.JobState) -> None:
        """A best-effort intermediate report (received, running)."""
        try:
            self._post_report(wire.JobReport(job_id=job_id, state=state))
        except (UnreachableError, NotAuthorizedError) as exc:
            log.info("job %s: '%s' not reported: %s", job_id, state, exc)

    def _final(self, report: wire.JobReport) -> wire.JobReport:
        self.ledger.finish(report)
        with contextlib.suppress(UnreachableError, NotAuthorizedError):
            self.flush_reports()  # what is not delivered now goes with the next loop
        return report

    # ---- one job -------------------------------------------------------------------------------------

    def _refuse(self, job_id: str, reason: str) -> wire.JobReport:
        """Nothing ran; only the report is kept until delivered (the id is not marked executed)."""
        log.warning("job %s refused: %s", job_id, reason)
        return self._final(wire.JobReport(job_id=job_id, state="refused", reason=reason))

    def handle(self, token: str) -> wire.JobReport | None:
        """Check one job and run it if it passes. Returns the final report (None when nothing can be said)."""
        job_id = _job_id_of(token)
        if job_id is None:
            digest = hash(token)
            if digest not in self._unreadable:
                self._unreadable.add(digest)
                log.warning("a job without a readable job id was ignored")
            return None
        if self._job_key is None:
            return self._refuse(job_id, "no_job_key")
        try:
            job = wire.verify_job(token, self._job_key)
        except wire.SignatureError:
            return self._refuse(job_id, "bad_signature")
        except wire.MalformedError as exc:
            kind = _unverified_claims(token).get("kind")
            if isinstance(kind, str) and kind not in KNOWN_KINDS and "kind" in str(exc):
                return self._refuse(job_id, "unknown_kind")
            log.warning("job %s is malformed: %s", job_id, exc)
            return self._refuse(job_id, "malformed")
        if job.device_id != self.identity.device_id:
            return self._refuse(job_id, "wrong_device")
        if self.ledger.known(job.job_id):
            if self.ledger.has_report(job.job_id):  # done, but the server has not heard: say it again
                self.flush_reports()
                return None
            if job.job_id in self._running:  # sent again because our "running" report was lost: keep going
                return None
            return self._refuse(job.job_id, "replayed")
        if self.client.clock_offset is None:
            log.info("job %s waits: the server's time is not known yet", job.job_id)
            return None
        now = self.client.server_now()
        if now >= job.expires_at:
            return self._refuse(job.job_id, "expired")
        if job.issued_at > now + CLOCK_SKEW:
            return self._refuse(job.job_id, "not_yet_valid")
        if not self.ledger.claim(job):  # another thread took it meanwhile
            return self._refuse(job.job_id, "replayed")
        self.handled += 1
        log.info("job %s: %s", job.job_id, job.kind)
        self._running.add(job.job_id)
        try:
            self._progress(job.job_id, "running")
            return self._execute(job)
        except Exception as exc:
            log.exception("job %s (%s) failed", job.job_id, job.kind)
            return self._final(wire.JobReport(job_id=job.job_id, state="failed", reason=_reason_of(exc)))
        finally:
            self._running.discard(job.job_id)

    def _execute(self, job: wire.Job) -> wire.JobReport | None:
        run: dict[str, Callable[[wire.Job], wire.JobReport | None]] = {
            "restart_agent": self._restart,
            "reboot": self._reboot,
            "push_config": self._push_config,
            "collect_diagnostics": self._diagnostics,
            "self_test": self._self_test,
            "rotate_key": self._rotate_key,
            "set_log_level": self._set_log_level,
            "factory_reset": self._factory_reset,
        }
        return run[job.kind](job)

    def _ok(self, job: wire.Job, output: str | None = None) -> wire.JobReport:
        return self._final(wire.JobReport(job_id=job.job_id, state="succeeded", output=output))

    def _fail(self, job: wire.Job, reason: str) -> wire.JobReport:
        log.warning("job %s (%s) failed: %s", job.job_id, job.kind, reason)
        return self._final(wire.JobReport(job_id=job.job_id, state="failed", reason=reason))

    # ---- the kinds -----------------------------------------------------------------------------------

    def _restart(self, job: wire.Job) -> None:
        self.ledger.set_state(job.job_id, "restarting")  # reported "succeeded" after the next start
        self._halted = True
        log.warning("restarting the agent (job %s)", job.job_id)
        self.hooks.stop_agent(RESTART_EXIT_CODE)

    def _reboot(self, job: wire.Job) -> wire.JobReport | None:
        self.ledger.set_state(job.job_id, "rebooting")  # reported "succeeded" after the next start
        command = list(self.hooks.reboot_command)
        log.warning("rebooting the device (job %s): %s", job.job_id, " ".join(command))
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("reboot command failed: %s", exc)
            return self._fail(job, "reboot_command_failed")
        if done.returncode != 0:
            log.error("reboot command exited %d: %s", done.returncode, done.stderr[-200:].decode(errors="replace"))
            return self._fail(job, "reboot_command_failed")
        return None  # the machine is going down; "succeeded" is reported after it is back

    def _push_config(self, job: wire.Job) -> wire.JobReport | None:
        if job.config is None:
            return self._final(wire.JobReport(job_id=job.job_id, state="refused", reason="no_config"))
        path = self.hooks.config_path
        try:
            validate_config_text(job.config, path, self.hooks.environ, self.hooks.store)
        except ConfigRefusedError as exc:
            log.warning("pushed configuration (job %s) refused, the current one stays: %s", job.job_id, exc)
            return self._final(wire.JobReport(job_id=job.job_id, state="refused", reason=exc.reason))
        had_previous = path.is_file()
        if had_previous:
            write_file_atomically(previous_config_path(path), path.read_bytes())
        self.ledger.set_state(job.job_id, "config_applied", {"had_previous": had_previous, "starts": 0})
        write_file_atomically(path, job.config.encode("utf-8"))
        self._halted = True
        log.warning("configuration from job %s applied; restarting the agent with it", job.job_id)
        self.hooks.stop_agent(RESTART_EXIT_CODE)
        return None

    def _diagnostics(self, job: wire.Job) -> wire.JobReport:
        return self._ok(job, self.collect_diagnostics())

    def collect_diagnostics(self, cap: int = MAX_BUNDLE_BYTES) -> str:
        """Versions, identity, health, configuration (redacted), recent jobs, recent errors and log lines."""
        ident = self.identity
        device = [
            f"device_id = {ident.device_id}",
            f"name = {ident.name}",
            f"room = {ident.room}",
            f"site = {ident.site}",
            f"ward = {ident.ward}",
            f"server_url = {ident.server_url}",
            f"device_time = {time.time():.3f}",
            f"server_time = {self.client.server_now():.3f}",
            f"clock_offset_s = {self.client.clock_offset}",
        ]
        versions = [
            f"wardsight = {__version__}",
            f"python = {sys.version.split()[0]}",
            f"platform = {platform.platform()}",
        ]
        for package in ("numpy", "opencv-python-headless", "ai-edge-litert", "pydantic", "cryptography", "aiohttp"):
            try:
                versions.append(f"{package} = {importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{package} = not installed")
        config = self.hooks.config
        if config is not None:
            with contextlib.suppress(WardSightError):
                from accelerators.catalog import get_model

                model = get_model(config.model)
                versions.append(f"model = {model.name} {model.version}")
        health = ["not available"]
        if self.hooks.health is not None:
            try:
                health = flatten(self.hooks.health().model_dump(mode="json", exclude_none=True))
            except Exception as exc:  # diagnostics must come back even when a reading fails
                health = [f"unavailable: {type(exc).__name__}"]
        system = _system_lines(self.device_dir)
        configuration = ["unknown"]
        if config is not None:  # privacy-region names are free text about the room: they stay on the device
            dumped = config.model_dump(mode="json")
            dumped["privacy_regions"] = [{"polygon": r["polygon"]} for r in dumped.get("privacy_regions", [])]
            configuration = flatten(dumped)
        jobs = [f"{job_id} {kind} {state}" for job_id, kind, state in self.ledger.recent()]
        sections: list[tuple[str, list[str]]] = [
            ("device", device),
            ("versions", versions),
            ("health", health),
            ("system", system),
            ("config", configuration),
            ("jobs", jobs),
            ("recent errors", self.ring.errors()[-50:]),
            ("logs", self.ring.records()),
        ]
        return build_bundle(sections, cap=cap, trim="logs")

    def _self_test(self, job: wire.Job) -> wire.JobReport:
        test = self.hooks.self_test
        if test is None:
            if self.hooks.store is None:
                return self._fail(job, "self_test_unavailable")
            store = self.hooks.store
            model = self.hooks.config.model if self.hooks.config else "movenet-multipose"

            def test() -> SelfTestOutcome:
                return factory_self_test(store, model)

        outcome = test()
        log.info("self-test: %s (%s)", "passed" if outcome.ok else "failed", outcome.detail)
        if outcome.ok:
            return self._ok(job)
        reason = outcome.reason if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", outcome.reason) else "self_test_failed"
        return self._fail(job, reason)

    def _rotate_key(self, job: wire.Job) -> wire.JobReport:
        pending = self.hooks.pending_events
        deadline = time.monotonic() + 15.0
        while pending is not None and pending() > 0 and time.monotonic() < deadline:  # signed with the old key
            time.sleep(0.1)
        key_path = self.device_dir / "key.pem"
        next_path = self.device_dir / "key.pem.next"
        new_key = wire.generate_key()
        wire.write_private_key(new_key, next_path)  # 0600; becomes key.pem only once the server has it
        public = wire.encode_public_key(new_key.public_key())
        device_id = self.identity.device_id

        def body(nonce: str) -> bytes:
            possession = sign_possession(new_key, device_id, job.job_id, nonce)
            return json.dumps({"job_id": job.job_id, "public_key": public, "possession": possession}).encode()

        try:
            reply = self.client.request_bound("POST", ROTATE_PATH, body, "application/json")
        except NotAuthorizedError:
            next_path.unlink(missing_ok=True)
            raise
        except UnreachableError:
            # The server may have taken the new key; keep it beside the old one for an operator to recover.
            log.error("key rotation (job %s): no answer; the new key is kept in %s", job.job_id, next_path)
            return self._fail(job, "rotation_unconfirmed")
        if reply.status != 200:
            next_path.unlink(missing_ok=True)
            log.warning("key rotation refused (HTTP %d): %s", reply.status, reply.error)
            return self._fail(job, "rotation_refused")
        try:
            wire.CredentialGrant.model_validate(reply.body)
        except ValueError:
            log.error("key rotation (job %s): malformed credential in the reply; new key kept", job.job_id)
            return self._fail(job, "rotation_unconfirmed")
        os.replace(next_path, key_path)  # the old key is revoked: the new one is the device's key from now
        with contextlib.suppress(OSError):
            fsync_dir(self.device_dir)
        self.client.adopt_key(new_key, reply)  # the credential from the reply, saved
        log.warning("device key rotated (job %s)", job.job_id)
        return self._ok(job)

    def _set_log_level(self, job: wire.Job) -> wire.JobReport:
        name = job.params.get("level")
        seconds = job.params.get("duration_s", DEFAULT_LOG_LEVEL_SECONDS)
        if (
            not isinstance(name, str)
            or name.lower() not in LOG_LEVELS
            or isinstance(seconds, bool | str)
            or not 0 < seconds <= MAX_LOG_LEVEL_SECONDS
        ):
            return self._final(wire.JobReport(job_id=job.job_id, state="refused", reason="bad_params"))
        self.set_log_level(LOG_LEVELS[name.lower()], float(seconds))
        return self._ok(job)

    def set_log_level(self, level: int, seconds: float) -> None:
        """The root logger at ``level`` for ``seconds``, then back to what it was before the first change."""
        root = logging.getLogger()
        with self._level_lock:
            if self._level_timer is not None:
                self._level_timer.cancel()
            if self._level_before is None:
                self._level_before = root.level
            root.setLevel(level)
            self._level_timer = threading.Timer(seconds, self._restore_level)
            self._level_timer.daemon = True
            self._level_timer.start()
        log.warning("log level %s for %.0f s", logging.getLevelName(level), seconds)

    def _restore_level(self) -> None:
        with self._level_lock:
            if self._level_timer is not None:
                self._level_timer.cancel()
                self._level_timer = None
            if self._level_before is not None:
                logging.getLogger().setLevel(self._level_before)
                log.warning("log level back to %s", logging.getLevelName(self._level_before))
                self._level_before = None

    def _factory_reset(self, job: wire.Job) -> None:
        log.warning(
            "factory reset (job %s): wiping the identity, keys, credential, outbox and configuration", job.job_id
        )
        self._halted = True
        path = self.hooks.config_path
        for config_file in (path, previous_config_path(path)):
            config_file.unlink(missing_ok=True)
        report = wire.JobReport(job_id=job.job_id, state="succeeded")
        for attempt in range(3):  # the last thing this identity says; it cannot report afterwards
            try:
                self._post_report(report)
                break
            except (UnreachableError, NotAuthorizedError) as exc:
                log.warning("factory reset not reported (%s)%s", exc, "; retrying" if attempt < 2 else "")
                time.sleep(1.0)
        self.ledger.close()
        wipe_device_dir(self.device_dir)
        self.hooks.stop_agent(FACTORY_RESET_EXIT_CODE)


def wipe_device_dir(device_dir: Path) -> None:
    """Delete everything in the device directory; private key files are overwritten first (best effort)."""
    for key_file in device_dir.glob("key.pem*"):
        with contextlib.suppress(OSError):
            size = key_file.stat().st_size
            write_file_atomically(key_file, b"\0" * size)
    shutil.rmtree(device_dir, ignore_errors=True)


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return "io_error"
    return "internal_error"


def _system_lines(device_dir: Path) -> list[str]:
    from firmware.heartbeat import read_system

    readings = read_system()
    lines = [f"cpu_temp_c = {readings.cpu_temp_c}", f"mem_used_mb = {readings.mem_used_mb}"]
    lines.append(f"mem_total_mb = {readings.mem_total_mb}")
    with contextlib.suppress(OSError):
        lines.append(f"uptime_s = {Path('/proc/uptime').read_text().split()[0]}")
    with contextlib.suppress(OSError):
        lines.append(f"load_avg = {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(device_dir)
        lines.append(f"disk_free_mb = {usage.free / 1e6:.0f} of {usage.total / 1e6:.0f}")
    return lines
