"""The device's job runner, job by job, against a real fleet server (TLS, SQLite) and a real enrolled client.

Jobs here are signed in the test with the server's own job key (or another key), so the runner can be fed
what a real server would never send: forged, expired, unknown and replayed jobs. What the runner does is
read back from its own files (ledger, device.toml) and the callbacks the agent would give it.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path

import jwt
import numpy as np
import pytest

from firmware.diagnostics import MAX_LINE, LogRing, build_bundle, check_bundle, redact
from firmware.exitcodes import FACTORY_RESET_EXIT_CODE, RESTART_EXIT_CODE
from firmware.identity import IdentityStore
from firmware.jobs.config import previous_config_path, recover_pushed_config
from firmware.jobs.hooks import JobHooks
from firmware.jobs.ledger import JobLedger, ledger_path
from firmware.jobs.runner import JobRunner
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.jobs.logic import output_problem
from fleet.keys import load_server_keys
from fleet.server import BackgroundServer
from wardsight import wire
from wardsight.bundle import Bundle
from wardsight.fetch import ArtifactStore
from wardsight.paths import models_dir

TEN_YEARS = 10 * 365.25 * 86400
OLD_CONFIG = """\
heartbeat_seconds = 5.0
[source]
kind = "file"
realtime = false
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    config = ServerConfig(port=0, database=root / "fleet.db")
    server = BackgroundServer(config).start()
    yield server, config, load_server_keys(root / "fleet-keys").jobs
    server.stop()


class Device:
    """An enrolled device directory, its client (with the clock the test gives it) and a runner factory."""

    def __init__(self, tmp_path: Path, fleet, clock=time.time, store=None) -> None:
        server, config, self.job_key = fleet
        self.dir = tmp_path / "device"
        self.config_path = tmp_path / "device.toml"
        ids = IdentityStore(self.dir)
        self.identity, _ = ids.enroll(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem), "cam-1")
        _, self.client = ids.client(clock=clock, timeout=5.0)
        self.stops: list[int] = []
        self.store = store
        self.runners: list[JobRunner] = []

    def runner(self, **hooks) -> JobRunner:
        settings = dict(
            config_path=self.config_path, stop_agent=self.stops.append, store=self.store, log_ring=LogRing()
        )
        settings.update(hooks)
        runner = JobRunner(self.client, self.identity, self.dir, JobHooks(**settings))
        runner.resume()
        self.runners.append(runner)
        return runner

    def learn_server_time(self) -> None:
        self.client.request("GET", "/api/v1/device/jobs")  # any authenticated request brings the server's time
        assert self.client.clock_offset is not None

    def job(self, kind="restart_agent", *, key=None, device_id=None, expires_in=600.0, issued=None, **fields) -> str:
        now = time.time()
        job = wire.Job(
            job_id="job-" + os.urandom(16).hex(),
            device_id=device_id or self.identity.device_id,
            kind=kind,
            issued_at=now - 1 if issued is None else issued,
            expires_at=now + expires_in,
            **fields,
        )
        return wire.sign_job(job, key or self.job_key)

    def close(self) -> None:
        for runner in self.runners:
            runner.close()


@pytest.fixture
def device(tmp_path, fleet):
    dev = Device(tmp_path, fleet)
    yield dev
    dev.close()


def executed(dev: Device) -> list[tuple[str, str, str]]:
    ledger = JobLedger(ledger_path(dev.dir))
    try:
        return ledger.recent()
    finally:
        ledger.close()


# ---- refusals -------------------------------------------------------------------------------------------


def test_a_job_signed_by_another_key_is_refused_and_not_run(device):
    device.learn_server_time()
    runner = device.runner()
    forged = device.job("restart_agent", key=wire.generate_key())
    report = runner.handle(forged)
    assert report is not None and (report.state, report.reason) == ("refused", "bad_signature")
    assert device.stops == []  # the agent was not restarted
    assert executed(device) == []  # and the id is not burnt: a genuine job with it could still run


def test_a_job_for_another_device_or_of_an_unknown_kind_is_refused(device):
    device.learn_server_time()
    runner = device.runner()
    other = runner.handle(device.job("restart_agent", device_id="dev-0123456789abcdef"))
    assert other is not None and (other.state, other.reason) == ("refused", "wrong_device")
    now = time.time()
    payload = {
        "job_id": "job-" + os.urandom(16).hex(),
        "device_id": device.identity.device_id,
        "kind": "format_disk",
        "params": {},
        "issued_at": now,
        "expires_at": now + 600,
    }
    unknown = jwt.encode(payload, device.job_key, algorithm="EdDSA", headers={"typ": wire.JOB_TYP})
    report = runner.handle(unknown)
    assert report is not None and (report.job_id, report.state, report.reason) == (
        payload["job_id"],
        "refused",
        "unknown_kind",
    )
    assert device.stops == [] and executed(device) == []


@pytest.mark.parametrize("skew", [-TEN_YEARS, TEN_YEARS])
def test_expiry_is_judged_by_the_server_clock_not_the_device_clock(tmp_path, fleet, skew):
    dev = Device(tmp_path, fleet, clock=lambda: time.time() + skew)
    try:
        dev.learn_server_time()
        runner = dev.runner()
        # Expired a minute ago by the server's clock; ten years in the future by a clock ten years behind.
        stale = runner.handle(dev.job("restart_agent", issued=time.time() - 120, expires_in=-60))
        assert stale is not None and (stale.state, stale.reason) == ("refused", "expired")
        assert dev.stops == []
        # Valid for ten minutes by the server's clock; long expired by a clock ten years ahead.
        fresh = dev.job("restart_agent", expires_in=600)
        assert runner.handle(fresh) is None  # runs: the restart is reported after the next start
        assert dev.stops == [RESTART_EXIT_CODE]
    finally:
        dev.close()


def test_a_job_is_run_at_most_once_across_restarts_of_the_runner(device):
    device.learn_server_time()
    restart = device.job("restart_agent")
    first = device.runner()
    assert first.handle(restart) is None
    assert device.stops == [RESTART_EXIT_CODE]
    first.close()  # the agent exits

    second = device.runner()  # the agent is back: the restart is reported as done
    assert [(job_id, kind, state) for job_id, kind, state in executed(device)] == [
        (wire.verify_job(restart, device.job_key).job_id, "restart_agent", "done")
    ]
    assert second.flush_reports() == 1  # as the loop does before it polls: "succeeded" goes out
    replayed = second.handle(restart)
    assert replayed is not None and (replayed.state, replayed.reason) == ("refused", "replayed")
    assert device.stops == [RESTART_EXIT_CODE]  # not restarted a second time
    second.close()

    third = device.runner()  # still refused after yet another start
    again = third.handle(restart)
    assert again is not None and again.reason == "replayed"
    assert device.stops == [RESTART_EXIT_CODE]


def test_a_job_interrupted_by_a_crash_is_not_run_again(device):
    device.learn_server_time()
    token = device.job("self_test")
    ledger = JobLedger(ledger_path(device.dir))
    ledger.claim(wire.verify_job(token, device.job_key))  # as the runner does just before it runs a job
    ledger.close()  # ... and the process died while it ran
    runner = device.runner()
    assert executed(device)[0][2] == "done"
    assert [(r.state, r.reason) for r in runner.ledger.reports()] == [("failed", "interrupted")]
    assert runner.handle(token) is None  # its report had not reached the server: sent again, nothing run
    assert runner.ledger.reports() == []
    report = runner.handle(token)
    assert report is not None and report.reason == "replayed"


# ---- configuration --------------------------------------------------------------------------------------


@pytest.fixture
def configured(tmp_path, fleet, data_dir_with_models):
    # The device's own model directory: the pose model and the demo clip, none of the mask app's models.
    dev = Device(tmp_path, fleet, store=ArtifactStore(models_dir(data_dir_with_models)))
    dev.config_path.write_text(OLD_CONFIG)
    dev.learn_server_time()
    yield dev
    dev.close()


@pytest.mark.parametrize(
    ("text", "reason", "why"),
    [
        ("heartbeat_seconds = 'often'\n", "config_invalid", "heartbeat_seconds"),
        ("[source]\nkind = 'file'\nframe_rate = 5\n", "config_invalid", "frame_rate"),
        (
            "[occupancy]\nzones = ['door']\n[[zones]]\nname = 'bed'\nkind = 'bed'\n"
            "polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]\n",
            "config_invalid",
            "names zone 'door'",
        ),
        ("[bed_exit]\nenabled = true\n", "config_would_not_start", "no zone of kind 'bed'"),
        (
            "[[privacy_regions]]\nname = 'door'\npolygon = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]\n",
            "config_would_not_start",
            "has no area",
        ),
        ("[source]\nkind = 'stream'\n", "config_would_not_start", "needs source.url"),
        ("[source]\nkind = 'file'\npath = '/nonexistent/ward.mp4'\n", "config_would_not_start", "not a file"),
        ("[mask]\nenabled = true\n", "config_would_not_start", "face-detection-full-range is not on this device"),
        ("reboot_command = ['sh', '-c', 'reboot']\n", "reboot_command_is_local", "may not change reboot_command"),
        ("[updates]\nhealth_frames = 1\nhealth_seconds = 86400\n", "updates_are_local", "may not change [updates]"),
    ],
)
def test_a_bad_config_is_refused_and_the_old_one_kept(configured, caplog, text, reason, why):
    runner = configured.runner()
    with caplog.at_level(logging.WARNING, logger="wardsight.device.jobs"):
        report = runner.handle(configured.job("push_config", config=text))
    assert report is not None and (report.state, report.reason) == ("refused", reason)
    assert why in caplog.text
    assert configured.config_path.read_text() == OLD_CONFIG
    assert not previous_config_path(configured.config_path).exists()
    assert configured.stops == []


def test_a_pushed_config_that_does_not_start_is_rolled_back_at_the_next_start(configured):
    new = OLD_CONFIG.replace("heartbeat_seconds = 5.0", "heartbeat_seconds = 2.0")
    token = configured.job("push_config", config=new)
    runner = configured.runner()
    assert runner.handle(token) is None  # applied; the agent restarts with it
    assert configured.stops == [RESTART_EXIT_CODE]
    assert configured.config_path.read_text() == new
    assert previous_config_path(configured.config_path).read_text() == OLD_CONFIG
    runner.close()

    # First start with the new file: nothing to undo. That start fails before the runner resumes ...
    assert recover_pushed_config(configured.dir, configured.config_path) is None
    # ... so the next start puts the previous file back and the job is reported failed.
    assert "did not start" in (recover_pushed_config(configured.dir, configured.config_path) or "")
    assert configured.config_path.read_text() == OLD_CONFIG
    after = configured.runner()
    assert [(r.state, r.reason) for r in after.ledger.reports()] == [("failed", "config_failed_at_start")]
    assert after.handle(token) is None  # sent again: its report goes out, the file is not applied again
    again = after.handle(token)
    assert again is not None and again.reason == "replayed"
    assert configured.config_path.read_text() == OLD_CONFIG
    assert executed(configured)[0][2] == "done" and configured.stops == [RESTART_EXIT_CODE]


def test_a_pushed_config_that_starts_is_reported_after_the_restart(configured):
    new = OLD_CONFIG + "[occupancy]\nstable_seconds = 2.0\n"
    runner = configured.runner()
    job_id = wire.verify_job(token := configured.job("push_config", config=new), configured.job_key).job_id
    assert runner.handle(token) is None
    runner.close()
    assert recover_pushed_config(configured.dir, configured.config_path) is None  # the start ...
    configured.runner()  # ... got as far as the runner: the configuration works
    assert configured.config_path.read_text() == new
    assert executed(configured) == [(job_id, "push_config", "done")]
    assert recover_pushed_config(configured.dir, configured.config_path) is None  # nothing left to undo
    assert configured.config_path.read_text() == new


# ---- privacy: a change that removes, shrinks or moves a privacy region or changes the camera needs approval ------

DOOR = "[[0.0, 0.0], [0.25, 0.0], [0.25, 0.5], [0.0, 0.5]]"
CAMERA_CONFIG = f"""\
heartbeat_seconds = 5.0
[source]
kind = "stream"
url = "rtsp://viewer:s3cret@10.0.6.42/stream1"
[[privacy_regions]]
name = "bathroom door"
polygon = {DOOR}
"""
APPROVED = wire.PrivacyApproval(approved_by=("user:alice", "user:bob"), at=1_800_000_000.0)


@pytest.fixture
def camera(tmp_path, fleet, data_dir_with_models):
    dev = Device(tmp_path, fleet, store=ArtifactStore(models_dir(data_dir_with_models)))
    dev.config_path.write_text(CAMERA_CONFIG)
    dev.learn_server_time()
    yield dev
    dev.close()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (CAMERA_CONFIG.split("[[privacy_regions]]")[0], "region 'bathroom door' (12.5% of the frame) is removed"),
        (CAMERA_CONFIG.replace(DOOR, "[[0.0, 0.0], [0.1, 0.0], [0.1, 0.5], [0.0, 0.5]]"), "'bathroom door' shrinks"),
        (CAMERA_CONFIG.replace(DOOR, "[[0.5, 0.0], [0.75, 0.0], [0.75, 0.5], [0.5, 0.5]]"), "'bathroom door' shrinks"),
        (CAMERA_CONFIG.replace("10.0.6.42", "10.0.7.9"), "the camera source changes to another stream URL"),
        (CAMERA_CONFIG.replace('kind = "stream"', 'kind = "file"'), "the camera source changes from stream to file"),
    ],
)
def test_a_privacy_reducing_config_without_approval_is_refused_and_nothing_changes(camera, caplog, text, why):
    runner = camera.runner()
    for approval in (None, wire.PrivacyApproval(approved_by=("user:alice", "user:alice"), at=1.0)):  # one person
        with caplog.at_level(logging.WARNING, logger="wardsight.device.jobs"):
            report = runner.handle(camera.job("push_config", config=text, privacy_approval=approval))
        assert report is not None and (report.state, report.reason) == ("refused", "privacy_change_not_approved")
        assert why in caplog.text
        assert camera.config_path.read_text() == CAMERA_CONFIG
        assert not previous_config_path(camera.config_path).exists() and camera.stops == []


def test_an_approved_privacy_reducing_config_is_applied(camera, caplog):
    text = CAMERA_CONFIG.split("[[privacy_regions]]")[0]
    token = camera.job("push_config", config=text, privacy_approval=APPROVED)
    assert jwt.decode(token, options={"verify_signature": False})["privacy_approval"]["approved_by"] == [
        "user:alice",
        "user:bob",
    ]
    with caplog.at_level(logging.WARNING, logger="wardsight.device.jobs"):
        assert camera.runner().handle(token) is None  # applied; the agent restarts with it
    assert "approved by user:alice and user:bob" in caplog.text
    assert camera.config_path.read_text() == text and camera.stops == [RESTART_EXIT_CODE]


@pytest.mark.parametrize(
    "text",
    [
        CAMERA_CONFIG + '[[privacy_regions]]\nname = "window"\npolygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]\n',
        CAMERA_CONFIG.replace(DOOR, "[[0.0, 0.0], [0.3, 0.0], [0.3, 0.6], [0.0, 0.6]]").replace("bathroom", "wc"),
        CAMERA_CONFIG.replace("s3cret", "n3w-s3cret"),  # the same camera, its password rotated
        CAMERA_CONFIG.replace("heartbeat_seconds = 5.0", "heartbeat_seconds = 2.0"),
    ],
)
def test_a_config_that_keeps_privacy_needs_no_approval(camera, text):
    token = camera.job("push_config", config=text)
    assert "privacy_approval" not in jwt.decode(token, options={"verify_signature": False})  # as agents before it
    assert camera.runner().handle(token) is None
    assert camera.config_path.read_text() == text and camera.stops == [RESTART_EXIT_CODE]


def test_an_unreadable_current_file_counts_as_a_privacy_change(camera):
    camera.config_path.write_text("heartbeat_seconds = 'often'\n")
    report = camera.runner().handle(camera.job("push_config", config=CAMERA_CONFIG))
    assert report is not None and report.reason == "privacy_change_not_approved"
    assert camera.runner().handle(camera.job("push_config", config=CAMERA_CONFIG, privacy_approval=APPROVED)) is None


# ---- diagnostics ---------------------------------------------------------------------------------------


def test_diagnostics_are_text_without_pixels_or_credentials_within_the_cap(device):
    ring = LogRing(capacity=2000)
    log = logging.getLogger("wardsight.test.diag")
    log.addHandler(ring)
    log.setLevel(logging.DEBUG)
    frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    encoded = base64.b64encode(frame.tobytes()).decode()
    try:
        log.warning("camera rtsp://admin:hunter2@10.1.2.3:554/stream1 dropped")
        log.error("frame dump %s", encoded)  # pixels that reached a log line must not leave the device
        log.error("thumbnail %s done", encoded[-800:])
        log.error("raw frame %s", frame.tobytes()[:600])
        log.error("crop %s", frame[0, :, 0].tolist())
        log.warning("terminal \x1b[31mred\x1b[0m and a NUL \x00 and unicode \u00e9\u4e2d")
        log.info("credential WardSight %s used", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJkZXYifQ.c2lnbmF0dXJl")
        log.info("token wst.1a2b3c4d5e6f.SECRETSECRET and password=letmein&x=1")
        for i in range(1500):
            log.debug("line %d %s", i, "x y " * 150)
    finally:
        log.removeHandler(ring)
    from wardsight.device_config import DeviceConfig

    config = DeviceConfig.model_validate(
        {
            "source": {"kind": "stream", "url": "rtsp://nurse:s3cret@cam-3b12.local/live"},
            "privacy_regions": [{"name": "Mr Smith's bed", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.6]]}],
        }
    )
    runner = device.runner(log_ring=ring, config=config)
    for cap in (256 * 1024, 16 * 1024):  # the report's limit, and a small one
        text = runner.collect_diagnostics(cap=cap)
        assert len(text.encode()) <= cap
        assert output_problem(text) is None  # what the server checks again
        check_bundle(text, cap)
        for secret in ("hunter2", "s3cret", "SECRETSECRET", "letmein", "c2lnbmF0dXJl", "Smith"):
            assert secret not in text
        assert "rtsp://***@10.1.2.3:554/stream1" in text and "rtsp://***@cam-3b12.local/live" in text
        assert encoded[:200] not in text and encoded[-200:] not in text
        assert "frame dump [cut]" in text and "thumbnail [long token removed] done" in text
        assert "[bytes removed]" in text and "[numbers removed]" in text
        assert ", ".join(str(v) for v in frame[0, 20:40, 0].tolist()) not in text
        assert all(32 <= ord(c) < 127 or c == "\n" for c in text)
        assert max(len(line) for line in text.splitlines()) <= MAX_LINE
        for section in ("== device ==", "== versions ==", "== config ==", "== recent errors ==", "== logs =="):
            assert section in text
        assert f"device_id = {device.identity.device_id}" in text and "wardsight = " in text
        assert "line 1499 " in text  # the newest lines are kept ...
    assert "older lines dropped" in text and "line 0 " not in text  # ... the oldest go to fit the cap


def test_a_diagnostics_job_reports_the_bundle(device):
    device.learn_server_time()
    runner = device.runner()
    report = runner.handle(device.job("collect_diagnostics"))
    assert report is not None and report.state == "succeeded" and report.output
    assert "== health ==" in report.output and output_problem(report.output) is None


def test_redaction_and_the_last_check():
    assert redact("rtsp://user:pa:ss@cam/1 http://a@b") == "rtsp://***@cam/1 http://***@b"
    assert redact("Authorization: Bearer abcdefghijklmnop") == "Authorization: Bearer ***"
    assert "PRIVATE" not in redact("-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----")
    assert redact('{"password": "x1"}') == '{"password": "***"}'
    for bad in ("caf\u00e9", "a\x00b", "x" * (MAX_LINE + 1), "A" * 200, "rtsp://u:p@h/"):
        with pytest.raises(ValueError):
            check_bundle(bad)
    with pytest.raises(ValueError):
        check_bundle("short\n" * 100, cap=100)
    assert build_bundle([("logs", ["\x89PNG\r\n\x1a\n" + "B" * 500])]).startswith("== logs ==\n?PNG")


# ---- the other kinds -------------------------------------------------------------------------------------


def test_set_log_level_for_a_time_then_back(device):
    device.learn_server_time()
    root = logging.getLogger()
    before = root.level
    runner = device.runner()
    bad = runner.handle(device.job("set_log_level", params={"level": "loud", "duration_s": 60}))
    assert bad is not None and (bad.state, bad.reason) == ("refused", "bad_params")
    report = runner.handle(device.job("set_log_level", params={"level": "debug", "duration_s": 60}))
    assert report is not None and report.state == "succeeded"
    assert root.level == logging.DEBUG
    runner.set_log_level(logging.ERROR, 0.2)  # a second change keeps the original level to go back to
    deadline = time.monotonic() + 5
    while root.level != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert root.level == before


def test_reboot_runs_the_command_and_is_reported_after_the_next_start(device, tmp_path):
    device.learn_server_time()
    failing = device.runner(reboot_command=["sh", "-c", "exit 3"])
    report = failing.handle(device.job("reboot"))
    assert report is not None and (report.state, report.reason) == ("failed", "reboot_command_failed")
    marker = tmp_path / "rebooted"
    runner = device.runner(reboot_command=["sh", "-c", f"echo down > {marker}"])
    assert runner.handle(device.job("reboot")) is None  # the machine goes down; nothing to report yet
    assert marker.read_text() == "down\n"
    assert sorted(state for _, _, state in executed(device)) == ["done", "rebooting"]
    device.runner()  # back after the reboot: reported succeeded
    assert [state for _, _, state in executed(device)] == ["done", "done"]
    assert [r.state for r in device.runners[-1].ledger.reports()] in (["succeeded"], ["failed", "succeeded"])


def test_factory_reset_wipes_the_device(device):
    device.learn_server_time()
    device.config_path.write_text(OLD_CONFIG)
    runner = device.runner()
    assert (device.dir / "key.pem").exists()
    assert runner.handle(device.job("factory_reset")) is None
    assert device.stops == [FACTORY_RESET_EXIT_CODE]
    assert not device.dir.exists() and not device.config_path.exists()


def test_a_job_sent_again_while_it_runs_is_neither_run_twice_nor_refused(device):
    """The server re-sends a job until it hears of it; if the "running" report was lost, that is no replay."""
    device.learn_server_time()
    token = device.job("self_test")
    runner = device.runner()
    job = wire.verify_job(token, device.job_key)
    runner.ledger.claim(job)  # handle() claims the job, marks it running, then runs it ...
    runner._running.add(job.job_id)  # ... and while it runs, the server sends it again
    assert runner.handle(token) is None  # the repeat is ignored, not refused
    assert runner.ledger.reports() == []
    runner.close()
