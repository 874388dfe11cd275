"""The signed system floor (``wardsight ota system-floor``, :mod:`signing.floors`): set, kept and removed with the
offline targets key, against the real fleet server on loopback; publishing and withdrawing bundles keep it, and a
server cannot make the hospital sign it away."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuf.api.metadata import Metadata, Targets

from signing.bundles import publish_bundle, withdraw_bundle
from signing.commands import ota
from signing.errors import OtaCliError
from signing.floors import set_floor
from signing.metadata import resign_targets
from tests.device.fakes.rauc import make_bundle
from tests.fleet.ota.test_ota_repository import start_fleet

BOARD = "wardsight-rpi5"
OTHER = "wardsight-rpi4"


@pytest.fixture
def fleet(tmp_path):
    running = start_fleet(tmp_path)
    yield running
    running.stop()


def served(fleet) -> Targets:
    return Metadata[Targets].from_bytes((fleet.metadata / "targets.json").read_bytes()).signed


def floors(fleet) -> dict[str, str] | None:
    custom = served(fleet).unrecognized_fields.get("custom")
    return None if custom is None else custom.get("system_floors")


def publish(fleet, tmp_path: Path, version: str, compatible: str = BOARD, **kwargs) -> dict:
    (tmp_path / "bundles").mkdir(parents=True, exist_ok=True)
    made = make_bundle(tmp_path / "bundles" / f"{compatible}-{version}.raucb", compatible=compatible, version=version,
                       payload=f"{compatible} {version} rootfs ".encode() * 512)  # fmt: skip
    return publish_bundle(made, fleet.keys, fleet.conn, compatible=compatible, version=version,
                          read=lambda path: None, **kwargs)  # fmt: skip


def test_the_floor_is_signed_and_kept_across_publish_and_withdraw(fleet, tmp_path):
    publish(fleet, tmp_path, "1.0.0")
    publish(fleet, tmp_path, "1.1.0")
    summary = set_floor(BOARD, "1.1.0", fleet.keys, fleet.conn)
    assert (summary["floor"], summary["previous_floor"], summary["refused_from_now"]) == ("1.1.0", None, ["1.0.0"])
    assert floors(fleet) == {BOARD: "1.1.0"}
    version = served(fleet).version

    # Publishing and withdrawing re-sign the targets metadata: the floor stays, signed again with them.
    publish(fleet, tmp_path, "1.2.0")
    assert floors(fleet) == {BOARD: "1.1.0"} and served(fleet).version == version + 1
    withdraw_bundle(BOARD, "1.0.0", fleet.keys, fleet.conn)
    assert floors(fleet) == {BOARD: "1.1.0"} and f"system/{BOARD}/1.0.0.raucb" not in served(fleet).targets
    # ... and any other change of the targets role (another board's floor; anything else it signs in custom).
    set_floor(OTHER, "3.0", fleet.keys, fleet.conn)
    resign_targets(fleet.keys, fleet.conn, lambda t: t.unrecognized_fields["custom"].update({"note": "kept"}))
    assert floors(fleet) == {BOARD: "1.1.0", OTHER: "3.0"}

    # Moved down by the hospital, then removed: the other board's floor and the rest of custom stay.
    assert set_floor(BOARD, "1.0.0", fleet.keys, fleet.conn)["previous_floor"] == "1.1.0"
    set_floor(BOARD, None, fleet.keys, fleet.conn)
    assert floors(fleet) == {OTHER: "3.0"}
    set_floor(OTHER, None, fleet.keys, fleet.conn)
    assert served(fleet).unrecognized_fields["custom"] == {"note": "kept"}


def test_a_floor_that_changes_nothing_or_is_no_version_is_refused(fleet, tmp_path):
    set_floor(BOARD, "2026.12.1", fleet.keys, fleet.conn)
    version = served(fleet).version
    with pytest.raises(OtaCliError, match="the floor of wardsight-rpi5 is already 2026.12.1"):
        set_floor(BOARD, "2026.12.1", fleet.keys, fleet.conn)
    with pytest.raises(OtaCliError, match="wardsight-rpi4 has no floor"):
        set_floor(OTHER, None, fleet.keys, fleet.conn)
    with pytest.raises(OtaCliError, match=r"carries build metadata '\+7'"):
        set_floor(BOARD, "2027.1+7", fleet.keys, fleet.conn)
    for bad in ("next", "1.2.3.4.5"):
        with pytest.raises(OtaCliError, match="is not"):
            set_floor(BOARD, bad, fleet.keys, fleet.conn)
    with pytest.raises(OtaCliError, match="is not a RAUC compatible"):
        set_floor("Pi 5", "1.0", fleet.keys, fleet.conn)
    assert served(fleet).version == version and floors(fleet) == {BOARD: "2026.12.1"}, "nothing signed"


def test_a_server_cannot_make_the_hospital_sign_the_floor_away(fleet, tmp_path):
    publish(fleet, tmp_path, "1.0.0")
    before = (fleet.metadata / "targets.json").read_bytes()  # signed by the hospital, without a floor
    set_floor(BOARD, "1.1.0", fleet.keys, fleet.conn)
    (fleet.metadata / "targets.json").write_bytes(before)  # the server serves the older metadata again
    for sign in (lambda: publish(fleet, tmp_path / "next", "1.2.0"),
                 lambda: withdraw_bundle(BOARD, "1.0.0", fleet.keys, fleet.conn),
                 lambda: set_floor(OTHER, "1.0", fleet.keys, fleet.conn)):  # fmt: skip
        with pytest.raises(OtaCliError, match="these keys last signed version"):
            sign()


def test_publishing_below_the_floor_warns_but_publishes(fleet, tmp_path):
    set_floor(BOARD, "2.0.0", fleet.keys, fleet.conn)
    warned: list[str] = []
    summary = publish(fleet, tmp_path, "1.5.0", warn=warned.append)
    expected = ("wardsight-rpi5 1.5.0 is below the signed floor 2.0.0: devices will refuse it (rollbacks too) "
                "until the floor is lowered ('wardsight ota system-floor')")  # fmt: skip
    assert warned == [expected] and summary["warning"] == expected
    assert f"system/{BOARD}/1.5.0.raucb" in served(fleet).targets and floors(fleet) == {BOARD: "2.0.0"}
    quiet: list[str] = []
    for version, compatible in (("2.0.0", BOARD), ("2.1.0", BOARD), ("1.0.0", OTHER)):
        assert "warning" not in publish(fleet, tmp_path / version / compatible, version, compatible, warn=quiet.append)
    assert quiet == []


def test_a_malformed_floor_warns_at_publish_and_is_repaired_by_signing_a_readable_one(fleet, tmp_path):
    resign_targets(fleet.keys, fleet.conn, lambda t: t.unrecognized_fields.update({"custom": {"system_floors": 7}}))
    summary = publish(fleet, tmp_path, "1.0.0")
    assert summary["warning"] == ("the targets metadata's system floors are unreadable: the targets metadata's "
                                  "system_floors is not an object: devices refuse every system update until "
                                  "'wardsight ota system-floor' signs a readable one")  # fmt: skip
    repaired = set_floor(BOARD, "1.0.0", fleet.keys, fleet.conn)
    assert repaired["repaired"] and repaired["previous_floor"] is None and floors(fleet) == {BOARD: "1.0.0"}


def test_the_system_floor_command(fleet, tmp_path):
    env = {"WARDSIGHT_API_TOKEN": fleet.conn.api_token}
    server = ["--keys", str(fleet.keys), "--server", fleet.url, "--insecure-http"]
    result = CliRunner().invoke(ota, ["system-floor", BOARD, "2026.12.1", *server], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["floor"] == "2026.12.1" and floors(fleet) == {BOARD: "2026.12.1"}

    made = make_bundle(tmp_path / "old.raucb", compatible=BOARD, version="2026.6.1", payload=b"old rootfs" * 512)
    args = ["publish-system", str(made), *server, "--rauc", str(tmp_path / "no-rauc"), "--compatible", BOARD,
            "--version", "2026.6.1"]  # fmt: skip
    result = CliRunner().invoke(ota, args, env=env)
    assert result.exit_code == 0, result.output
    assert "Warning: wardsight-rpi5 2026.6.1 is below the signed floor 2026.12.1" in result.stderr
    assert json.loads(result.stdout)["version"] == "2026.6.1"

    for wrong in ([BOARD], [BOARD, "2027.1", "--remove"]):
        result = CliRunner().invoke(ota, ["system-floor", *wrong, *server], env=env)
        assert result.exit_code == 2 and "give a VERSION, or --remove" in result.output
    result = CliRunner().invoke(ota, ["system-floor", BOARD, "--remove", *server], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["previous_floor"] == "2026.12.1"
    assert "custom" not in served(fleet).unrecognized_fields, "nothing left of it"
    assert "system-floor" in CliRunner().invoke(ota, ["--help"]).output
