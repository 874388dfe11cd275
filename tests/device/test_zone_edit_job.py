"""The zone editor's job on the device (issue 15, item 3): ``push_config`` with params ``merge = "zones"`` changes the
zones and privacy regions of the device's own device.toml and nothing else (firmware/jobs/layout.py), then
validates, writes and restarts as a pushed file does; a self-crossing outline is refused by DeviceConfig with the
reason."""

from __future__ import annotations

import json
import logging
import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from firmware.exitcodes import RESTART_EXIT_CODE
from firmware.jobs.config import ConfigRefusedError, dry_run_config, previous_config_path, recover_pushed_config
from firmware.jobs.layout import LayoutEditError, merge_layout
from tests.device.test_device_jobs import APPROVED, Device, executed, fleet  # noqa: F401
from wardsight.device_config import DeviceConfig, LayoutEdit, load_device_config, outline_problem, polygon_problem

# Many settings away from their defaults, comments, a multi-line polygon, a zone with its own keypoints and score.
DEVICE_TOML = """\
# ward 6D, bed 2: commissioned by hand
name = "cam-6d02"
server_url = "https://fleet.example.org"   # the hospital's fleet
model = "movenet-multipose"
threads = 3
min_person_score = 0.25
heartbeat_seconds = 15.0
model_mirrors = ["/srv/mirror"]
reboot_command = ["systemctl", "--no-block", "start", "wardsight-reboot.service"]

[accelerator]
kind = "cpu"

[source]
kind = "stream"
url = "rtsp://viewer:s3cret@10.0.6.42/stream1"
stall_seconds = 8.0
size = [1920, 1080]

[occupancy]
stable_seconds = 2.5
min_score = 0.2
zones = ["bed-2"]
patient_zone = "bed-2"
max_people = 4
visiting_hours = [9.0, 20.5]
utc_offset_hours = 1.0

[fall]
window_seconds = 3.0
still_down_seconds = 90.0

[bed_exit]
enabled = true
bed_zone = "bed-2"

[hand_hygiene]
enabled = true
door_zones = ["door"]
rub_seconds = 25.0
use_hands = false

# privacy first: the bathroom door is never seen
[[privacy_regions]]
name = "bathroom door (left) \\"WC\\""
polygon = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.6], [0.0, 0.6]]

[[privacy_regions]]
name = "window"
polygon = [[0.83333333, 0.0], [1.0, 0.0], [1.0, 0.25]]

[[zones]]
name = "bed-2"   # the patient's bed
kind = "bed"
polygon = [
    [0.3, 0.4],
    [0.7, 0.4],   # head end
    [0.7, 0.95],
    [0.3, 0.95],
]
min_score = 0.45
keypoints = ["left_hip", "right_hip"]

[[zones]]
name = "door"
kind = "door"
polygon = [[0.8, 0.1], [0.95, 0.1], [0.95, 0.8], [0.8, 0.8]]

# the mask policy of this ward
[mask]
enabled = false
grace_seconds = 45.0
"""
BOW_TIE = [[0.5, 0.1], [0.7, 0.3], [0.7, 0.1], [0.5, 0.3]]
CROSSING = "its outline crosses itself: the edge from point 1 to point 2 crosses the edge from point 3 to point 4"


def edit(**parts: Any) -> LayoutEdit:
    return LayoutEdit.model_validate(parts)


def shapes_aside(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("zones", "privacy_regions")}


def reported(polygon: list[list[float]]) -> list[list[float]]:
    """As the device reports a polygon to the console (firmware/preview.py)."""
    return [[round(x, 4), round(y, 4)] for x, y in polygon]


@pytest.fixture
def configured(tmp_path, fleet):  # noqa: F811
    dev = Device(tmp_path, fleet)  # no model store: the dry run does not look for model files
    dev.config_path.write_text(DEVICE_TOML)
    dev.learn_server_time()
    yield dev
    dev.close()


# ---- through the job runner ----------------------------------------------------------------------------------


def test_the_job_changes_only_zones_and_privacy_regions(configured):
    before = tomllib.loads(DEVICE_TOML)
    change = {
        "zones": {
            "add": [
                {"name": "sink", "kind": "dispenser", "polygon": [[0.0, 0.7], [0.15, 0.7], [0.15, 0.9], [0.0, 0.9]]}
            ],
            "change": [
                {"name": "bed-2", "kind": "bed", "polygon": [[0.3, 0.4], [0.75, 0.4], [0.75, 0.95], [0.3, 0.95]]}
            ],
        },
        "privacy_regions": {
            "add": [{"name": "sink mirror", "polygon": [[0.0, 0.65], [0.1, 0.65], [0.1, 0.7]]}],
            "remove": [{"polygon": reported(before["privacy_regions"][1]["polygon"])}],  # the window, as reported
        },
    }
    token = configured.job(
        "push_config", params={"merge": "zones"}, config=json.dumps(change), privacy_approval=APPROVED
    )
    runner = configured.runner()
    assert runner.handle(token) is None  # applied (removing the window: approved by two admins); the agent restarts
    assert configured.stops == [RESTART_EXIT_CODE]
    assert previous_config_path(configured.config_path).read_text() == DEVICE_TOML

    text = configured.config_path.read_text()
    after = tomllib.loads(text)
    assert shapes_aside(after) == shapes_aside(before)  # every other setting, exactly
    assert [z["name"] for z in after["zones"]] == ["bed-2", "door", "sink"]
    bed = after["zones"][0]
    assert bed == {**before["zones"][0], "polygon": [[0.3, 0.4], [0.75, 0.4], [0.75, 0.95], [0.3, 0.95]]}
    assert (bed["min_score"], bed["keypoints"]) == (0.45, ["left_hip", "right_hip"])  # kept: the editor has none
    assert after["zones"][1] == before["zones"][1]
    assert after["privacy_regions"] == [before["privacy_regions"][0], change["privacy_regions"]["add"][0]]
    DeviceConfig.model_validate(after)
    # Comments and the text of what was not touched are still there, byte for byte.
    for kept in (DEVICE_TOML.split("[[privacy_regions]]")[0], '[[zones]]\nname = "door"\nkind = "door"\n',
                 "# the mask policy of this ward\n[mask]\nenabled = false\ngrace_seconds = 45.0\n",
                 '[[privacy_regions]]\nname = "bathroom door (left) \\"WC\\""\n'):  # fmt: skip
        assert kept in text

    runner.close()
    assert recover_pushed_config(configured.dir, configured.config_path) is None  # the start ...
    configured.runner()  # ... got as far as the runner: reported succeeded
    assert executed(configured)[0][1:] == ("push_config", "done")


@pytest.mark.parametrize(
    ("change", "reason", "why"),
    [
        ({"zones": {"remove": ["bed-9"]}}, "layout_changed", "zone 'bed-9' is not on this device"),
        (
            {"zones": {"change": [{"name": "sink", "kind": "dispenser", "polygon": [[0, 0], [1, 0], [1, 1]]}]}},
            "layout_changed",
            "zone 'sink' is not on this device",
        ),
        (
            {"zones": {"add": [{"name": "door", "kind": "door", "polygon": [[0, 0], [1, 0], [1, 1]]}]}},
            "layout_changed",
            "there is already a zone 'door'",
        ),
        (
            {"privacy_regions": {"remove": [{"polygon": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]}]}},
            "layout_changed",
            "a privacy region with 3 points",
        ),
        ({"zones": {"remove": ["bed-2"]}}, "config_invalid", "names zone 'bed-2'"),  # occupancy still uses it
        ({"zones": {"add": [{"name": "x", "kind": "bed", "polygon": BOW_TIE}]}}, "edit_invalid", CROSSING),
        ({"zones": {"add": []}}, "edit_invalid", "the edit changes nothing"),
        ({"zones": {"remove": ["door"]}, "threads": 1}, "edit_invalid", "unknown key 'threads'"),
    ],
)
def test_an_edit_that_does_not_fit_is_refused_and_the_file_kept(configured, caplog, change, reason, why):
    runner = configured.runner()
    with caplog.at_level(logging.WARNING, logger="wardsight.device.jobs"):
        report = runner.handle(configured.job("push_config", params={"merge": "zones"}, config=json.dumps(change)))
    assert report is not None and (report.state, report.reason) == ("refused", reason)
    assert why in caplog.text
    assert configured.config_path.read_text() == DEVICE_TOML
    assert not previous_config_path(configured.config_path).exists() and configured.stops == []


def test_an_edit_removing_a_privacy_region_without_approval_is_refused(configured, caplog):
    window = tomllib.loads(DEVICE_TOML)["privacy_regions"][1]["polygon"]
    sink = {"add": [{"name": "sink", "kind": "dispenser", "polygon": [[0.0, 0.7], [0.15, 0.7], [0.15, 0.9]]}]}
    remove = {"zones": sink, "privacy_regions": {"remove": [{"polygon": reported(window)}]}}
    grow = {
        "zones": sink,
        "privacy_regions": {
            "remove": [{"polygon": reported(window)}],
            "add": [{"name": "window", "polygon": [[0.8, 0.0], [1.0, 0.0], [1.0, 0.4]]}],
        },
    }
    runner = configured.runner()
    with caplog.at_level(logging.WARNING, logger="wardsight.device.jobs"):
        report = runner.handle(configured.job("push_config", params={"merge": "zones"}, config=json.dumps(remove)))
    assert report is not None and (report.state, report.reason) == ("refused", "privacy_change_not_approved")
    assert "privacy region 'window' (2.1% of the frame) is removed" in caplog.text
    assert configured.config_path.read_text() == DEVICE_TOML and configured.stops == []
    # A region replaced by a larger one that contains it hides no less: no approval needed.
    assert runner.handle(configured.job("push_config", params={"merge": "zones"}, config=json.dumps(grow))) is None
    assert [r["polygon"] for r in tomllib.loads(configured.config_path.read_text())["privacy_regions"]][1] == [
        [0.8, 0.0], [1.0, 0.0], [1.0, 0.4]
    ]  # fmt: skip


def test_an_unknown_merge_is_refused(configured):
    job = configured.job("push_config", params={"merge": "everything"}, config="{}")
    report = configured.runner().handle(job)
    assert report is not None and (report.state, report.reason) == ("refused", "unknown_merge")
    assert configured.config_path.read_text() == DEVICE_TOML


def test_a_device_without_a_file_gets_one_with_only_the_shapes(configured):
    configured.config_path.unlink()
    change = {"zones": {"add": [{"name": "door", "kind": "door", "polygon": [[0, 0], [0.25, 0], [0.25, 1]]}]}}
    assert configured.runner().handle(configured.job("push_config", params={"merge": "zones"},
                                                     config=json.dumps(change))) is None  # fmt: skip
    assert tomllib.loads(configured.config_path.read_text()) == {
        "zones": [{"name": "door", "kind": "door", "polygon": [[0.0, 0.0], [0.25, 0.0], [0.25, 1.0]]}]
    }
    assert not previous_config_path(configured.config_path).exists()


# ---- the merge itself ----------------------------------------------------------------------------------------


def test_an_unchanged_outline_keeps_the_devices_exact_coordinates():
    text = '[[zones]]\nname = "a"\nkind = "bed"\npolygon = [[0.123456, 0.1], [0.5, 0.1], [0.5, 0.9]]\n'
    same = edit(zones={"change": [{"name": "a", "kind": "floor", "polygon": [[0.1235, 0.1], [0.5, 0.1], [0.5, 0.9]]}]})
    assert tomllib.loads(merge_layout(text, same))["zones"][0] == {
        "name": "a", "kind": "floor", "polygon": [[0.123456, 0.1], [0.5, 0.1], [0.5, 0.9]]
    }  # fmt: skip
    nothing = edit(zones={"change": [{"name": "a", "kind": "bed", "polygon": [[0.1235, 0.1], [0.5, 0.1], [0.5, 0.9]]}]})
    assert merge_layout(text, nothing) == text


def test_removing_the_last_tables_keeps_what_follows_them():
    zone = '[[zones]]\nname = "a"\nkind = "bed"\npolygon = [[0, 0], [1, 0], [1, 1]]\n'
    text = f'name = "x"\n\n{zone}\n# apps\n[fall]\nenabled = false\n'
    merged = merge_layout(text, edit(zones={"remove": ["a"]}))
    assert merged == 'name = "x"\n\n\n# apps\n[fall]\nenabled = false\n'


def test_zones_written_otherwise_are_not_edited():
    text = 'zones = [{name = "a", kind = "bed", polygon = [[0, 0], [1, 0], [1, 1]]}]\n'
    with pytest.raises(LayoutEditError) as refused:
        merge_layout(text, edit(zones={"remove": ["a"]}))
    assert refused.value.reason == "layout_not_editable"


def test_windows_line_ends_and_a_missing_last_newline():
    text = 'name = "x"\r\n[[privacy_regions]]\r\nname = "p"\r\npolygon = [[0, 0], [1, 0], [1, 1]]'
    merged = merge_layout(text, edit(privacy_regions={"add": [{"name": "q", "polygon": [[0, 0], [0.5, 0], [0, 0.5]]}]}))
    assert merged.startswith(text)
    assert [r["name"] for r in tomllib.loads(merged)["privacy_regions"]] == ["p", "q"]


# ---- self-crossing outlines ------------------------------------------------------------------------------


def test_a_self_crossing_outline_is_refused_in_what_is_new_but_a_device_still_loads_its_own_file(tmp_path):
    zone = {"name": "x", "kind": "bed", "polygon": BOW_TIE}
    assert f"zone 'x': {CROSSING}" in (outline_problem(DeviceConfig.model_validate({"zones": [zone]})) or "")
    window = {"name": "window", "polygon": BOW_TIE}
    found = outline_problem(DeviceConfig.model_validate({"privacy_regions": [window]}))
    assert f"privacy region 'window': {CROSSING}" in (found or "")
    square = [[0.5, 0.1], [0.7, 0.1], [0.7, 0.3], [0.5, 0.3]]
    assert outline_problem(DeviceConfig.model_validate({"zones": [{**zone, "polygon": square}]})) is None
    # A push carrying it is refused by the device's dry run, with the reason ...
    with pytest.raises(ConfigRefusedError, match=f"zone 'x': {CROSSING}"):
        dry_run_config(DeviceConfig.model_validate({"zones": [zone]}), None)
    # ... and the editor's shapes are refused as they are made.
    with pytest.raises(ValidationError, match=CROSSING):
        LayoutEdit.model_validate({"zones": {"add": [zone]}})
    # A device whose own file holds a shape drawn before the check still starts (its mask covers the area).
    (tmp_path / "device.toml").write_text(
        '[[privacy_regions]]\nname = "window"\npolygon = [[0.1, 0.1], [0.4, 0.4], [0.4, 0.1], [0.1, 0.4]]\n'
    )
    assert load_device_config(tmp_path, None, {}).privacy_regions[0].name == "window"


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        ([(0, 0), (1, 0), (1, 1), (0, 1)], None),
        ([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], None),  # closed explicitly
        ([(0, 0), (1, 0), (1, 0), (1, 1)], None),  # a point twice
        ([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)], None),  # no area: the dry run says so
        (
            [(0, 0), (1, 0), (0.5, 0), (0.5, 1)],
            "the edge from point 2 to point 3 runs back along the edge from point 1",
        ),
        ([(0, 0), (1, 0), (1, 1), (0.5, 0), (0, 1)], "crosses itself"),  # touches an edge at a point
        ([(0, 0), (0.6, 0), (0.6, 0.5), (0.2, 0.5), (0.2, 0.2), (1, 0.2), (1, 1), (0, 1)], "crosses"),
    ],
)
def test_polygon_problems(points, problem):
    got = polygon_problem(points)
    assert got is None if problem is None else problem in (got or "")
