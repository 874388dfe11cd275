"""The signed system floor's format (:mod:`wardsight.sysfloor`) and the device's pure decision on it
(:func:`firmware.ota.system_state.judge_floor`); against TUF and the real server: test_system_tuf_attacks.py and
test_system_ota_e2e.py in tests/fleet/ota."""

from __future__ import annotations

import pytest

from firmware.ota.system_state import SystemOffer, Verdict, judge_floor
from wardsight import sysfloor

BOARD = "wardsight-rpi5"


def offer(version: str, *, rollback: bool = False, compatible: str = BOARD) -> SystemOffer:
    return SystemOffer(rollout_id="r1", version=version, compatible=compatible, rollback=rollback)


def custom(**floors: str) -> dict[str, object]:
    return {"system_floors": {name.replace("_", "-"): v for name, v in floors.items()}}


def test_an_offer_below_the_floor_is_refused_rollback_or_not() -> None:
    floors = custom(wardsight_rpi5="2026.12.1")
    assert judge_floor(offer("2026.6.3", rollback=True), floors) == Verdict(
        "reject", "below_signed_floor: a rollback to 2026.6.3 is below 2026.12.1, the lowest wardsight-rpi5 version "
        "the hospital signed")  # fmt: skip
    assert judge_floor(offer("2026.12.1-rc.1"), floors) == Verdict(
        "reject", "below_signed_floor: 2026.12.1-rc.1 is below 2026.12.1, the lowest wardsight-rpi5 version the "
        "hospital signed")  # fmt: skip
    for version in ("2026.12.1", "2026.12.1.0", "2027.1", "v2026.12.2"):  # at or above: judge_version decides
        assert judge_floor(offer(version, rollback=True), floors) is None, version
    # Another board's floor, or none at all: no floor for this one.
    for other in (custom(wardsight_rpi4="9.0"), {"note": "x"}, {}, None):
        assert judge_floor(offer("1.0.0", rollback=True), other) is None


@pytest.mark.parametrize(
    ("signed", "reason"),
    [
        ("floors", "floor_unreadable: the targets metadata's custom is not an object"),
        ({"system_floors": ["wardsight-rpi5", "2.0"]}, "floor_unreadable: the targets metadata's system_floors is not "
                                                       "an object"),
        ({"system_floors": {BOARD: 2}}, "floor_unreadable: the floor for wardsight-rpi5 is not a version string"),
        ({"system_floors": {BOARD: "latest"}}, "floor_unreadable: 'latest' is not a dotted numeric version"),
    ],
)  # fmt: skip
def test_a_floor_the_device_cannot_read_refuses_every_offer(signed: object, reason: str) -> None:
    assert judge_floor(offer("9.9.9"), signed) == Verdict("reject", reason)


def test_the_floor_is_set_and_removed_keeping_everything_else() -> None:
    start = {"note": "kept", "system_floors": {"wardsight-rpi4": "3.0"}}
    moved = sysfloor.with_floor(start, BOARD, "2026.12.1")
    assert moved == {"note": "kept", "system_floors": {"wardsight-rpi4": "3.0", BOARD: "2026.12.1"}}
    assert start == {"note": "kept", "system_floors": {"wardsight-rpi4": "3.0"}}, "a copy"
    assert (sysfloor.floor_for(moved, BOARD), sysfloor.floor_for(moved, "wardsight-rpi4")) == ("2026.12.1", "3.0")
    assert sysfloor.with_floor(sysfloor.with_floor(moved, BOARD, None), "wardsight-rpi4", None) == {"note": "kept"}
    assert sysfloor.with_floor({"system_floors": "junk"}, BOARD, "1.0") == {"system_floors": {BOARD: "1.0"}}
    with pytest.raises(ValueError, match=r"carries build metadata '\+7'"):
        sysfloor.with_floor(None, BOARD, "1.0+7")
    with pytest.raises(ValueError, match="not a dotted numeric version"):
        sysfloor.with_floor(None, BOARD, "newest")
