"""System versions (a RAUC bundle's ``[update] version``, the image's ``/etc/wardsight/system-release``): their order
and the one rule on their form, for the device's updater and the tools that publish bundles alike.

The order is semver's precedence (semver.org 2.0.0, item 11), with dotted numbers of any length: ``2026.12.1``,
``1.4.0``; trailing zero parts do not count (``1.2 == 1.2.0``) and a leading ``v`` is ignored. A pre-release
(``-rc.2``, ``-beta``) comes before its release; two pre-releases compare identifier by identifier (split on
``.``): numeric ones numerically, below alphanumeric ones, which compare in ASCII order; when all the shared ones are
equal, the shorter list comes first (``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta.2 <
1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0``; ``-rc2 < -rc10`` only as ``-rc.2 < -rc.10``: ``rc10`` is one alphanumeric
identifier, ASCII-before ``rc2``).

The rules: a system version carries no ``+build`` metadata, and none of its numbers has a leading zero. RAUC
ignores build metadata when it compares versions and semver gives it no precedence; ``1.02`` orders as ``1.2``
(semver forbids the spelling). Either way two bundles would be "the same version" with different contents and
different TUF target paths (the version is part of ``wardsight.wire.SYSTEM_TARGET_PATH``, which has no ``+``).
:func:`refuse_ambiguous` says so where a bundle is published or a floor is set; :func:`version_key` still
accepts both spellings, so a device whose image predates the rules can compare its own version.
"""

from __future__ import annotations

import re

VERSION = re.compile(r"^v?([0-9]+(?:\.[0-9]+)*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")  # ASCII digits only
RULE = "system versions carry no '+build' metadata"
ZEROS_RULE = "no number of a system version starts with 0 (semver)"

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


def refuse_ambiguous(version: str) -> None:
    """ValueError naming :data:`RULE` if ``version`` ends in ``+build`` metadata, or :data:`ZEROS_RULE` if one of its
    numbers (of the dotted core or a numeric pre-release identifier) has a leading zero."""
    match = VERSION.match(version.partition("+")[0])
    if match is not None:
        numbers = match.group(1).split(".") + [p for p in (match.group(2) or "").split(".") if p.isdigit()]
        padded = [n for n in numbers if len(n) > 1 and n.startswith("0")]
        if padded:
            raise ValueError(
                f"the version '{version}' has the number '{padded[0]}', and {ZEROS_RULE} (it orders as "
                f"'{int(padded[0])}': two bundles would be the same version under different names)"
            )
    core, plus, build = version.partition("+")
    if plus:
        raise ValueError(
            f"the version '{version}' carries build metadata '+{build}', and {RULE} (RAUC compares versions "
            f"without it and the update's target path cannot hold it): drop it and build the image and bundle "
            f"as '{core}'"
        )
