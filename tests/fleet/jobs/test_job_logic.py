"""The maintenance-job decisions (fleet/jobs/logic.py): pure functions driven by a scripted clock."""

import random

import pytest

from fleet.jobs import logic as job_logic
from fleet.jobs.logic import BatchState, JobState, judge_report, plan, release_slots

T0 = 1_800_000_000.0


def batch(states, *, status="running", expires_at=T0 + 3600, rate=None, threshold=None, released_at=T0):
    jobs = [JobState(f"job-{i}", state, None if state == "queued" else released_at) for i, state in enumerate(states)]
    return BatchState(status, expires_at, jobs, rate_per_minute=rate, error_threshold=threshold)


def run_releases(total, rate, ticks):
    """Drive plan() over the given clock readings, releasing as told; returns each job's release time."""
    states = ["queued"] * total
    times = [None] * total
    for now in ticks:
        jobs = [JobState(f"job-{i}", s, t) for i, (s, t) in enumerate(zip(states, times, strict=True))]
        for job_id in plan(BatchState("running", now + 3600, jobs, rate_per_minute=rate), now).release:
            index = int(job_id.split("-")[1])
            assert states[index] == "queued"
            states[index], times[index] = "released", now
    return times


def max_in_any_window(times):
    released = sorted(t for t in times if t is not None)
    return max(sum(1 for u in released if t - 60 < u <= t) for t in released)


# ---- release and the rate limit ---------------------------------------------------------------------------


def test_without_a_rate_every_queued_job_is_released_at_once():
    assert plan(batch(["queued"] * 5), T0).release == tuple(f"job-{i}" for i in range(5))
    assert release_slots([], T0, None) is None


def test_a_rate_spaces_releases_evenly_in_order():
    times = run_releases(30, rate=10, ticks=[T0 + s for s in range(0, 301)])
    assert times[:11] == [T0 + 6 * k for k in range(11)]  # one every 6 s, the first at once
    assert times == sorted(times)  # in the batch's order
    assert max_in_any_window(times) == 10


def test_coarse_ticks_release_several_at_once_but_never_more_than_the_rate_per_window():
    # A server that was down for ten minutes catches up with at most one window's worth, not 100 jobs.
    times = run_releases(100, rate=10, ticks=[T0, T0 + 600, T0 + 601, T0 + 630, T0 + 661])
    assert times.count(T0) == 1
    assert times.count(T0 + 600) == 10
    assert times.count(T0 + 601) == times.count(T0 + 630) == 0  # the window is still full
    assert times.count(T0 + 661) == 10
    assert max_in_any_window(times) == 10


def test_fast_rates_release_many_per_tick():
    times = run_releases(100, rate=600, ticks=[T0 + s for s in range(0, 12)])
    assert [times.count(T0 + s) for s in range(0, 11)] == [1] + [10] * 9 + [9]
    assert max_in_any_window(times) <= 600


@pytest.mark.parametrize("seed", range(20))
def test_next_release_at_is_exactly_when_release_slots_opens(seed):
    rng = random.Random(seed)  # noqa: S311 - a reproducible scenario
    rate = rng.choice([1, 3, 10, 45, 120])
    times, now = [], T0
    for _ in range(rng.randint(1, 40)):
        now += rng.choice([0.0, 0.5, 1.0, 7.0, 30.0, 90.0])
        slots = release_slots(times, now, rate)
        times += [now] * min(slots, rng.randint(0, slots))
    nxt = job_logic.next_release_at(times, now, rate)
    assert nxt >= now
    assert release_slots(times, nxt, rate) >= 1
    if nxt > now:
        assert release_slots(times, nxt - 1e-3, rate) == 0


def test_release_slots_refuses_a_rate_below_one():
    with pytest.raises(ValueError):
        release_slots([], T0, 0)


# ---- the error threshold -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "total", "count"),
    [(5, 100, 5), (1, 3, 1), (0.1, 100, 10), (0.05, 100, 5), (0.001, 100, 1), (0.5, 3, 2), (None, 100, None)],
)
def test_threshold_counts(threshold, total, count):
    assert job_logic.threshold_count(threshold, total) == count


@pytest.mark.parametrize("bad", [0, -1, 1.0, 1.5, 0.0, True])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        job_logic.threshold_count(bad, 10)


def test_reaching_the_threshold_stops_and_cancels_what_the_devices_have_not_acknowledged():
    states = ["failed", "refused", "succeeded", "failed", "running", "received", "released", "queued", "queued"]
    decided = plan(batch(states, rate=10, threshold=3), T0 + 10)
    assert decided.stop and decided.release == ()
    assert decided.cancel == ("job-6", "job-7", "job-8")  # received and running jobs run on
    below = plan(batch(states[1:], rate=10, threshold=3), T0 + 10)
    assert not below.stop and below.cancel == ()


def test_a_fraction_threshold_is_of_the_whole_batch():
    states = ["failed"] * 9 + ["queued"] * 91
    assert not plan(batch(states, threshold=0.1), T0).stop
    assert plan(batch(["failed"] * 10 + ["queued"] * 90, threshold=0.1), T0).stop


def test_a_stopped_or_cancelled_batch_releases_nothing():
    for status in ("stopped", "cancelled"):
        assert plan(batch(["queued", "released"], status=status), T0).empty


def test_cancel_withdraws_only_unacknowledged_unexpired_jobs():
    states = ["queued", "released", "received", "running", "succeeded", "expired"]
    assert job_logic.cancel_plan(batch(states), T0) == ("job-0", "job-1")
    assert job_logic.cancel_plan(batch(states, expires_at=T0), T0) == ()


# ---- expiry --------------------------------------------------------------------------------------------------


def test_jobs_never_received_expire_and_are_never_released():
    states = ["queued", "released", "received", "running", "succeeded"]
    assert plan(batch(states), T0 + 3599.9).expire == ()
    decided = plan(batch(states), T0 + 3600)
    assert decided.expire == ("job-0", "job-1") and decided.release == ()
    # Expiry applies to stopped batches too (their acknowledged jobs are left to report).
    assert plan(batch(["released", "running"], status="stopped"), T0 + 3600).expire == ("job-0",)


def test_expired_jobs_do_not_count_as_errors():
    assert not plan(batch(["expired"] * 5, threshold=1), T0).stop


# ---- reports -------------------------------------------------------------------------------------------------


def judge(current, reported, *, kind="self_test", released_at=T0, now=T0 + 10, expires_at=T0 + 60):
    return judge_report(
        kind=kind, current=current, released_at=released_at, expires_at=expires_at, reported=reported, now=now
    )


@pytest.mark.parametrize(
    ("current", "reported", "action", "state"),
    [
        ("released", "received", "apply", "received"),
        ("released", "succeeded", "apply", "succeeded"),
        ("received", "running", "apply", "running"),
        ("running", "running", "apply", "running"),  # progress
        ("running", "received", "same", "running"),  # stale
        ("running", "failed", "apply", "failed"),
        ("succeeded", "succeeded", "same", "succeeded"),  # a repeated report
        ("refused", "received", "same", "refused"),
        ("cancelled", "received", "apply", "received"),  # fetched before it was withdrawn: the truth is kept
    ],
)
def test_reports_move_forward_only_and_repeat_harmlessly(current, reported, action, state):
    verdict = judge(current, reported)
    assert (verdict.action, verdict.state) == (action, state)


def test_conflicting_or_impossible_reports_are_refused():
    assert (judge("succeeded", "failed").status, judge("succeeded", "failed").code) == (409, "finished")
    assert judge("queued", "received", released_at=None).code == "not_sent"
    assert judge("cancelled", "succeeded", released_at=None).code == "not_sent"
    assert judge("expired", "received").code == "expired"
    assert judge("released", "released").status == 400
    assert judge("released", "succeeded", kind="rotate_key").code == "use_rotate_key"
    assert judge("running", "failed", kind="rotate_key").action == "apply"


def test_a_report_after_expiry_counts_only_if_the_job_was_received_in_time():
    late = judge("released", "received", now=T0 + 60)
    assert (late.action, late.status, late.code, late.expire) == ("refuse", 409, "expired", True)
    assert judge("cancelled", "received", now=T0 + 60).expire is False
    assert judge("running", "succeeded", now=T0 + 600).action == "apply"


# ---- diagnostics ---------------------------------------------------------------------------------------------


def test_diagnostics_must_be_printable_text_within_the_cap():
    assert job_logic.output_problem("agent 1.2.3\tok\nfps 14.8 — température 41 °C ✓\n") is None
    assert "U+0000" in job_logic.output_problem("log\x00line")
    assert "U+001B" in job_logic.output_problem("\x1b[31mred")
    assert "U+000D" in job_logic.output_problem("windows\r\n")
    assert "U+202E" in job_logic.output_problem("bidi \u202e override")
    assert job_logic.output_problem("\ud800") == "output is not valid UTF-8"
    assert job_logic.output_problem("x" * job_logic.MAX_OUTPUT_BYTES) is None
    assert "limit" in job_logic.output_problem("é" * (job_logic.MAX_OUTPUT_BYTES // 2 + 1))
