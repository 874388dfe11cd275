"""Privacy-reducing configuration jobs: which ``push_config`` batches need a second admin, what they change, who
may approve them, and which camera URLs the server refuses outright.

A ``push_config`` is **privacy-reducing** for a device when it removes, shrinks or moves one of the device's privacy
regions or changes its camera source (:mod:`wardsight.privacy_changes`, the rules the device applies too). The
server judges it against what it knows of the device's configuration (:func:`baseline`):

- the whole ``device.toml`` the device last reported it applied (a succeeded full ``push_config``), with the zone
  editor's edits it applied since replayed on its privacy regions; the source is known only from such a file;
- the privacy regions the device itself last reported (its live view's layout, in memory) when that is newer.

A zone editor's edit (``merge = "zones"``) names what it removes, so it is reducing exactly when it removes a region
that no region it adds contains. A whole file is reducing when a region known before is not contained in one of its
regions, or its source is another camera, **or when the server does not know the device's regions or source**
(fail safe: it cannot tell what the file keeps). A batch is reducing when its job is for any of its devices.

Such a batch needs an admin to create it and a *different* person, also an admin, to approve it (``POST
/api/v1/jobs/{batch_id}/approve``); people are told apart through API tokens (:func:`person_of`: a token acts for
whoever created it). Until then its jobs stay queued and no device sees them; the approval then travels inside each
signed job (``wire.PrivacyApproval``) and the device refuses the change without it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import tomllib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fleet.scene.store import Scenes
from fleet.store.connection import Connection, Database, json_text
from fleet.webhooks.ssrf import METADATA_NAMES, address_refusal, embedded_ipv4
from wardsight.device_config import DeviceConfig, LayoutEdit, SourceConfig
from wardsight.privacy_changes import (
    Region,
    region_reductions,
    regions_of,
    regions_summary,
    same_polygon,
    source_reductions,
    source_summary,
)

UNKNOWN_REGIONS = "the server does not know this device's current privacy regions"
UNKNOWN_SOURCE = "the server does not know this device's current camera source"
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


# ---- what the server knows of a device's configuration ----------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A device's privacy regions and camera source as far as the server knows them (None: unknown)."""

    regions: tuple[Region, ...] | None
    source: SourceConfig | None
    regions_from: str  # where the regions come from, for the audit log


def _parse_config(text: str) -> DeviceConfig | None:
    try:
        return DeviceConfig.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError, RecursionError):
        return None  # the schema changed since: as good as unknown


def _replay(regions: list[Region], edit_json: str) -> list[Region] | None:
    """The regions after a zone editor's edit the device applied (None when it does not fit what we know)."""
    try:
        edit = LayoutEdit.model_validate_json(edit_json)
    except ValueError:
        return None
    left = list(regions)
    for ref in edit.privacy_regions.remove:
        match = next((r for r in left if same_polygon(r.polygon, ref.polygon)), None)
        if match is None:
            return None
        left.remove(match)
    return left + [Region.of(s.name, s.polygon) for s in edit.privacy_regions.add]


def baseline(db: Database, scenes: Scenes | None, device_id: str) -> Baseline:
    """What the server knows of the device's privacy regions and source (see the module docstring)."""
    conn = db.conn
    full = conn.execute(
        "SELECT b.config, COALESCE(j.finished_at, j.updated_at) AS at, b.rowid FROM jobs j"  # noqa: S608 - our constants
        " JOIN job_batches b ON b.id = j.batch_id WHERE j.device_id = ? AND b.kind = 'push_config'"
        f" AND {json_text(db, 'b.params', 'merge')} IS NULL"
        " AND j.state = 'succeeded' AND b.config IS NOT NULL ORDER BY at DESC, b.rowid DESC LIMIT 1",
        [device_id],
    ).fetchone()
    regions: list[Region] | None = None
    source: SourceConfig | None = None
    known_at, regions_from = float("-inf"), "unknown"
    config = _parse_config(full[0]) if full is not None else None
    if config is not None:
        regions, source, known_at = regions_of(config), config.source, float(full[1])
        regions_from = "the configuration the device last applied"
        edits = conn.execute(
            "SELECT b.config, COALESCE(j.finished_at, j.updated_at) AS at FROM jobs j"  # noqa: S608 - our constants
            " JOIN job_batches b ON b.id = j.batch_id WHERE j.device_id = ? AND b.kind = 'push_config'"
            f" AND {json_text(db, 'b.params', 'merge')} = 'zones' AND j.state = 'succeeded'"
            " AND b.config IS NOT NULL"
            " AND (COALESCE(j.finished_at, j.updated_at) > ?"
            " OR (COALESCE(j.finished_at, j.updated_at) = ? AND b.rowid > ?)) ORDER BY at, b.rowid",
            [device_id, known_at, known_at, full[2]],
        ).fetchall()
        for text, at in edits:
            replayed = _replay(regions, text) if regions is not None else None
            regions, known_at = replayed, float(at)
            regions_from = "the configuration the device last applied and its zone edits since"
    layout = scenes.layout.get(device_id) if scenes is not None else None
    if layout is not None and layout.privacy_regions is not None and (layout.received_at or 0) > known_at:
        named = list(regions or ())
        reported = []
        for shape in layout.privacy_regions:
            polygon = shape["polygon"]
            same = next((r for r in named if same_polygon(r.polygon, polygon)), None)
            reported.append(Region.of(same.name if same is not None else None, polygon))
        regions, regions_from = reported, "the privacy regions the device last reported"
    return Baseline(tuple(regions) if regions is not None else None, source, regions_from)


# ---- one device's change -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What a push does to one device's privacy: why it reduces it (empty: it does not) and the audit summary."""

    reasons: tuple[str, ...]
    summary: dict[str, Any]


def classify_full(base: Baseline, pushed: DeviceConfig) -> Change:
    """A whole ``device.toml`` against what the server knows (unknown regions or source: reducing)."""
    after = regions_of(pushed)
    reasons = [UNKNOWN_REGIONS] if base.regions is None else region_reductions(base.regions, after)
    reasons += [UNKNOWN_SOURCE] if base.source is None else source_reductions(base.source, pushed.source)
    summary = {
        "privacy_reducing": bool(reasons),
        "reasons": reasons,
        "regions_known_from": base.regions_from,
        "regions_before": regions_summary(base.regions),
        "regions_after": regions_summary(after),
        "source_before": source_summary(base.source),
        "source_after": source_summary(pushed.source),
    }
    return Change(tuple(reasons), summary)


def classify_edit(base: Baseline, edit: LayoutEdit) -> Change:
    """A zone editor's edit: reducing when a region it removes is not contained in one it adds."""
    known = list(base.regions or ())
    removed = []
    for ref in edit.privacy_regions.remove:
        same = next((r for r in known if same_polygon(r.polygon, ref.polygon)), None)
        removed.append(Region.of(same.name if same is not None else None, ref.polygon))
    added = [Region.of(s.name, s.polygon) for s in edit.privacy_regions.add]
    reasons = region_reductions(removed, added)
    after: list[Region] | None = None
    if base.regions is not None:
        after = [r for r in base.regions if not any(same_polygon(r.polygon, x.polygon) for x in removed)] + added
    summary = {
        "privacy_reducing": bool(reasons),
        "reasons": reasons,
        "regions_known_from": base.regions_from,
        "regions_before": regions_summary(base.regions),
        "regions_removed": regions_summary(removed),
        "regions_added": regions_summary(added),
        "regions_after": regions_summary(after),
        "source_before": source_summary(base.source),
        "source_after": source_summary(base.source),  # a zones edit never touches the source
    }
    return Change(tuple(reasons), summary)


@dataclass(frozen=True)
class BatchPrivacy:
    """A push_config batch's privacy changes: whether any device's is reducing, and the changes grouped (devices
    with the same change share one entry, so a site-wide push stays short in the audit log)."""

    reducing: bool
    reasons: tuple[str, ...]  # the distinct reasons, in order
    changes: list[dict[str, Any]]

    def audit(self) -> dict[str, Any]:
        return {"privacy_reducing": self.reducing, "changes": self.changes}


def classify_batch(
    db: Database,
    scenes: Scenes | None,
    device_ids: Sequence[str],
    *,
    pushed: DeviceConfig | None,
    edit: LayoutEdit | None,
) -> BatchPrivacy:
    """Classify a ``push_config`` for every targeted device (``pushed``: a whole file; ``edit``: a zones edit)."""
    groups: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for device_id in device_ids:
        base = baseline(db, scenes, device_id)
        if edit is not None:
            change = classify_edit(base, edit)
        else:
            assert pushed is not None
            change = classify_full(base, pushed)
        key = json.dumps(change.summary, sort_keys=True)
        groups.setdefault(key, {"devices": [], **change.summary})["devices"].append(device_id)
        reasons += [r for r in change.reasons if r not in reasons]
    return BatchPrivacy(bool(reasons), tuple(reasons), list(groups.values()))


# ---- who approves ------------------------------------------------------------------------------------------------


def person_of(conn: Connection, actor: str) -> str:
    """The person behind an actor: an API token acts for whoever created it (followed through tokens made by
    tokens), so one admin cannot approve their own change with a token of theirs."""
    seen: set[str] = set()
    while actor.startswith("apitoken:") and actor not in seen and len(seen) < 16:
        seen.add(actor)
        row = conn.execute("SELECT created_by FROM api_tokens WHERE id = ?", [actor.split(":", 1)[1]]).fetchone()
        if row is None:
            break
        actor = str(row[0])
    return actor


# ---- camera URLs ---------------------------------------------------------------------------------------------------

_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


def _literal_address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The host as an address, if it is one: standard forms, and the decimal, octal and hex IPv4 forms that C
    resolvers accept (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``)."""
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.match(name):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def stream_url_problem(url: str) -> str | None:
    """Why the server refuses ``url`` as a camera stream, or None.

    Cameras live on the hospital's LAN, so private addresses (and host names, which the device resolves there) are
    fine; refused are the cloud metadata services, link-local, loopback and unspecified addresses, multicast,
    reserved and other non-routable special-purpose blocks, judged by class as webhooks are
    (:func:`fleet.webhooks.ssrf.address_refusal`, IPv4 carried in IPv6 forms included).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "source.url is not a valid URL"
    if parts.scheme.lower() not in STREAM_SCHEMES:
        return "source.url must be an rtsp://, rtsps://, http:// or https:// URL"
    if not host:
        return "source.url has no host"
    name = host.lower().rstrip(".")
    if name in METADATA_NAMES:
        return f"source.url's host {host} is a cloud metadata service"
    if name == "localhost" or name.endswith(".localhost"):
        return f"source.url's host {host} is the device itself (loopback)"
    address = _literal_address(name)
    if address is None:
        return None
    why = address_refusal(address, allow_insecure=True)
    carried = [address, *(inner for _, inner in embedded_ipv4(address))]
    if why is None and any(a.is_loopback or a.is_unspecified for a in carried):
        why = "a loopback or unspecified address"
    if why is not None:
        return f"source.url's host {host} is {why}; a camera stream must be on the hospital's network"
    return None
