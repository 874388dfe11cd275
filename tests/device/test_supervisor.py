"""The in-process supervisor (``firmware.supervisor``): its restart and backoff decisions on an injected clock, and
its loop on a fake agent with a fake wait (nothing sleeps), including a pushed configuration that does not start.

The demo that runs it end to end: tests/test_demo_restart.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from firmware.agent import AgentStats
from firmware.assembly import device_dir
from firmware.exitcodes import FACTORY_RESET_EXIT_CODE
from firmware.jobs.config import previous_config_path
from firmware.jobs.ledger import JobLedger, ledger_path
from firmware.runtime import RunResult
from firmware.supervisor import (
    RestartPolicy,
    Restarts,
    RunEnd,
    Supervisor,
    describe,
    starter,
    under_service_manager,
)
from wardsight import wire
from wardsight.device_config import DeviceConfig, load_device_config
from wardsight.errors import WardSightError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def result(restart: str | None = None, exit_code: int | None = None, frames: int = 10) -> RunResult:
    return RunResult(AgentStats(processed=frames), 0, 0, 0, frames, 0, restart, exit_code)


FAILED = RunEnd("failed", "camera 3 did not open")


# ---- the decisions -----------------------------------------------------------------------------------------


def test_a_requested_restart_comes_after_a_short_pause_and_is_no_failure():
    clock = FakeClock()
    restarts = Restarts(RestartPolicy(), clock)
    for _ in range(20):  # a model switch, a pushed configuration, a job: as often as asked
        decision = restarts.decide(RunEnd("restart", "switching to model 1.1"))
        assert (decision.again, decision.delay_s) == (True, 0.5)
        assert decision.message == "the agent stopped to restart (switching to model 1.1); starting it again"
    assert not restarts.failures


def test_failures_back_off_doubling_and_the_fifth_within_a_minute_gives_up():
    clock = FakeClock()
    restarts = Restarts(RestartPolicy(), clock)
    delays = []
    for _ in range(4):
        decision = restarts.decide(FAILED)
        assert decision.again
        delays.append(decision.delay_s)
        clock.advance(decision.delay_s + 2.0)  # waited, then the start failed again 2 s later
    assert delays == [1.0, 2.0, 4.0, 8.0]
    final = restarts.decide(FAILED)  # 23 s after the first
    assert (final.again, final.delay_s) == (False, 0.0)
    assert final.message == (
        "the agent failed 5 times within 60 s; not starting it again (last failure: camera 3 did not open)"
    )


def test_failures_older_than_the_window_are_forgotten():
    clock = FakeClock()
    restarts = Restarts(RestartPolicy(), clock)
    assert restarts.decide(FAILED).delay_s == 1.0
    clock.advance(30)
    assert restarts.decide(FAILED).delay_s == 2.0
    clock.advance(31)  # the first failure is 61 s old now
    assert restarts.decide(FAILED).delay_s == 2.0
    clock.advance(600)  # a long good run: the next failure starts the backoff over
    decision = restarts.decide(FAILED)
    assert decision.delay_s == 1.0
    assert decision.message == "the agent failed: camera 3 did not open; starting it again in 1 s"
    # Failures spread out never give up: one every 20 s keeps three in the window.
    for _ in range(50):
        clock.advance(20)
        assert restarts.decide(FAILED).again


def test_the_backoff_is_capped_and_the_policy_is_configurable():
    restarts = Restarts(RestartPolicy(backoff_s=0.5, max_backoff_s=3.0, max_failures=8, window_s=10), FakeClock())
    assert [restarts.decide(FAILED).delay_s for _ in range(7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert not restarts.decide(FAILED).again


def test_an_end_for_good_is_not_restarted():
    decision = Restarts(RestartPolicy(), FakeClock()).decide(RunEnd("ended", "its source ended"))
    assert (decision.again, decision.message) == (False, "the agent stopped: its source ended")


def test_only_a_service_manager_restarts_the_process():
    assert not under_service_manager({})
    assert under_service_manager({"INVOCATION_ID": "5f1c"})
    assert under_service_manager({"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert describe(WardSightError("no camera 3")) == "no camera 3"
    assert describe(ValueError("bad")) == "ValueError: bad"


# ---- the loop ----------------------------------------------------------------------------------------------


class Script:
    """A fake agent: each start takes ``run_s`` of the fake clock and ends as the next item says (a RunResult or
    an exception); after the script it runs until stopped."""

    def __init__(self, clock: FakeClock, *ends: RunResult | Exception, run_s: float = 3.0) -> None:
        self.clock, self.ends, self.run_s = clock, list(ends), run_s
        self.durations: list[float | None] = []
        self.supervisor: Supervisor | None = None

    def __call__(self, stop: threading.Event, duration: float | None) -> RunResult:
        self.durations.append(duration)
        self.clock.advance(self.run_s if duration is None else min(self.run_s, duration))
        if not self.ends:
            assert self.supervisor is not None
            self.supervisor.stop()  # Ctrl-C while it runs
            assert stop.is_set()  # the agent's own stop event is set: it stops after this frame
            return result()
        end = self.ends.pop(0)
        if isinstance(end, Exception):
            raise end
        return end


def supervise(clock: FakeClock, script: Script, duration: float | None = None):
    said: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    supervisor = Supervisor(script, clock=clock, echo=said.append, wait=wait)
    script.supervisor = supervisor
    return supervisor.run(duration), said, waits


def test_restarts_and_failures_until_stopped():
    clock = FakeClock()
    script = Script(clock, result(restart="new model"), WardSightError("no camera"), RuntimeError("boom"))
    out, said, waits = supervise(clock, script)
    assert waits == [0.5, 1.0, 2.0]
    assert said == [
        "the agent stopped to restart (new model); starting it again",
        "the agent failed: no camera; starting it again in 1 s",
        "the agent failed: RuntimeError: boom; starting it again in 2 s",
    ]
    assert (out.starts, out.failures, len(out.runs), out.stopped, out.gave_up) == (4, 2, 2, True, False)
    assert out.ended == "stopped" and out.frames_captured == 20 and out.last is not None


def test_it_gives_up_after_five_failures_in_a_minute_and_says_why():
    clock = FakeClock()
    out, said, waits = supervise(clock, Script(clock, *[WardSightError("camera 3 did not open")] * 5, run_s=0.2))
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert (out.starts, out.failures, out.gave_up, out.stopped, out.runs) == (5, 5, True, False, [])
    assert (
        out.ended
        == said[-1]
        == ("the agent failed 5 times within 60 s; not starting it again (last failure: camera 3 did not open)")
    )


def test_the_duration_covers_every_start_and_a_factory_reset_ends_it():
    clock = FakeClock()
    script = Script(clock, result(restart="maintenance job"), result(restart="maintenance job"), run_s=4.0)
    script.ends.append(result())  # the third start runs to the end of the duration
    out, said, waits = supervise(clock, script, duration=10.0)
    assert script.durations == [10.0, pytest.approx(5.5), pytest.approx(1.0)]
    assert (out.starts, out.stopped, out.ended) == (3, True, "the duration passed")

    clock = FakeClock()
    out, said, _ = supervise(clock, Script(clock, result(exit_code=FACTORY_RESET_EXIT_CODE)))
    assert (out.starts, out.stopped, out.gave_up) == (1, False, False)
    assert said == ["the agent stopped: a factory reset wiped this device; it needs a new enrollment"]


def test_a_restart_asked_for_while_stopping_is_not_made():
    clock = FakeClock()
    supervisor: Supervisor

    def start(stop: threading.Event, duration: float | None) -> RunResult:
        supervisor.stop()  # Ctrl-C just as a rollout asked for a restart
        return result(restart="new model")

    supervisor = Supervisor(start, clock=clock, echo=lambda _: None, wait=lambda _: None)
    out = supervisor.run()
    assert (out.starts, out.stopped, out.ended) == (1, True, "stopped")


def test_stop_interrupts_the_backoff_at_once():
    supervisor = Supervisor(
        lambda stop, duration: (_ for _ in ()).throw(WardSightError("no camera")), echo=lambda _: None
    )
    threading.Timer(0.2, supervisor.stop).start()
    began = time.monotonic()
    out = supervisor.run()  # the real wait: 1 s backoff after the first failure, cut short by stop()
    assert time.monotonic() - began < 0.9
    assert (out.starts, out.failures, out.stopped) == (1, 1, True)


# ---- a pushed configuration that does not start ---------------------------------------------------------------

GOOD = """\
name = "cam"
heartbeat_seconds = 5.0
[[zones]]
name = "door"
kind = "door"
polygon = [[0, 0], [0.3, 0], [0.3, 1]]
"""
BAD = GOOD.replace("heartbeat_seconds = 5.0", "heartbeat_seconds = 2.0")  # the fake agent cannot start with it


def test_a_pushed_configuration_that_does_not_start_is_put_back_and_the_last_good_one_runs(tmp_path: Path):
    data = tmp_path / "data"
    config_path = data / "device.toml"
    ddir = device_dir(data)
    ddir.mkdir(parents=True)
    # What the push_config job leaves behind before it asks for the restart: the new file, the previous one kept,
    # the job in the ledger as applied and not yet started with.
    previous_config_path(config_path).write_text(GOOD)
    config_path.write_text(BAD)
    job = wire.Job(
        job_id="job-" + "a" * 32, device_id="dev-1", kind="push_config", config=BAD, issued_at=1, expires_at=2
    )
    ledger = JobLedger(ledger_path(ddir))
    assert ledger.claim(job)
    ledger.set_state(job.job_id, "config_applied", {"had_previous": True, "starts": 0})
    ledger.close()

    clock, said, seen = FakeClock(), [], []
    supervisor: Supervisor

    def run(config: DeviceConfig, data_dir: Path, **kw: object) -> RunResult:
        seen.append((config.heartbeat_seconds, [z.name for z in config.zones], kw["config_path"]))
        clock.advance(2)
        if config.heartbeat_seconds == 2.0:
            raise WardSightError("the camera of the pushed configuration is not here")
        supervisor.stop()
        return result()

    start = starter(data, lambda: load_device_config(data, None, {}), echo=said.append, run=run)
    supervisor = Supervisor(start, clock=clock, echo=said.append, wait=clock.advance)
    out = supervisor.run()

    assert seen == [(2.0, ["door"], config_path), (5.0, ["door"], config_path)]  # loaded from disk at each start
    assert said == [
        "the agent failed: the camera of the pushed configuration is not here; starting it again in 1 s",
        f"the configuration pushed by {job.job_id} did not start; the previous one is back",
    ]
    assert config_path.read_text() == GOOD and (out.starts, out.failures, out.stopped) == (2, 1, True)
    ledger = JobLedger(ledger_path(ddir))
    assert [(r.state, r.reason) for r in ledger.reports()] == [("failed", "config_failed_at_start")]
    ledger.close()
