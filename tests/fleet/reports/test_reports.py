"""Reports: the pure aggregations on hand-built event rows, then the route (JSON, CSV, shifts in the server's
local time, parameters) on the real app and SQLite."""

import csv
import io
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fleet import intake
from fleet.reports.falls import falls_report
from fleet.reports.grouping import DAY, Grouping, hour_boundaries
from fleet.reports.hygiene import hygiene_report
from fleet.reports.occupancy import occupancy_report
from fleet.reports.render import safe_cell
from fleet.web.appkeys import DB_KEY
from tests.fleet.helpers import Clock, api_headers, insert_device, live_db, start_app
from wardsight import wire

MIDNIGHT = datetime(2027, 3, 10, tzinfo=UTC).timestamp()  # a Wednesday, 00:00 UTC
HOUR = 3600.0
BY_SHIFT_UTC = Grouping(by="shift", tz=UTC)


def row(app, type, t, *, device="dev-a", room="3B-12", ward="3B", **data):
    return {"event_id": f"{device}-{app}-{type}-{t}", "device_id": device, "room": room, "ward": ward, "app": app,
            "type": type, "time": t, "data": data}  # fmt: skip


def hygiene(type, t, entry, **over):
    return row("hand_hygiene", type, t, entry=entry, compliant=type == "opportunity", **over)


# ---- hygiene ---------------------------------------------------------------------------------------------------


def test_hygiene_compliance_is_compliant_entries_over_judged_entries_per_room():
    rows = [
        hygiene("opportunity", 1, True),
        hygiene("missed", 2, True),
        hygiene("unknown", 3, True),  # not judged: counted, kept out of the rate
        hygiene("opportunity", 4, False),
        hygiene("missed", 5, False),
        hygiene("missed", 6, False),
        hygiene("opportunity", 7, True, room="4A-01", ward="4A"),
        row("occupancy", "count_changed", 8, count=1),  # not hygiene: ignored
    ]
    report = hygiene_report(rows)
    assert list(report) == ["3B-12", "4A-01", "(all)"]
    room = report["3B-12"]
    assert (room["opportunities"], room["compliant"], room["missed"], room["unknown"]) == (6, 2, 3, 1)
    assert (room["entries"], room["compliant_entries"], room["missed_entries"], room["unknown_entries"]) == (3, 1, 1, 1)
    assert (room["exits"], room["compliant_exits"], room["missed_exits"]) == (3, 1, 2)
    assert room["compliance"] == 0.5 and room["exit_compliance"] == pytest.approx(1 / 3)
    assert report["4A-01"]["compliance"] == 1.0 and report["4A-01"]["exit_compliance"] is None
    total = report["(all)"]
    assert total["entries"] == 4 and total["compliance"] == pytest.approx(2 / 3) and total["opportunities"] == 7


def test_hygiene_by_ward_and_with_no_judged_entries():
    rows = [hygiene("unknown", 1, True), hygiene("opportunity", 2, True, room="3B-14", ward="3B"),
            hygiene("missed", 3, True, ward=None)]  # fmt: skip
    report = hygiene_report(rows, Grouping(by="ward"))
    assert report["3B"]["entries"] == 2 and report["3B"]["compliance"] == 1.0
    assert report["(none)"]["compliance"] == 0.0
    assert hygiene_report([hygiene("unknown", 1, True)])["3B-12"]["compliance"] is None


def test_shifts_are_day_7_to_15_evening_15_to_23_night_23_to_7_and_all_are_listed():
    rows = [
        hygiene("missed", MIDNIGHT + 7 * HOUR - 1, True),  # 06:59:59: night
        hygiene("opportunity", MIDNIGHT + 7 * HOUR, True),  # 07:00: day
        hygiene("opportunity", MIDNIGHT + 15 * HOUR - 1, True),
        hygiene("missed", MIDNIGHT + 23 * HOUR, True),  # 23:00: night again
    ]
    report = hygiene_report(rows, BY_SHIFT_UTC)
    assert list(report) == ["day", "evening", "night", "(all)"]
    assert report["day"]["compliant_entries"] == 2 and report["night"]["missed_entries"] == 2
    assert report["evening"]["entries"] == 0 and report["evening"]["compliance"] is None


# ---- falls -----------------------------------------------------------------------------------------------------


def test_falls_counts_falls_still_on_floor_and_bed_exits():
    rows = [
        row("fall", "fall", 1),
        row("fall", "still_on_floor", 2),
        row("fall", "resolved", 3),
        row("fall", "fall", 4, room="4A-01"),
        row("bed_exit", "bed_exit", 5),
        row("mask", "no_mask", 6),
    ]
    report = falls_report(rows)
    assert report["3B-12"] == {"falls": 1, "still_on_floor": 1, "bed_exits": 1}
    assert report["(all)"] == {"falls": 2, "still_on_floor": 1, "bed_exits": 1}


# ---- occupancy -------------------------------------------------------------------------------------------------


def counts(device, *pairs, **over):
    return [row("occupancy", "count_changed", t, device=device, count=c, **over) for t, c in pairs]


def test_occupancy_mean_max_and_over_capacity_from_count_steps():
    rows = counts("dev-a", (-50, 2), (100, 1), (300, 0), (500, 3), (600, 2))
    rows.append(row("occupancy", "over_capacity", 500, count=3, max_people=2))
    room = occupancy_report(rows, 0, 1000)["3B-12"]
    assert room["observed_seconds"] == 1000
    assert room["mean_occupancy"] == pytest.approx((2 * 100 + 1 * 200 + 0 + 3 * 100 + 2 * 400) / 1000)
    assert room["max_occupancy"] == 3  # the count before the window (2) only counts from the window's start
    assert room["over_capacity_seconds"] == 100 and room["over_capacity_alerts"] == 1


def test_a_room_is_unobserved_before_its_first_count_and_while_its_device_is_offline():
    rows = counts("dev-a", (200, 2))
    rows += [
        row("system", "device_offline", 600, silent_s=100.0),  # silent since 500
        row("system", "device_online", 800),  # back: the last count holds again
    ]
    room = occupancy_report(rows, 0, 1000)["3B-12"]
    assert room["observed_seconds"] == (500 - 200) + (1000 - 800)
    assert room["mean_occupancy"] == 2.0
    assert occupancy_report([], 0, 1000)["(all)"]["mean_occupancy"] is None


def test_patient_alone_time_counts_the_whole_reported_period_until_attended():
    rows = counts("dev-a", (0, 1), (700, 2))
    rows += [
        row("occupancy", "patient_alone", 400, seconds_alone=300.0),  # alone since 100
        row("occupancy", "patient_attended", 700, seconds_alone=600.0, count=2),
    ]
    room = occupancy_report(rows, 0, 1000)["3B-12"]
    assert room["patient_alone_seconds"] == 600 and room["patient_alone_alerts"] == 1


def test_patient_alone_ends_with_a_count_other_than_one_offline_or_the_window():
    left = [*counts("dev-a", (0, 1), (250, 0)), row("occupancy", "patient_alone", 200, seconds_alone=200.0)]
    assert occupancy_report(left, 0, 1000)["3B-12"]["patient_alone_seconds"] == 250
    before = [*counts("dev-a", (-300, 1), (100, 2)), row("occupancy", "patient_alone", -100, seconds_alone=50.0)]
    room = occupancy_report(before, 0, 1000)["3B-12"]
    assert room["patient_alone_seconds"] == 100 and room["patient_alone_alerts"] == 0  # the alert was earlier
    offline = [
        *counts("dev-a", (0, 1)),
        row("occupancy", "patient_alone", 100, seconds_alone=100.0),
        row("system", "device_offline", 500, silent_s=100.0),
    ]
    assert occupancy_report(offline, 0, 1000)["3B-12"]["patient_alone_seconds"] == 400
    running = [*counts("dev-a", (0, 1)), row("occupancy", "patient_alone", 900, seconds_alone=900.0)]
    assert occupancy_report(running, 0, 1000)["3B-12"]["patient_alone_seconds"] == 1000


def test_occupancy_by_ward_pools_the_rooms_observed_time():
    rows = counts("dev-a", (0, 2)) + counts("dev-b", (500, 0), room="3B-14")
    rows.append(row("occupancy", "after_hours_visitor", 900, count=3, max_people=2, room="3B-14", device="dev-b"))
    ward = occupancy_report(rows, 0, 1000, Grouping(by="ward"))["3B"]
    assert ward["observed_seconds"] == 1500 and ward["mean_occupancy"] == pytest.approx(2000 / 1500)
    assert ward["max_occupancy"] == 2 and ward["after_hours_visitor_alerts"] == 1


def test_occupancy_by_shift_splits_time_at_the_shift_boundaries():
    rows = counts("dev-a", (MIDNIGHT + 6 * HOUR, 1), (MIDNIGHT + 8 * HOUR, 0))
    report = occupancy_report(rows, MIDNIGHT, MIDNIGHT + 24 * HOUR, BY_SHIFT_UTC)
    assert report["night"]["observed_seconds"] == 2 * HOUR  # 06-07 (one person) and 23-24 (nobody)
    assert report["night"]["mean_occupancy"] == 0.5 and report["night"]["max_occupancy"] == 1
    assert report["day"]["observed_seconds"] == 8 * HOUR and report["day"]["mean_occupancy"] == pytest.approx(1 / 8)
    assert report["evening"]["observed_seconds"] == 8 * HOUR and report["evening"]["max_occupancy"] == 0
    assert report["(all)"]["observed_seconds"] == 18 * HOUR


def test_hour_boundaries_follow_the_local_clock_not_utc():
    ist = timezone(timedelta(hours=5, minutes=30))
    cuts = list(hour_boundaries(MIDNIGHT, MIDNIGHT + 2 * HOUR, ist))
    assert cuts == [MIDNIGHT + 30 * 60, MIDNIGHT + 90 * 60]  # 05:30 and 06:30 UTC are 11:00 and 12:00 there


# ---- CSV -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("3B-12", "3B-12"),
        (0.123456, "0.1235"),
        (3, "3"),
        (None, ""),
    ],
)
def test_csv_cells_are_numbers_or_defused_text(value, cell):
    assert safe_cell(value) == cell


# ---- the route -------------------------------------------------------------------------------------------------

NOW = MIDNIGHT + 30 * HOUR  # Thursday 06:00 UTC


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    client = await start_app(aiohttp_client, tmp_path, Clock(NOW))
    insert_device(live_db(client), "dev-a", room="3B-12", ward="3B", site="st-marys", enrolled_at=1_800_000_000.0)
    insert_device(live_db(client), "dev-b", room="4A-01", ward="4A", site="st-marys", enrolled_at=1_800_000_000.0)
    return client


def put(client, device, room, app, type, t, severity="info", **data):
    event = wire.Event(event_id=wire.new_event_id(), device_id=device, room=room, app=app, type=type,
                       severity=severity, time=t, data=data)  # fmt: skip
    assert intake.store(client.server.app[DB_KEY], event, NOW)


async def get(client, path, **headers):
    return await client.get(path, headers={**api_headers(client, "viewer"), **headers})


async def test_the_hygiene_report_as_json_and_csv(client):
    for device, room in (("dev-a", "3B-12"), ("dev-b", "4A-01")):
        put(client, device, room, "hand_hygiene", "opportunity", MIDNIGHT + 9 * HOUR, entry=True, compliant=True)
    put(client, "dev-a", "3B-12", "hand_hygiene", "missed", MIDNIGHT + 10 * HOUR, "warning", entry=True)
    put(client, "dev-a", "3B-12", "hand_hygiene", "missed", MIDNIGHT - 10, "warning", entry=True)  # before from

    query = f"?from={MIDNIGHT}&to={MIDNIGHT + DAY}"
    resp = await get(client, "/api/v1/reports/hygiene" + query)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["kind"], body["group"], body["from"], body["to"]) == ("hygiene", "room", MIDNIGHT, MIDNIGHT + DAY)
    assert [(r["group"], r["compliance"]) for r in body["rows"]] == [("3B-12", 0.5), ("4A-01", 1.0)]
    assert body["totals"]["entries"] == 3 and body["totals"]["compliance"] == pytest.approx(0.6667)

    resp = await get(client, "/api/v1/reports/hygiene" + query + "&format=csv&ward=3B")
    assert resp.status == 200 and resp.content_type == "text/csv"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="wardsight-hygiene-by-room-') and disposition.endswith('.csv"')
    table = list(csv.reader(io.StringIO(await resp.text())))
    assert table[0][:3] == ["room", "opportunities", "compliant"] and table[0][-2:] == ["compliance", "exit_compliance"]
    assert [r[0] for r in table[1:]] == ["3B-12", "(all)"]
    assert all(cell == "" or float(cell) >= 0 for r in table[1:] for cell in r[1:])
    assert table[1][table[0].index("compliance")] == "0.5" and table[1][-1] == ""


async def test_a_stored_ward_that_looks_like_a_formula_is_defused_in_csv(client):
    client.server.app[DB_KEY].db.execute("UPDATE devices SET ward = ? WHERE id = 'dev-a'", ['=cmd|"/c calc"!A1'])
    put(client, "dev-a", "3B-12", "fall", "fall", NOW - HOUR, "critical")
    resp = await get(client, "/api/v1/reports/falls?group=ward&format=csv")
    table = list(csv.reader(io.StringIO(await resp.text())))
    assert table[0] == ["ward", "falls", "still_on_floor", "bed_exits"]
    assert table[1] == ['\'=cmd|"/c calc"!A1', "1", "0", "0"]


async def test_the_occupancy_report_reads_the_state_from_before_the_window(client):
    put(client, "dev-a", "3B-12", "occupancy", "count_changed", MIDNIGHT - 3 * DAY, count=2, previous=0)
    put(client, "dev-a", "3B-12", "occupancy", "over_capacity", MIDNIGHT - 3 * DAY, "warning", count=2, max_people=1)
    put(client, "dev-a", "3B-12", "occupancy", "count_changed", MIDNIGHT + 12 * HOUR, count=1, previous=2)
    resp = await get(client, f"/api/v1/reports/occupancy?from={MIDNIGHT}&to={MIDNIGHT + 2 * DAY}")
    body = await resp.json()
    (room,) = body["rows"]
    # Observed up to now (Thursday 06:00), not up to "to": 12 h at 2 people, then 18 h at 1.
    assert room["observed_seconds"] == 30 * HOUR
    assert room["mean_occupancy"] == pytest.approx((2 * 12 + 18) / 30, abs=1e-4)
    assert room["over_capacity_seconds"] == 12 * HOUR and room["max_occupancy"] == 2


@pytest.fixture
def india(monkeypatch):
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_shifts_use_the_server_local_time(client, india):
    # 02:00 UTC is 07:30 in the server's zone: the day shift, not the night shift.
    put(client, "dev-a", "3B-12", "fall", "fall", MIDNIGHT + 2 * HOUR, "critical")
    put(client, "dev-b", "4A-01", "bed_exit", "bed_exit", MIDNIGHT + 1 * HOUR, "warning")  # 06:30 there: night
    body = await (await get(client, f"/api/v1/reports/falls?group=shift&from={MIDNIGHT}&to={NOW}")).json()
    assert [(r["group"], r["falls"], r["bed_exits"]) for r in body["rows"]] == [
        ("day", 1, 0),
        ("evening", 0, 0),
        ("night", 0, 1),
    ]
    assert body["utc_offset_seconds"] == 5.5 * HOUR and body["shifts"][0] == {
        "name": "day",
        "start_hour": 7,
        "end_hour": 15,
    }
    iso = await get(client, "/api/v1/reports/falls?group=shift&from=2027-03-10T07:00&to=2027-03-10T08:00")
    assert (await iso.json())["from"] == MIDNIGHT + 1.5 * HOUR  # 07:00 local is 01:30 UTC


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/reports/weather", 404),
        ("/api/v1/reports/falls?group=bed", 400),
        ("/api/v1/reports/falls?format=xlsx", 400),
        ("/api/v1/reports/falls?from=20&to=10", 400),
        (f"/api/v1/reports/falls?from={NOW - 401 * 86400}&to={NOW}", 400),
        ("/api/v1/reports/falls?from=yesterday", 400),
        ("/api/v1/reports/falls?from=inf", 400),
        ("/api/v1/reports/falls?room=3B%2012", 400),
        ("/api/v1/reports/falls?colour=red", 400),
    ],
)
async def test_bad_report_requests_are_refused(client, path, status):
    resp = await get(client, path)
    assert resp.status == status and "error" in await resp.json()


async def test_reports_need_a_login(client):
    assert (await client.get("/api/v1/reports/falls")).status == 401
