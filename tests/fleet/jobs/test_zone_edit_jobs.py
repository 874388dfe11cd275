"""The zone editor's job (issue 15, item 3): ``push_config`` with params ``{"merge": "zones"}`` carries only zones and
privacy-region changes (a ``LayoutEdit``), validated on the server; self-crossing outlines are refused with the
reason, in an edit and in a whole pushed device.toml alike."""

from __future__ import annotations

import json

from tests.fleet.jobs.test_jobs import (  # noqa: F401
    admin,
    approve,
    client,
    create,
    create_ok,
    device,
    live,
    operator,
    second_admin,
)

EDIT = {
    "v": 1,
    "zones": {
        "add": [{"name": "sink", "kind": "dispenser", "polygon": [[0.0, 0.7], [0.15, 0.7], [0.15, 0.9], [0.0, 0.9]]}],
        "change": [],
        "remove": ["door"],
    },
    "privacy_regions": {"add": [{"name": "window", "polygon": [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]}], "remove": []},
}
BOW_TIE = [[0.5, 0.1], [0.7, 0.3], [0.7, 0.1], [0.5, 0.3]]
CROSSING = "its outline crosses itself: the edge from point 1 to point 2 crosses the edge from point 3 to point 4"


async def test_a_zones_edit_reaches_the_device_as_the_edit_only(client, device, operator):  # noqa: F811
    text = json.dumps(EDIT)
    batch_id = await create_ok(client, operator, "push_config", {"device_ids": [device.id]},
                               params={"merge": "zones"}, config=text)  # fmt: skip
    (job,) = await device.poll()
    assert (job.kind, job.params, job.config) == ("push_config", {"merge": "zones"}, text)
    row = live(client).db["job_batches"].get(batch_id)
    assert json.loads(row["params"]) == {"merge": "zones"}


async def test_a_plain_push_config_still_has_no_params(client, device, admin, second_admin):  # noqa: F811
    await approve(client, await create_ok(client, admin, "push_config", {"device_ids": [device.id]},
                                          config='name = "cam-1"\n'), second_admin)  # fmt: skip
    (job,) = await device.poll()
    assert job.params == {}


async def test_bad_zone_edits_and_self_crossing_outlines_are_refused_with_the_reason(client, device, operator):  # noqa: F811
    crossing_zone = {**EDIT, "zones": {"add": [{"name": "x", "kind": "bed", "polygon": BOW_TIE}]}}
    crossing_region = {"privacy_regions": {"add": [{"name": "window", "polygon": BOW_TIE}]}}
    cases = [
        ({"merge": "zones"}, json.dumps(crossing_zone), f"zone 'x': {CROSSING}"),
        ({"merge": "zones"}, json.dumps(crossing_region), f"privacy region 'window': {CROSSING}"),
        ({"merge": "zones"}, json.dumps({"zones": {"add": [], "remove": []}}), "the edit changes nothing"),
        (
            {"merge": "zones"},
            json.dumps({"zones": {"remove": ["a"], "change": [{**EDIT["zones"]["add"][0], "name": "a"}]}}),
            "zone 'a' is named more than once",
        ),
        ({"merge": "zones"}, json.dumps({**EDIT, "source": {"kind": "camera"}}), "unknown key 'source'"),
        ({"merge": "zones"}, 'name = "cam-1"\n', "config (zones edit)"),
        ({"merge": "everything"}, json.dumps(EDIT), "params for push_config"),
        ({}, "[[zones]]\nname = 'x'\nkind = 'bed'\npolygon = " + json.dumps(BOW_TIE) + "\n", f"zone 'x': {CROSSING}"),
    ]
    for params, config, named in cases:
        resp = await create(client, operator, "push_config", {"device_ids": [device.id]}, params=params, config=config)
        assert resp.status == 400, (config, await resp.text())
        assert named in (await resp.json())["error"], (config, await resp.text())
    assert live(client).db["job_batches"].count == 0
    assert await device.poll() == []
