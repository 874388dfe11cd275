"""The rollout logic as a pure function of state and time: scripted reports and explicit ticks, no I/O."""

import json
from datetime import UTC, datetime

import pytest

from fleet.ota.rollouts.codec import spec_from_dict, spec_to_dict, state_from_dict, state_to_dict
from fleet.ota.rollouts.commands import CommandError, abort, pause, resume, rollback
from fleet.ota.rollouts.decide import offer_for, refuse_report, tick
from fleet.ota.rollouts.selection import DeviceInfo, GroupSize, Selector, select_devices, split_groups
from fleet.ota.rollouts.spec import ErrorThreshold, RolloutError, RolloutSpec, Window
from fleet.ota.rollouts.state import Decision, Report, deadline, failures, is_settled, new_state

T0 = 1_800_000_000.0
DAY = 86400.0
STEPS = ("downloading", "downloaded", "installed", "activated", "healthy")


def make_spec(groups=(("a", "b"), ("c", "d"), ("e",)), **over):
    fields = dict(
        rollout_id="ro-test",
        model="movenet",
        version="2.0",
        groups=groups,
        success_threshold=1.0,
        error_threshold=ErrorThreshold(count=1),
        in_progress_timeout_s=600.0,
        previous_version="1.0",
    )
    fields.update(over)
    return RolloutSpec(**fields)


def started(spec, now=T0):
    state, decisions = tick(spec, new_state(spec, now), [], now)
    return state, decisions


def rep(device, state, at, version="2.0", reason=None, progress=None):
    return Report(device, version, state, at, reason, progress)


def through(device, at, last="healthy", version="2.0", step=10.0):
    """Reports of each step up to ``last``, ``step`` seconds apart from ``at``."""
    steps = STEPS[: STEPS.index(last) + 1]
    return [rep(device, s, at + i * step, version) for i, s in enumerate(steps)]


def statuses(state):
    return {d: dev.status for d, dev in state.devices.items()}


def kinds(decisions, kind):
    return [d.device_id for d in decisions if d.kind == kind]


def offer(spec, state, device, now):
    return offer_for(spec, state, device, now)


# ---- groups ---------------------------------------------------------------------------------------------


def test_the_first_tick_offers_only_the_first_group():
    spec = make_spec()
    state, decisions = started(spec)
    assert state.status == "running" and state.current_group == 0
    assert kinds(decisions, "offer") == ["a", "b"] and decisions[0] == Decision("group_started", group=0)
    got = offer(spec, state, "a", T0)
    assert (got.rollout_id, got.model, got.version, got.target) == (
        "ro-test",
        "movenet",
        "2.0",
        "models/movenet/2.0.wsm",
    )
    assert got.window_start is None and got.window_end is None
    assert offer(spec, state, "c", T0) is None and offer(spec, state, "nobody", T0) is None
    assert statuses(state) == {"a": "offered", "b": "offered", "c": "pending", "d": "pending", "e": "pending"}


def test_a_group_starts_the_next_once_enough_are_healthy_and_stragglers_finish_later():
    spec = make_spec(success_threshold=0.5)
    state, _ = started(spec)
    state, decisions = tick(spec, state, [*through("a", T0 + 10, "activated"), rep("b", "downloading", T0 + 5)],
                                  T0 + 60)  # fmt: skip
    assert state.current_group == 0 and kinds(decisions, "offer") == []  # activated is not healthy yet
    state, decisions = tick(spec, state, [rep("a", "healthy", T0 + 70)], T0 + 80)
    assert state.current_group == 1 and kinds(decisions, "offer") == ["c", "d"]
    assert statuses(state)["b"] == "downloading"  # a straggler keeps its offer
    state, decisions = tick(spec, state, through("d", T0 + 100), T0 + 200)
    assert state.current_group == 2 and kinds(decisions, "offer") == ["e"]
    state, decisions = tick(spec, state, through("e", T0 + 300), T0 + 400)
    assert state.status == "completed" and [d.kind for d in decisions] == ["completed"]
    # After completion the stragglers are still offered the update and are counted when they finish.
    assert offer(spec, state, "b", T0 + 500).version == "2.0" and offer(spec, state, "c", T0 + 500) is not None
    state, _ = tick(spec, state, [rep("b", s, T0 + 500 + i) for i, s in enumerate(STEPS[1:])], T0 + 600)
    assert state.status == "completed" and statuses(state)["b"] == "healthy"
    assert offer(spec, state, "b", T0 + 700) is None  # nothing left to do


def test_a_group_that_can_no_longer_succeed_pauses_the_rollout_at_the_error_threshold():
    spec = make_spec()  # every device of a group must be healthy; more than one failure stops
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0), *through("b", T0)], T0 + 100)
    assert state.current_group == 1
    reports = [*through("c", T0 + 200), *through("d", T0 + 200, "activated")]
    reports.append(rep("d", "rolled_back", T0 + 260, reason="self_test_failed"))
    state, decisions = tick(spec, state, reports, T0 + 300)
    assert state.status == "paused" and [d.kind for d in decisions] == ["paused"]
    assert state.reason == "group 2 cannot reach 2 healthy of 2 (1 healthy, 1 failed)"
    assert statuses(state)["d"] == "rolled_back" and state.devices["d"].reason == "self_test_failed"
    assert failures(spec, state) == 1  # at the threshold, not past it: paused, not stopped
    assert offer(spec, state, "e", T0 + 300) is None
    # Ticking again changes nothing; resuming accepts the failed group and starts the next one.
    assert tick(spec, state, [], T0 + 400) == (state, [])
    state, decisions = resume(spec, state, T0 + 500)
    assert state.status == "running" and decisions == [Decision("resumed", group=1)]
    state, decisions = tick(spec, state, [], T0 + 501)
    assert kinds(decisions, "offer") == ["e"]
    state, _ = tick(spec, state, through("e", T0 + 600), T0 + 700)
    assert state.status == "completed"


def test_failures_past_the_error_threshold_stop_the_rollout_and_withdraw_unswitched_offers():
    spec = make_spec(groups=(("a", "b", "c", "d", "e"), ("f",)))
    state, _ = started(spec)
    reports = [
        rep("a", "failed", T0 + 10, reason="download_failed"),
        rep("c", "downloading", T0 + 10),
        *through("e", T0, "activated"),
    ]
    state, decisions = tick(spec, state, reports, T0 + 60)
    assert state.status == "paused"  # one failure: the group cannot be all healthy, but not past the threshold
    state, decisions = tick(spec, state, [rep("b", "failed", T0 + 70)], T0 + 80)
    assert state.status == "stopped" and decisions[-1].kind == "stopped"
    assert state.reason == "2 of 6 devices failed, past the error threshold (1 failed)"
    assert sorted(kinds(decisions, "cancel")) == ["c", "d"]  # downloading and silent: withdrawn
    assert statuses(state) == {"a": "failed", "b": "failed", "c": "canceled", "d": "canceled", "e": "activated",
                               "f": "pending"}  # fmt: skip
    assert offer(spec, state, "c", T0 + 90) is None and offer(spec, state, "f", T0 + 90) is None
    assert refuse_report(spec, state, "c", "movenet", "2.0") is not None
    # The device that already switched still reports how its self-test went.
    assert refuse_report(spec, state, "e", "movenet", "2.0") is None
    state, _ = tick(spec, state, [rep("e", "healthy", T0 + 100)], T0 + 110)
    assert state.status == "stopped" and statuses(state)["e"] == "healthy"
    with pytest.raises(CommandError):
        resume(spec, state, T0 + 120)


@pytest.mark.parametrize(
    ("threshold", "failures", "total", "stops"),
    [
        (ErrorThreshold(count=0), 1, 10, True),
        (ErrorThreshold(count=2), 2, 10, False),
        (ErrorThreshold(count=2), 3, 10, True),
        (ErrorThreshold(fraction=0.25), 1, 4, False),
        (ErrorThreshold(fraction=0.25), 2, 4, True),
        (ErrorThreshold(fraction=0.1), 10, 100, False),
        (ErrorThreshold(fraction=0.1), 11, 100, True),
    ],
)
def test_the_error_threshold_is_past_only_when_exceeded(threshold, failures, total, stops):
    assert threshold.exceeded(failures, total) is stops


# ---- timeouts -------------------------------------------------------------------------------------------


def test_the_timeout_starts_at_the_first_progress_report_and_restarts_at_each_step():
    spec = make_spec(groups=(("a", "b"),), error_threshold=ErrorThreshold(count=5))
    state, _ = started(spec)
    state, decisions = tick(spec, state, [], T0 + 30 * DAY)  # offered and silent: no clock runs
    assert statuses(state)["a"] == "offered" and decisions == []
    state, _ = tick(spec, state, [rep("a", "downloading", T0 + 100)], T0 + 100)
    assert deadline(spec, state.devices["a"]) == T0 + 700
    state, _ = tick(spec, state, [], T0 + 699)
    assert statuses(state)["a"] == "downloading"
    state, _ = tick(spec, state, [rep("a", "downloading", T0 + 650, progress=0.9)], T0 + 699)
    assert deadline(spec, state.devices["a"]) == T0 + 700  # the same step again does not extend it
    state, _ = tick(spec, state, [rep("a", "downloaded", T0 + 690)], T0 + 1200)
    assert statuses(state)["a"] == "downloaded" and deadline(spec, state.devices["a"]) == T0 + 1290
    state, decisions = tick(spec, state, [], T0 + 1290)
    assert kinds(decisions, "timed_out") == ["a"]
    assert statuses(state)["a"] == "failed" and state.devices["a"].reason == "timeout"
    assert state.devices["a"].since == T0 + 1290 and failures(spec, state) == 1


def test_a_device_stuck_activated_for_ever_counts_as_failed():  # hawkBit#693
    spec = make_spec(groups=(("a", "b"), ("c",)))
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0), *through("b", T0, "activated")], T0 + 100)
    assert state.status == "running" and state.current_group == 0
    state, decisions = tick(spec, state, [], T0 + 30 + 600)
    assert kinds(decisions, "timed_out") == ["b"] and state.status == "paused"


def test_a_timed_out_device_that_reports_again_is_revived():
    spec = make_spec(groups=(("a", "b"),), success_threshold=0.5, error_threshold=ErrorThreshold(count=1))
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0), rep("b", "downloading", T0)], T0 + 100)
    state, _ = tick(spec, state, [], T0 + 601)
    assert state.status == "completed" and statuses(state)["b"] == "failed" and failures(spec, state) == 1
    assert offer(spec, state, "b", T0 + 7 * DAY) is not None  # the offer stands
    back = T0 + 7 * DAY
    state, _ = tick(spec, state, [rep("b", "downloading", back)], back + 1)
    assert statuses(state)["b"] == "downloading" and state.devices["b"].reason is None
    assert failures(spec, state) == 0
    state, _ = tick(spec, state, through("b", back + 10)[1:], back + 100)
    assert statuses(state)["b"] == "healthy"


# ---- operator commands ----------------------------------------------------------------------------------


def test_pause_holds_the_next_group_but_offered_devices_carry_on():
    spec = make_spec()
    state, _ = started(spec)
    state, decisions = pause(spec, state, T0 + 1, "looking at the dashboards")
    assert state.status == "paused" and state.reason == "looking at the dashboards"
    with pytest.raises(CommandError, match="only a running rollout"):
        pause(spec, state, T0 + 2)  # a second pause is refused cleanly (hawkBit#2161)
    assert offer(spec, state, "a", T0 + 3) is not None
    state, decisions = tick(spec, state, [*through("a", T0 + 3), *through("b", T0 + 3)], T0 + 100)
    assert statuses(state)["a"] == "healthy" and kinds(decisions, "offer") == [] and state.status == "paused"
    state, decisions = resume(spec, state, T0 + 200)
    assert decisions == [Decision("resumed")]  # the group could still succeed: nothing accepted
    state, decisions = tick(spec, state, [], T0 + 201)
    assert kinds(decisions, "offer") == ["c", "d"]
    with pytest.raises(CommandError):
        resume(spec, state, T0 + 202)


def test_abort_withdraws_every_offer_not_yet_switched_to():
    spec = make_spec()
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0, "activated"), rep("b", "downloaded", T0)], T0 + 50)
    state, decisions = abort(spec, state, T0 + 60, "wrong build")
    assert state.status == "aborted" and kinds(decisions, "cancel") == ["b"] and decisions[-1].kind == "aborted"
    assert statuses(state)["a"] == "activated" and offer(spec, state, "b", T0 + 61) is None
    assert offer(spec, state, "a", T0 + 61) is not None  # a switched device finishes its self-test
    state, _ = tick(spec, state, [rep("b", "installed", T0 + 70), rep("a", "healthy", T0 + 70)], T0 + 80)
    assert statuses(state)["b"] == "canceled" and statuses(state)["a"] == "healthy"
    assert is_settled(spec, state)
    for command in (abort, pause, resume):
        with pytest.raises(CommandError):
            command(spec, state, T0 + 90)


def test_a_device_that_switched_and_timed_out_before_an_abort_may_still_report():
    spec = make_spec(groups=(("a", "b"),), error_threshold=ErrorThreshold(count=5))
    state, _ = started(spec)
    state, _ = tick(spec, state, through("a", T0, "activated"), T0 + 50)
    state, _ = tick(spec, state, [], T0 + 30 + 600)
    assert statuses(state)["a"] == "failed"
    state, decisions = abort(spec, state, T0 + 700)
    assert kinds(decisions, "cancel") == ["b"] and statuses(state)["a"] == "failed"
    assert offer(spec, state, "a", T0 + 800) is not None and offer(spec, state, "b", T0 + 800) is None
    state, _ = tick(spec, state, [rep("a", "healthy", T0 + 900)], T0 + 900)
    assert statuses(state)["a"] == "healthy" and state.status == "aborted"


def test_rollback_offers_each_switched_device_the_version_it_ran_before():
    spec = make_spec(groups=(("a", "b", "c", "d", "e"),), error_threshold=ErrorThreshold(count=3),
                     from_versions={"a": "1.1"})  # fmt: skip
    state, _ = started(spec)
    reports = [
        *through("a", T0),
        *through("b", T0, "installed"),
        *through("d", T0, "activated"),
        rep("d", "rolled_back", T0 + 50, reason="self_test_failed"),
        *through("e", T0, "activated"),
    ]
    state, _ = tick(spec, state, reports, T0 + 100)
    state, _ = tick(spec, state, [rep("b", "activated", T0 + 200), rep("c", "downloading", T0 + 200)], T0 + 200)
    state, _ = tick(spec, state, [], T0 + 30 + 600)  # e times out after activating
    assert statuses(state)["e"] == "failed" and state.status == "paused" and failures(spec, state) == 2
    state, decisions = rollback(spec, state, T0 + 700)
    assert state.status == "rolling_back"
    assert sorted(kinds(decisions, "offer_previous")) == ["a", "b", "e"] and kinds(decisions, "cancel") == ["c"]
    got = offer(spec, state, "a", T0 + 701)
    assert (got.version, got.target, got.window_start) == ("1.1", "models/movenet/1.1.wsm", None)
    assert offer(spec, state, "b", T0 + 701).version == "1.0"  # no version known: the rollout's previous_version
    assert offer(spec, state, "c", T0 + 701) is None and offer(spec, state, "d", T0 + 701) is None
    assert refuse_report(spec, state, "a", "movenet", "2.0") is not None
    assert refuse_report(spec, state, "a", "movenet", "1.1") is None
    state, decisions = tick(spec, state, [*through("a", T0 + 800, version="1.1"),
                                                *through("b", T0 + 800, version="1.0")], T0 + 900)  # fmt: skip
    assert statuses(state)["a"] == statuses(state)["b"] == "rolled_back" and state.status == "rolling_back"
    state, decisions = tick(spec, state, [rep("e", "healthy", T0 + 950, version="1.0")], T0 + 960)
    assert state.status == "rolled_back" and [d.kind for d in decisions] == ["rolled_back"]
    assert failures(spec, state) == 1  # d's own self-test failure; reverted devices are not failures
    with pytest.raises(CommandError):
        rollback(spec, state, T0 + 970)


def test_rollback_needs_a_previous_version_for_every_switched_device():
    spec = make_spec(groups=(("a", "b"),), previous_version=None, from_versions={"a": "1.0"})
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0), *through("b", T0)], T0 + 100)
    with pytest.raises(CommandError, match="previous version is unknown"):
        rollback(spec, state, T0 + 200)
    fresh, _ = started(spec)
    state, decisions = rollback(spec, fresh, T0 + 200)  # nobody switched: nothing to take back
    assert state.status == "rolled_back" and sorted(kinds(decisions, "cancel")) == ["a", "b"]


# ---- maintenance window ---------------------------------------------------------------------------------


def utc(*args):
    return datetime(*args, tzinfo=UTC).timestamp()


def test_offers_carry_the_current_or_next_window_in_server_time():
    window = Window(2 * 60, 4 * 60, utc_offset_minutes=60)  # 02:00-04:00 at UTC+1 = 01:00-03:00 UTC
    assert window.current_or_next(utc(2027, 1, 15, 12, 0)) == (utc(2027, 1, 16, 1, 0), utc(2027, 1, 16, 3, 0))
    assert window.current_or_next(utc(2027, 1, 16, 0, 59)) == (utc(2027, 1, 16, 1, 0), utc(2027, 1, 16, 3, 0))
    assert window.current_or_next(utc(2027, 1, 16, 1, 30)) == (utc(2027, 1, 16, 1, 0), utc(2027, 1, 16, 3, 0))
    assert window.current_or_next(utc(2027, 1, 16, 3, 0)) == (utc(2027, 1, 17, 1, 0), utc(2027, 1, 17, 3, 0))
    overnight = Window(22 * 60, 2 * 60)
    assert overnight.current_or_next(utc(2027, 1, 16, 1, 0)) == (utc(2027, 1, 15, 22, 0), utc(2027, 1, 16, 2, 0))
    assert overnight.current_or_next(utc(2027, 1, 16, 23, 0)) == (utc(2027, 1, 16, 22, 0), utc(2027, 1, 17, 2, 0))
    spec = make_spec(window=window)
    now = utc(2027, 1, 15, 12, 0)
    state, _ = started(spec, now)
    got = offer(spec, state, "a", now)
    assert (got.window_start, got.window_end) == (utc(2027, 1, 16, 1, 0), utc(2027, 1, 16, 3, 0))
    for bad in ((60, 60, 0), (1440, 0, 0), (0, 60, 900)):
        with pytest.raises(RolloutError):
            Window(*bad)


def test_a_downloaded_device_waiting_for_the_window_does_not_time_out_before_it():
    spec = make_spec(groups=(("a", "b"),), window=Window(60, 180), error_threshold=ErrorThreshold(count=5))
    now = utc(2027, 1, 15, 12, 0)
    state, _ = started(spec, now)
    state, _ = tick(spec, state, [rep("a", "downloaded", now), rep("b", "downloading", now)], now)
    state, decisions = tick(spec, state, [rep("a", "deferred", now + 3600)], now + 601)
    assert kinds(decisions, "timed_out") == ["b"]  # downloading is not waiting for anything
    assert deadline(spec, state.devices["a"]) == utc(2027, 1, 16, 1, 0) + 600
    state, decisions = tick(spec, state, [], utc(2027, 1, 16, 1, 9))
    assert statuses(state)["a"] == "downloaded"
    state, decisions = tick(spec, state, [], utc(2027, 1, 16, 1, 10))
    assert kinds(decisions, "timed_out") == ["a"]


# ---- offline devices ------------------------------------------------------------------------------------


def test_an_offline_device_that_comes_back_a_week_later_catches_up():
    spec = make_spec(groups=(("a", "b", "c"), ("d",)), success_threshold=0.6)
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0 + 10), *through("b", T0 + 10)], T0 + 100)
    assert state.current_group == 1  # 2 of 3 healthy is enough; c has not been heard from
    state, _ = tick(spec, state, through("d", T0 + 200), T0 + 300)
    assert state.status == "completed" and statuses(state)["c"] == "offered"
    for days in (1, 3, 6):  # ticks while it is away time nothing out
        state, decisions = tick(spec, state, [], T0 + days * DAY)
        assert decisions == [] and statuses(state)["c"] == "offered"
    back = T0 + 7 * DAY
    assert offer(spec, state, "c", back).version == "2.0"
    state, decisions = tick(spec, state, through("c", back, step=120.0), back + 600)
    assert statuses(state)["c"] == "healthy" and decisions == [] and failures(spec, state) == 0


def test_a_device_back_after_a_rollback_or_abort_is_offered_nothing():
    spec = make_spec(groups=(("a", "b"),), success_threshold=0.5)
    state, _ = started(spec)
    state, _ = tick(spec, state, through("a", T0), T0 + 100)
    rolled, _ = rollback(spec, state, T0 + 200)
    aborted, _ = abort(spec, state, T0 + 200)
    for later in (rolled, aborted):
        assert offer(spec, later, "b", T0 + 7 * DAY) is None
        assert refuse_report(spec, later, "b", "movenet", "2.0") is not None


# ---- reports --------------------------------------------------------------------------------------------


def test_late_duplicate_and_foreign_reports_do_not_move_a_device_backwards():
    spec = make_spec(groups=(("a", "b"),))
    state, _ = started(spec)
    shuffled = [rep("a", "installed", T0 + 30), rep("a", "downloading", T0 + 10), rep("a", "downloaded", T0 + 20)]
    state, _ = tick(spec, state, shuffled, T0 + 40)
    assert statuses(state)["a"] == "installed" and state.devices["a"].since == T0 + 30
    state, _ = tick(spec, state, [rep("a", "downloading", T0 + 50), rep("a", "activated", T0 + 60, "9.9")],
                          T0 + 70)  # fmt: skip
    assert statuses(state)["a"] == "installed"
    state, _ = tick(spec, state, [rep("a", "healthy", T0 + 80), rep("a", "healthy", T0 + 81)], T0 + 90)
    assert statuses(state)["a"] == "healthy"
    assert refuse_report(spec, state, "a", "movenet", "2.0") is None  # it may still report a failure later
    state, _ = tick(spec, state, [rep("a", "rolled_back", T0 + 100, reason="self_test_failed")], T0 + 110)
    assert statuses(state)["a"] == "rolled_back" and failures(spec, state) == 1
    assert refuse_report(spec, state, "a", "movenet", "2.0") is not None
    assert refuse_report(spec, state, "b", "other", "2.0") is not None
    assert refuse_report(spec, state, "zz", "movenet", "2.0") is not None


# ---- selection ------------------------------------------------------------------------------------------


def fleet_of(n):
    return [
        DeviceInfo(f"dev-{i:04d}", room=f"R{i % 10}", site="st-marys" if i % 2 else "general",
                         ward=f"W{i % 4}", tags=("pilot",) if i % 3 == 0 else ())
        for i in range(n)
    ]  # fmt: skip


def test_a_percentage_picks_the_same_devices_every_time_and_a_larger_one_a_superset():
    devices = fleet_of(400)
    quarter = select_devices(devices, Selector(percent=25), "ro-1")
    assert quarter == select_devices(list(reversed(devices)), Selector(percent=25), "ro-1")
    assert 60 < len(quarter) < 140
    half = select_devices(devices, Selector(percent=50), "ro-1")
    assert set(quarter) < set(half) and half[: len(quarter)] == quarter
    assert set(select_devices(devices, Selector(percent=25), "ro-2")) != set(quarter)


def test_the_selector_matches_site_ward_room_tags_and_only_active_devices():
    devices = [
        *fleet_of(40),
        DeviceInfo("dev-quarantined", room="R1", site="st-marys", ward="W1", status="quarantined"),
        DeviceInfo("dev-pending", room="R1", site="st-marys", ward="W1", status="pending"),
    ]
    chosen = select_devices(devices, Selector(site="st-marys", ward="W1"), "ro-1")
    assert chosen and all(d.startswith("dev-0") for d in chosen)
    by_id = {d.id: d for d in devices}
    assert all(by_id[d].site == "st-marys" and by_id[d].ward == "W1" for d in chosen)
    assert len(chosen) == sum(1 for d in fleet_of(40) if d.site == "st-marys" and d.ward == "W1")
    pilots = select_devices(devices, Selector(tags=("pilot",), room="R3"), "ro-1")
    assert sorted(pilots) == ["dev-0003", "dev-0033"]
    assert select_devices(devices, Selector(tags=("pilot", "other")), "ro-1") == []


def test_groups_are_cut_in_order_by_count_or_percent_and_must_cover_the_selection():
    ten = [f"d{i}" for i in range(10)]
    sizes = [GroupSize(count=1), GroupSize(percent=30), GroupSize(percent=100)]
    assert [len(g) for g in split_groups(ten, sizes)] == [1, 3, 6]
    assert split_groups(ten, sizes)[0] == ("d0",)
    small = split_groups(["x"], [GroupSize(percent=10), GroupSize(percent=90)])
    assert small == (("x",),)  # an empty group is dropped
    with pytest.raises(RolloutError, match="cover 5 of the 10"):
        split_groups(ten, [GroupSize(count=5)])
    for bad in ({}, {"count": 1, "percent": 5.0}, {"count": 0}, {"percent": 0.0}, {"percent": 101.0}):
        with pytest.raises(RolloutError):
            GroupSize(**bad)


def test_a_spec_refuses_what_cannot_work():
    with pytest.raises(RolloutError):
        make_spec(groups=(("a",), ("a",)))
    with pytest.raises(RolloutError):
        make_spec(success_threshold=0.0)
    with pytest.raises(RolloutError):
        make_spec(previous_version="2.0")
    with pytest.raises(RolloutError):
        ErrorThreshold(count=1, fraction=0.5)


def test_spec_and_state_survive_a_json_round_trip():
    spec = make_spec(
        window=Window(60, 120, -300), from_versions={"a": "1.1"}, error_threshold=ErrorThreshold(fraction=0.2)
    )
    state, _ = started(spec)
    state, _ = tick(spec, state, [*through("a", T0, "activated"), rep("b", "failed", T0, reason="disk_full")],
                          T0 + 100)  # fmt: skip
    state, _ = resume(spec, state, T0 + 200)
    spec_back = spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    state_back = state_from_dict(json.loads(json.dumps(state_to_dict(state))))
    assert spec_back == spec and state_back == state and state.accepted_group == 0
