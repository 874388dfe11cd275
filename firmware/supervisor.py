"""Supervising the agent where systemd does not (the demo, a laptop): what the agent's unit does on a device.

On a device systemd starts the agent again when it exits (``wardsight-agent.service``: ``Restart=always``,
``RestartSec=5``, exit :data:`firmware.exitcodes.RESTART_EXIT_CODE` to switch to a new model or configuration,
``RestartPreventExitStatus`` for a factory reset), and every start reads ``device.toml`` afresh. A process that runs
the agent in-process (``wardsight demo``) uses :class:`Supervisor` to do the same:

- a *requested restart* (a new model, a pushed configuration, a maintenance job): the agent is started again
  after a short pause with a fresh start function call, which loads the configuration as it is on disk now (see
  :func:`starter`), so a configuration a job pushed takes effect;
- a *failure* (the agent does not build: a configuration that does not start, a missing camera; or it crashes):
  started again after a backoff (1, 2, 4, 8 s), and at that start a pushed configuration that did not start is
  put back to the previous one (:func:`firmware.jobs.config.recover_pushed_config`, as on a device); after
  :attr:`RestartPolicy.max_failures` failures within :attr:`RestartPolicy.window_s` it gives up, saying why;
- the *end* (the source ended, a factory reset, :meth:`Supervisor.stop`, the duration passed): it returns.

The decisions are pure (:class:`Restarts`, with an injected clock); :class:`Supervisor` carries them out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from firmware.assembly import device_dir
from firmware.exitcodes import FACTORY_RESET_EXIT_CODE
from firmware.jobs.config import recover_pushed_config
from firmware.runtime import RunResult, run_device
from wardsight.device_config import DeviceConfig
from wardsight.errors import WardSightError
from wardsight.fetch import ArtifactStore

log = logging.getLogger("wardsight.device")

# One start: build the agent from the configuration on disk and run it until ``stop`` is set or the
# ``duration`` (seconds, None: no limit) passes; raises when the agent does not build or crashes.
StartFn = Callable[[threading.Event, float | None], RunResult]


def under_service_manager(environ: Mapping[str, str]) -> bool:
    """Whether a service manager (systemd) runs this process and restarts it: then exit 75 is the way to restart."""
    return bool(environ.get("NOTIFY_SOCKET") or environ.get("INVOCATION_ID"))


@dataclass(frozen=True)
class RestartPolicy:
    pause_s: float = 0.5  # after a requested restart (systemd's RestartSec, shortened: nothing went wrong)
    backoff_s: float = 1.0  # after a failure; doubled after each further failure within the window
    max_backoff_s: float = 8.0
    max_failures: int = 5  # this many failures within window_s: give up (systemd's StartLimitBurst ...)
    window_s: float = 60.0  # (... and StartLimitIntervalSec)


@dataclass(frozen=True)
class RunEnd:
    """How one start of the agent ended."""

    kind: Literal["restart", "failed", "ended"]  # asked to be started again / did not build or crashed / for good
    why: str


@dataclass(frozen=True)
class Decision:
    again: bool  # start the agent again (after delay_s)
    delay_s: float
    message: str  # what to tell the person watching


class Restarts:
    """What to do after each end of the agent: the failures within the policy's window decide the backoff and
    when to give up; a requested restart is not a failure."""

    def __init__(self, policy: RestartPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.failures: deque[float] = deque()  # when the recent failures happened

    def decide(self, end: RunEnd) -> Decision:
        policy = self.policy
        if end.kind == "ended":
            return Decision(False, 0.0, f"the agent stopped: {end.why}")
        if end.kind == "restart":
            return Decision(True, policy.pause_s, f"the agent stopped to restart ({end.why}); starting it again")
        now = self.clock()
        self.failures.append(now)
        while self.failures and now - self.failures[0] > policy.window_s:
            self.failures.popleft()
        count = len(self.failures)
        if count >= policy.max_failures:
            return Decision(
                False,
                0.0,
                f"the agent failed {count} times within {policy.window_s:g} s; not starting it again"
                f" (last failure: {end.why})",
            )
        delay = min(policy.max_backoff_s, policy.backoff_s * 2 ** (count - 1))
        return Decision(True, delay, f"the agent failed: {end.why}; starting it again in {delay:g} s")


@dataclass
class Supervision:
    """What the supervised agent did: every completed run, how many starts and failures, and why it ended."""

    runs: list[RunResult] = field(default_factory=list)
    starts: int = 0
    failures: int = 0
    ended: str = ""
    gave_up: bool = False  # ended by too many failures
    stopped: bool = False  # ended by stop() or the duration (not by the agent)

    @property
    def last(self) -> RunResult | None:
        return self.runs[-1] if self.runs else None

    @property
    def frames_captured(self) -> int:
        return sum(r.frames_captured for r in self.runs)

    @property
    def frames_processed(self) -> int:
        return sum(r.agent.processed for r in self.runs)

    @property
    def frames_dropped(self) -> int:
        return sum(r.frames_dropped for r in self.runs)


def describe(exc: BaseException) -> str:
    """A failure in one line: a WardSightError says what is wrong itself; anything else is named by its type."""
    if isinstance(exc, WardSightError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Supervisor:
    """Runs ``start`` again and again as :class:`Restarts` decides, until the agent ends for good, too many
    failures, :meth:`stop` or the duration. ``wait`` (default: an interruptible sleep) and ``clock`` are for tests."""

    def __init__(
        self,
        start: StartFn,
        *,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        echo: Callable[[str], None] = log.warning,
        wait: Callable[[float], None] | None = None,
    ) -> None:
        self._start = start
        self.restarts = Restarts(policy, clock)
        self._clock = clock
        self._echo = echo
        self._wait = wait or self._stopping_wait
        self._stopping = threading.Event()
        self._current: threading.Event | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop the running agent (it finishes its frame and stops its services) and start it no more. Safe to call
        from a signal handler (it only sets events) and from any thread."""
        self._stopping.set()
        current = self._current
        if current is not None:
            current.set()

    def wait_stopped(self, timeout: float | None) -> bool:
        """Wait until :meth:`stop` (True) or ``timeout`` seconds (False)."""
        return self._stopping.wait(timeout)

    def _stopping_wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def run(self, duration: float | None = None) -> Supervision:
        """Start the agent and start it again as decided; returns when it ends for good, after too many failures,
        on :meth:`stop` or when ``duration`` seconds have passed."""
        deadline = None if duration is None else self._clock() + duration
        out = Supervision()
        while True:
            left = None if deadline is None else deadline - self._clock()
            if self._stopping.is_set() or (left is not None and left <= 0):
                return self._stopped(out)
            out.starts += 1
            end = self._one_run(threading.Event(), left, deadline, out)
            if end is None or self._stopping.is_set():  # stopped from outside or out of time: not the agent's doing
                return self._stopped(out)
            decision = self.restarts.decide(end)
            out.failures += end.kind == "failed"
            self._echo(decision.message)
            if not decision.again:
                out.ended, out.gave_up = decision.message, end.kind == "failed"
                return out
            left = None if deadline is None else deadline - self._clock()
            self._wait(decision.delay_s if left is None else max(0.0, min(decision.delay_s, left)))

    def _stopped(self, out: Supervision) -> Supervision:
        out.stopped, out.ended = True, "stopped" if self._stopping.is_set() else "the duration passed"
        return out

    def _one_run(
        self, stop: threading.Event, left: float | None, deadline: float | None, out: Supervision
    ) -> RunEnd | None:
        """One start; None when it ended because of :meth:`stop` or the duration (not the agent's doing)."""
        self._current = stop
        if self._stopping.is_set():  # stop() came just before the event above was in place
            stop.set()
        try:
            result = self._start(stop, None if left is None else max(0.1, left))
        except Exception as exc:  # the agent did not build or crashed: a failure, never the supervisor's end
            if not isinstance(exc, WardSightError):
                log.error("the agent crashed", exc_info=exc)
            return RunEnd("failed", describe(exc))
        finally:
            self._current = None
        out.runs.append(result)
        if result.restart is not None:
            return RunEnd("restart", result.restart)
        if result.exit_code == FACTORY_RESET_EXIT_CODE:
            return RunEnd("ended", "a factory reset wiped this device; it needs a new enrollment")
        if result.exit_code is not None:
            return RunEnd("ended", f"it exited with status {result.exit_code}")
        if self._stopping.is_set() or (deadline is not None and self._clock() >= deadline):
            return None
        return RunEnd("ended", "its source ended")


def starter(
    data_dir: Path,
    load: Callable[[], DeviceConfig],
    *,
    config_path: Path | None = None,
    store: ArtifactStore | None = None,
    environ: Mapping[str, str] | None = None,
    reboot_command: Sequence[str] | None = None,
    echo: Callable[[str], None] = log.warning,
    run: Callable[..., RunResult] = run_device,
) -> StartFn:
    """One start as a new agent process makes it: undo a pushed configuration that did not start the last time,
    ``load`` the configuration from disk as it is now, build the agent and run it."""
    config_file = config_path or data_dir / "device.toml"

    def start(stop: threading.Event, duration: float | None) -> RunResult:
        undone = recover_pushed_config(device_dir(data_dir), config_file)
        if undone is not None:
            echo(undone)
        config = load()
        return run(
            config,
            data_dir,
            duration=duration,
            stop=stop,
            store=store,
            config_path=config_file,
            environ=environ,
            reboot_command=reboot_command,
        )

    return start
