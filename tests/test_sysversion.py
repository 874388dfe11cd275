"""System versions (wardsight/sysversion.py): semver's precedence, and the rule that they carry no "+build"."""

from __future__ import annotations

import itertools

import pytest

from wardsight.sysversion import RULE, ZEROS_RULE, refuse_ambiguous, version_key

# semver.org 2.0.0, item 11's example, then ours: dotted numbers of any length, a release after its pre-releases.
ASCENDING = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0-rc.2",
    "1.0.0-rc.10",
    "1.0.0",
    "1.0.1-1",
    "1.0.1-2",
    "1.0.1-10",
    "1.0.1-10.1",
    "1.0.1-a",
    "1.0.1",
    "1.2",
    "1.10",
    "2026.1.0",
    "2026.12.1",
    "2026.12.1.1",
]


def test_versions_follow_semver_precedence() -> None:
    assert sorted(reversed(ASCENDING), key=version_key) == ASCENDING
    assert sorted(ASCENDING, key=str) != ASCENDING, "not the strings' order"
    keys = [version_key(v) for v in ASCENDING]
    assert all(a < b for a, b in itertools.pairwise(keys)), "strictly ascending: no two are equal"


def test_pre_release_identifiers_compare_numerically_below_alphanumeric_and_shorter_first() -> None:
    assert version_key("1.0.0-rc.2") < version_key("1.0.0-rc.10")  # as strings, "rc.10" < "rc.2"
    assert version_key("1.0.0-2") < version_key("1.0.0-10")
    assert version_key("1.0.0-999") < version_key("1.0.0-a")  # numeric identifiers sort below alphanumeric ones
    assert version_key("1.0.0-rc") < version_key("1.0.0-rc.0") < version_key("1.0.0-rc.0.0")
    assert version_key("1.0.0-RC.1") < version_key("1.0.0-rc.1")  # ASCII: upper case first
    # one alphanumeric identifier compares in ASCII order, as semver (and RAUC) say: write rc.10, not rc10
    assert version_key("1.0.0-rc10") < version_key("1.0.0-rc2")
    assert version_key("1.0.0-rc-1") > version_key("1.0.0-rc")  # a hyphen belongs to the identifier


def test_what_stays_as_it_was() -> None:
    assert version_key("1.2") == version_key("1.2.0") == version_key("v1.2.0") == version_key("1.2.0.0")
    assert version_key("1.2.0-rc.1") == version_key("v1.2-rc.1")
    assert version_key("1.2.0+build7") == version_key("1.2.0"), "build metadata has no precedence"
    assert version_key("0") < version_key("0.0.1")
    for bad in ("next", "", "1.x", "-rc.1", "1.0.0-", "1.0.0+", "1..0", "v", "1.0.0 "):
        with pytest.raises(ValueError, match="is not a dotted numeric version"):
            version_key(bad)


def test_system_versions_carry_no_build_metadata() -> None:
    refuse_ambiguous("2026.12.1-rc.1")
    with pytest.raises(ValueError) as caught:
        refuse_ambiguous("2026.12.1+20261208T101500Z")
    message = str(caught.value)
    assert RULE in message and "'+20261208T101500Z'" in message and "as '2026.12.1'" in message


@pytest.mark.parametrize("version", ["1.02.0", "01.2", "2026.12.1-rc.01", "v1.0.00"])
def test_no_number_of_a_system_version_starts_with_zero(version: str) -> None:
    with pytest.raises(ValueError, match="starts with 0") as refused:
        refuse_ambiguous(version)
    assert ZEROS_RULE in str(refused.value)
    for fine in ("1.0.0", "2026.12.1-rc.0", "1.2.0-rc.1a", "1.0.0-0a", "10.20.30"):
        refuse_ambiguous(fine)  # (0 alone, and an alphanumeric identifier, may start with 0)
