"""System versions (a RAUC bundle's ``[update] version``, the image's ``/etc/wardsight/system-release``): their order
and the one rule on their form, for the device's updater and the tools that publish bundles alike.

The order is semver's precedence (semver.org 2.0.0, item 11), with dotted numbers of any length: ``2026.12.1``,
``1.4.0``; trailing zero parts do not count (``1.2 == 1.2.0``) and a leading ``v`` is ignored. A pre-release
(``-rc.2``, ``-beta``) comes before its release; two pre-releases compare identifier by identifier (split on
``.``): numeric ones numerically, below alphanumeric ones, which compare in ASCII order; when all the shared ones are
equal, the shorter list comes first (``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta.2 <
1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0``; ``-rc2 < -rc10`` only as ``-rc.2 < -rc.10``: ``rc10`` is one alphanumeric
identifier, ASCII-before ``rc2``).

The rule: a system version carries no ``+build`` metadata. RAUC ignores it when it compares versions, semver gives
it no precedence (two bundles would be "the same version" with different contents), and the version is part of the
update's TUF target path (``wardsight.wire.SYSTEM_TARGET_PATH``), which has no ``+``. :func:`refuse_build_metadata`
says so where a bundle is published; :func:`version_key` still ignores such a suffix, so a device whose image
predates the rule can compare its own version.
"""

from __future__ import annotations

import re

VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")
RULE = "system versions carry no '+build' metadata"

Identifier = tuple[int, int, str]  # (0, n, "") numeric, (1, 0, text) alphanumeric: numeric ones sort first
VersionKey = tuple[tuple[int, ...], int, tuple[Identifier, ...]]


def _identifier(part: str) -> Identifier:
    return (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)


def version_key(version: str) -> VersionKey:
    """The sort key of a system version (ValueError if it is not one): equal keys, the same version."""
    match = VERSION.match(version)
    if match is None:
        raise ValueError(f"'{version}' is not a dotted numeric version")
    numbers = tuple(int(p) for p in match.group(1).split("."))
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers = numbers[:-1]  # 1.2 == 1.2.0
    pre = match.group(2)
    if pre is None:
        return numbers, 1, ()  # a release: after every pre-release of it
    return numbers, 0, tuple(_identifier(p) for p in pre.split("."))


def refuse_build_metadata(version: str) -> None:
    """ValueError naming :data:`RULE` if ``version`` ends in ``+build`` metadata."""
    core, plus, build = version.partition("+")
    if plus:
        raise ValueError(
            f"the version '{version}' carries build metadata '+{build}', and {RULE} (RAUC compares versions "
            f"without it and the update's target path cannot hold it): drop it and build the image and bundle "
            f"as '{core}'"
        )
