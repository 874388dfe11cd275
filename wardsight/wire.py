"""The wire contract between a device and the fleet server.

Both sides import this module; it imports neither. It defines what may cross the wire (event and
enrollment schemas) and how it is signed and verified: compact JWS with the device's Ed25519 key
(PyJWT, ``EdDSA``). The schemas are closed (unknown fields are rejected) and hold only identifiers,
enumerations, numbers and short strings, so no field can carry image bytes. A payload over
:data:`MAX_JWS_BYTES` is refused before it is parsed.

Every device request after enrollment carries a :class:`Proof` bound to the full request target: method
(``htm``), path (``htu``) and query string (``htq``, in the form :func:`canonical_query` gives), plus the body,
the credential and a server nonce. See :class:`Proof` for the canonical query form and what an agent from
before ``htq`` can still do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

SCHEMA_VERSION = 1
_Model = TypeVar("_Model", bound=BaseModel)
MAX_JWS_BYTES = 8 * 1024
EVENT_TYP = "wardsight-event+jws"
PROOF_TYP = "wardsight-proof+jws"
PROOF_HEADER = "WardSight-Proof"  # the proof JWS
NONCE_HEADER = "WardSight-Nonce"  # a fresh server nonce, on every device-API response
TIME_HEADER = "WardSight-Time"  # the server's clock, on every device-API response
RENEW_HEADER = "WardSight-Renew"  # "1" when the credential used is past two thirds of its life
AUTH_SCHEME = "WardSight"  # Authorization: WardSight <credential>
ENROLL_TYP = "wardsight-enroll+jws"
ENROLL_AUDIENCE = "wardsight:enroll"

# ---- the device API's paths (the server routes them, the device calls them) --------------------------------
ENROLL_PATH = "/api/v1/enroll"
DEVICE_PREFIX = "/api/v1/device/"
NONCE_PATH = DEVICE_PREFIX + "nonce"
CREDENTIAL_PATH = DEVICE_PREFIX + "credential"
EVENTS_PATH = DEVICE_PREFIX + "events"
HEARTBEAT_PATH = DEVICE_PREFIX + "heartbeat"
JOBS_PATH = DEVICE_PREFIX + "jobs"  # GET: the long poll; POST JOBS_PATH/<job id>: a job's result
ROTATE_PATH = DEVICE_PREFIX + "rotate-key"
TUF_METADATA_PATH = "/tuf/metadata/"  # + <role>.json / <version>.<role>.json
TUF_TARGETS_PATH = "/tuf/targets/"  # + target_path(name, version)

# ---- OTA target paths -----------------------------------------------------------------------------------
MODEL_NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"  # wardsight.modelpkg.Manifest.name
MODEL_VERSION_PATTERN = r"[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}"  # wardsight.modelpkg.VERSION
TARGET_PATH = re.compile(rf"^models/({MODEL_NAME_PATTERN})/({MODEL_VERSION_PATTERN})\.wsm$")


def target_path(name: str, version: str) -> str:
    """The TUF target path of a model package: ``models/<name>/<version>.wsm`` (ValueError if not one)."""
    path = f"models/{name}/{version}.wsm"
    if not TARGET_PATH.match(path):
        raise ValueError(f"'{name}' {version!r} is not a model name and dotted numeric version")
    return path


# The target of an offer to run the model built into the agent (``accelerators.catalog``, e.g. ``lightning-fp16-1``,
# the version every device starts on): there is no package, so nothing to fetch over TUF. The device switches
# back to its factory model. An agent from before this marker looks it up as a TUF target, finds none and
# reports the offer ``failed`` (``target_unknown``) after its usual attempts: refused, never crashed.
BUILTIN_TARGET = "builtin"


def is_package_version(version: str) -> bool:
    """Whether ``version`` can name a model package (dotted numbers); any other version is a built-in model's."""
    return re.fullmatch(MODEL_VERSION_PATTERN, version) is not None


def offer_target(name: str, version: str) -> str:
    """What an offer of ``name`` ``version`` carries as its target: the package's TUF target path, or
    :data:`BUILTIN_TARGET` for a version that is not a package's (the agent's built-in model)."""
    return target_path(name, version) if is_package_version(version) else BUILTIN_TARGET


# A system update is a RAUC bundle, the TUF target ``system/<RAUC compatible>/<version>.raucb``; its signed custom
# metadata is {kind: "system", compatible, version, sbom_sha256?}. Its offer has ``kind="system"`` and the
# compatible as ``model``; agents that take them poll ``UPDATE_PATH?system=1`` (``SYSTEM_POLL_QUERY``) and
# no other poll is ever offered one (an older agent never sees such an offer).
SYSTEM_COMPATIBLE_PATTERN = r"[a-z0-9][a-z0-9.-]{0,63}"  # firmware.system.raucconf's, without "+"
SYSTEM_VERSION_PATTERN = r"v?[0-9]{1,9}(?:\.[0-9]{1,9}){0,3}(?:-[0-9A-Za-z.-]{1,16})?"  # 2026.12.1, 1.4.0-rc1 (no +)
SYSTEM_TARGET_PATH = re.compile(rf"^system/({SYSTEM_COMPATIBLE_PATTERN})/({SYSTEM_VERSION_PATTERN})\.raucb$")
SYSTEM_POLL_QUERY = "system=1"
UpdateKind = Literal["model", "system"]


def system_target_path(compatible: str, version: str) -> str:
    """The TUF target path of a RAUC bundle: ``system/<compatible>/<version>.raucb`` (ValueError if not one)."""
    path = f"system/{compatible}/{version}.raucb"
    if not SYSTEM_TARGET_PATH.match(path) or len(version) > 32:
        raise ValueError(f"'{compatible}' {version!r} is not a RAUC compatible and a dotted numeric version")
    return path


IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
DataKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Number = StrictInt | StrictFloat | StrictBool
App = Literal["occupancy", "fall", "bed_exit", "hand_hygiene", "mask", "system"]
Severity = Literal["info", "warning", "critical"]


class WireError(WardSightError):
    """Something that crossed the wire is not acceptable."""


class MalformedError(WireError):
    """Not a well-formed message of this contract (bad JWS, bad JSON, schema violation, too large)."""


class SignatureError(WireError):
    """The signature does not verify with the key it must verify with."""


class UnknownSignerError(WireError):
    """The key id names no key the verifier trusts."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Event(_Closed):
    """One app event. Metadata only: identifiers, a clock reading, and a few explaining numbers."""

    v: Literal[1] = 1
    event_id: Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    device_id: Identifier
    room: Identifier
    app: App
    type: Identifier
    severity: Severity = "info"
    time: Annotated[float, Field(ge=0, le=1e11)]  # seconds since the Unix epoch, device clock
    track_id: Annotated[int, Field(ge=0, lt=2**31)] | None = None
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    data: Annotated[dict[DataKey, Number], Field(max_length=16)] = Field(default_factory=dict)


def is_identifier(text: str) -> bool:
    """Whether ``text`` is a valid device, room or type identifier."""
    return re.match(IDENTIFIER_PATTERN, text) is not None


def new_event_id() -> str:
    return str(uuid.uuid4())


class EnrollmentRequest(_Closed):
    """Signed by the device's new key; the signature is the proof that the device holds it."""

    aud: Literal["wardsight:enroll"] = "wardsight:enroll"
    token: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
    public_key: Annotated[str, Field(min_length=43, max_length=43)]  # raw Ed25519 key, base64url
    name: Identifier
    # Where the installer says this device is; enrollment fails if the token is scoped elsewhere.
    room: Identifier | None = None


DeviceStatus = Literal["pending", "active", "quarantined", "revoked"]


class EnrollmentResponse(_Closed):
    device_id: Identifier
    room: Identifier
    site: Identifier | None = None
    ward: Identifier | None = None
    status: DeviceStatus = "active"
    server_time: Annotated[float, Field(ge=0, le=1e11)] | None = None
    job_key: Annotated[str, Field(min_length=43, max_length=43)] | None = None  # verifies maintenance jobs


class CredentialGrant(_Closed):
    """A short-lived device credential (opaque to the device) and how long it lasts by the server's clock."""

    credential: Annotated[str, Field(min_length=16, max_length=4096)]
    expires_in: Annotated[float, Field(gt=0, le=366 * 24 * 3600)]
    server_time: Annotated[float, Field(ge=0, le=1e11)]


MAX_PROOF_QUERY = 2048  # characters of a canonical query string a proof can bind (:func:`canonical_query`)


def canonical_query(query: str | Iterable[tuple[str, str]]) -> str:
    """The query string as a proof binds it (``htq``): the decoded parameters, re-encoded one way.

    ``query`` is a raw query string (without ``?``), decoded as aiohttp/yarl decode ``request.query``
    (``urllib.parse.parse_qsl(keep_blank_values=True)``: split on ``&``, empty pieces dropped, name and value
    split at the first ``=``, ``+`` is a space, percent-escapes are UTF-8), or the decoded (name, value) pairs
    themselves (the server passes ``request.query.items()``). Each name and value is percent-encoded as
    UTF-8 with only ``A-Z a-z 0-9 - . _ ~`` left as they are (uppercase hex), joined as ``name=value`` with
    ``&``, **in the order sent** (not sorted: the order of a repeated name's values is what a handler's
    ``query.get`` sees, so it is bound too). ``""`` for no parameters.

    So the proof binds exactly the parameters a handler reads, and spellings that decode alike (``%2f`` and
    ``%2F`` and ``/``; ``+`` and ``%20``; ``a`` and ``a=``) are one form, whatever a client library or a proxy
    chose to send; any change to a name, a value, their number or their order is a different form.
    """
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    return "&".join(f"{_query_part(name)}={_query_part(value)}" for name, value in pairs)


def _query_part(text: str) -> str:
    return urllib.parse.quote(text, safe="", encoding="utf-8", errors="surrogatepass")


ProofQuery = Annotated[str, Field(min_length=1, max_length=MAX_PROOF_QUERY, pattern=r"^[A-Za-z0-9_.~%=&-]+$")]


class Proof(_Closed):
    """A per-request proof of key possession (DPoP-style), bound to the full request target (method, path
    and query string), the body, the credential and a server nonce.

    Freshness comes from ``nonce``, which only the server issues and which expires by the server's clock;
    ``iat`` is the device's clock and informational only, so a device whose clock is years off still works.

    ``htu`` is the path alone (as DPoP's ``htu``, without the query); ``htq`` is the query string in the form
    :func:`canonical_query` gives, absent when the request has none (never ``""``). The server compares
    ``htq`` (absent: ``""``) with the canonical form of the query it received, so a parameter cannot be
    added, removed, changed or reordered in flight. Compatibility: an agent from before ``htq`` never sends
    it, so its proofs still verify on requests without a query (nothing to bind) and are refused on requests
    that carry one (its jobs long poll, ``?wait=..&update=..``, until the agent is updated). A server from
    before ``htq`` refuses every proof that has it (closed schema), so the server is updated first.
    """

    jti: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
    htm: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    htu: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]{0,255}$")]
    htq: ProofQuery | None = None  # the canonical query string; absent when there is none
    bh: Annotated[str, Field(min_length=43, max_length=43)]  # base64url sha256 of the exact body bytes
    nonce: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
    ath: Annotated[str, Field(min_length=43, max_length=43)] | None = None  # base64url sha256 of the credential
    iat: Annotated[float, Field(ge=0, le=1e11)]


Version = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$")]


UpdateCapability = Literal[
    "ready",  # an OTA root of trust and model slots for the backend it runs
    "no_ota_root",  # enrolled without the fleet's OTA root (the bundle carried none): it cannot verify packages
    "not_supported",  # its model runs where slots do not apply (the AI Camera's sensor)
]


def data_key(text: str) -> str:
    """A stage or model name as a wire data key (lowercase letters, digits, underscores): ``Health.models`` names
    ``movenet-multipose`` as ``movenet_multipose``."""
    key = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return (key if key[:1].isalpha() else "k_" + key)[:32] or "unknown"


PrivacyMode = Literal[
    "sensor-only",  # the AI Camera runs the network in the sensor: no image reaches the host, only metadata
    "blackout-at-capture",  # frames reach the agent; privacy regions are zeroed before any other code sees them
]


class SystemVersion(_Closed):
    """The system the device booted: its slot (RAUC's bootname, the kernel's ``rauc.slot=``; None outside an A/B
    image), and from the image's ``/etc/wardsight/system-release`` its version (its RAUC bundle's) and SBOM's sha256;
    RAUC's ``compatible`` (``/etc/rauc/system.conf``: which bundles fit this board)."""

    slot: Identifier | None = None
    version: Version
    sbom_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    compatible: Annotated[str, Field(pattern=rf"^{SYSTEM_COMPATIBLE_PATTERN}$")] | None = None  # RAUC's, its board


class Health(_Closed):
    """A device heartbeat: how the agent and its hardware are doing. Numbers and identifiers only."""

    v: Literal[1] = 1
    device_id: Identifier
    sent_at: Annotated[float, Field(ge=0, le=1e11)]  # device clock; the server compares it with its own
    uptime_s: Annotated[float, Field(ge=0, le=1e9)]
    agent_version: Version
    accelerator: Identifier  # the backend actually running (e.g. "cpu" after a fallback)
    accelerator_configured: Identifier | None = None  # what the config asked for, when it differs
    cpu_temp_c: Annotated[float, Field(ge=-60, le=200)] | None = None
    accelerator_temp_c: Annotated[float, Field(ge=-60, le=200)] | None = None
    mem_used_mb: Annotated[float, Field(ge=0, le=1e7)] | None = None
    mem_total_mb: Annotated[float, Field(ge=0, le=1e7)] | None = None
    fps: Annotated[float, Field(ge=0, le=1000)] | None = None  # frames analysed per second, over the last minute
    frames_processed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    frames_dropped: Annotated[int, Field(ge=0, lt=2**63)] = 0
    outbox_pending: Annotated[int, Field(ge=0, lt=2**31)] = 0
    stage_ms: Annotated[dict[DataKey, Annotated[float, Field(ge=0, le=1e6)]], Field(max_length=16)] = Field(
        default_factory=dict
    )
    models: Annotated[dict[DataKey, Version], Field(max_length=8)] = Field(default_factory=dict)
    warnings: Annotated[list[Identifier], Field(max_length=16)] = Field(default_factory=list)
    # Whether this device can take model updates over the air (None: an agent that does not say).
    updates: UpdateCapability | None = None
    # How this device keeps images private (None: an older agent that does not say).
    privacy_mode: PrivacyMode | None = None
    # The system image it runs (None: an older agent, or an image without a release file).
    system: SystemVersion | None = None


UpdateState = Literal[
    "downloading",
    "downloaded",
    "installed",
    "activated",  # on trial: ``done`` of ``total`` health-check frames
    "healthy",
    "failed",
    "rolled_back",
    "deferred",
    "rejected",  # the device refused the package before running it (self-test, no build for its backend, ...)
    "rebooting",  # a system update: installed in the inactive slot, booting it once (between installed and activated)
]
UPDATE_PATH = DEVICE_PREFIX + "update"  # GET: the device's offer (204: none); POST: an UpdateReport
# The jobs long poll (``GET /api/v1/device/jobs?wait=25&update=<key>``) also says which update offer waits for
# the device (``{"jobs": [...], "update": "<rollout id>/<version>" | null}``) and answers at once when that
# differs from the ``update`` key the device last saw, so an offer reaches an idle device within seconds.
UPDATE_HINT_FIELD = "update"


def update_hint(offer: UpdateOffer | None) -> str | None:
    """The key naming an offer in the jobs poll (changes when another rollout or version is offered)."""
    return None if offer is None else f"{offer.rollout_id}/{offer.version}"


class UpdateOffer(_Closed):
    """What the server wants a device to run (``GET /api/v1/device/update``); the model file itself comes via TUF."""

    rollout_id: Identifier
    model: Identifier
    version: Version
    # The TUF target path, or BUILTIN_TARGET: back to the model built into the agent (nothing to fetch).
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,255}$")]
    # Maintenance window by the server's clock: download now, switch only inside [start, end).
    window_start: Annotated[float, Field(ge=0, le=1e11)] | None = None
    window_end: Annotated[float, Field(ge=0, le=1e11)] | None = None
    # A system update (``model`` is then the RAUC compatible); a rollback may go to an older version. A model
    # offer is sent without either field, so an older agent reads every offer it is given.
    kind: UpdateKind = "model"
    rollback: StrictBool = False


class UpdateReport(_Closed):
    """A device's progress on an offer (``POST /api/v1/device/update``)."""

    rollout_id: Identifier
    model: Identifier
    version: Version
    state: UpdateState
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None  # e.g. self_test_failed
    progress: Annotated[float, Field(ge=0, le=1)] | None = None
    # Counts behind ``progress`` where they mean something to a person (health-check frames on trial).
    done: Annotated[int, Field(ge=0, le=10**12)] | None = None
    total: Annotated[int, Field(ge=0, le=10**12)] | None = None
    detail: Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None  # e.g. RAUC's words


JOB_TYP = "wardsight-job+jws"
MAX_JOB_BYTES = 64 * 1024
JobKind = Literal[
    "restart_agent",
    "reboot",
    "push_config",
    "collect_diagnostics",
    "self_test",
    "rotate_key",
    "set_log_level",
    "factory_reset",
]
JobParam = StrictInt | StrictFloat | StrictBool | Annotated[str, Field(max_length=256)]


Actor = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class PrivacyApproval(_Closed):
    """The two-person approval of a privacy-reducing ``push_config`` (one that removes, shrinks or moves a privacy
    region or changes the camera source): the admin who asked for it and the other admin who approved it, and when
    (server time). It travels inside the signed job, so only the server can attach it; the device applies such a
    change only when it is there, naming two different people (``wardsight.privacy_changes``)."""

    approved_by: Annotated[tuple[Actor, ...], Field(min_length=2, max_length=4)]
    at: Annotated[float, Field(ge=0, le=1e11)]


class Job(_Closed):
    """A maintenance job for one device, signed by the server's job key; runs at most once, before it expires.

    ``issued_at`` and ``expires_at`` are server time: the device judges expiry by the server's clock as it
    learned it (``WardSight-Time``), not by its own. ``privacy_approval`` is present only on an approved
    privacy-reducing ``push_config`` (and left out of the signed payload otherwise, so agents from before it still
    read every other job).
    """

    job_id: Annotated[str, Field(pattern=r"^job-[0-9a-f]{16,32}$")]
    device_id: Identifier
    kind: JobKind
    params: Annotated[dict[DataKey, JobParam], Field(max_length=16)] = Field(default_factory=dict)
    config: Annotated[str, Field(max_length=32 * 1024)] | None = None  # push_config: the device.toml text
    issued_at: Annotated[float, Field(ge=0, le=1e11)]
    expires_at: Annotated[float, Field(ge=0, le=1e11)]
    privacy_approval: PrivacyApproval | None = None


JobState = Literal["received", "running", "succeeded", "failed", "refused"]


class JobReport(_Closed):
    """A device's progress or result for a job (numbers and identifiers; diagnostics go in ``output``)."""

    job_id: Annotated[str, Field(pattern=r"^job-[0-9a-f]{16,32}$")]
    state: JobState
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None
    progress: Annotated[float, Field(ge=0, le=1)] | None = None
    # collect_diagnostics: printable text only (checked on the device and again on the server), capped.
    output: Annotated[str, Field(max_length=256 * 1024)] | None = None


def sign_job(job: Job, key: Ed25519PrivateKey) -> str:
    payload = job.model_dump(mode="json")
    if payload["privacy_approval"] is None:
        del payload["privacy_approval"]  # an agent from before approvals refuses unknown fields
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"typ": JOB_TYP})


def has_privacy_approval(job: Job) -> bool:
    """Whether the (verified) job carries a two-person approval: at least two different people named."""
    approval = job.privacy_approval
    return approval is not None and len(set(approval.approved_by)) >= 2


def verify_job(token: str, server_key: Ed25519PublicKey) -> Job:
    """Check a job's signature (the server's job key) and shape; the device then checks expiry and replay."""
    _header(token, JOB_TYP, MAX_JOB_BYTES)
    return _validated(Job, _verified_payload(token, server_key), "job")


# ---- key rotation: the device proves it holds its new key (``POST ROTATE_PATH``) ----------------------------

ROTATE_TYP = "wardsight-rotate+jws"


class RotationProof(_Closed):
    """Signed by the device's new key: proves it holds it, for this device, job and request (the nonce).

    It travels as the ``possession`` field of the rotation request, next to the ``job_id`` and ``public_key``
    it must repeat; the server also checks ``nonce`` is the one the request's own proof carries.
    """

    device_id: Identifier
    job_id: str
    public_key: str
    nonce: str


def sign_rotation_proof(new_key: Ed25519PrivateKey, device_id: str, job_id: str, nonce: str) -> str:
    """Proof that the device holds ``new_key``, bound to the job and to the nonce of the rotation request."""
    claims = {
        "device_id": device_id,
        "job_id": job_id,
        "public_key": encode_public_key(new_key.public_key()),
        "nonce": nonce,
    }
    return jwt.encode(claims, new_key, algorithm="EdDSA", headers={"typ": ROTATE_TYP})


def verify_rotation_proof(token: str, new_key: Ed25519PublicKey) -> RotationProof:
    """Check a rotation proof's signature (by ``new_key``) and shape; the caller checks what it is bound to.

    Raises (messages name the request's ``possession`` field):
        MalformedError: not a compact EdDSA JWS of :data:`ROTATE_TYP`, or a schema violation (the server: 400).
        SignatureError: not signed by ``new_key`` (the server: 401).
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise MalformedError("possession is not a compact JWS") from None
    if header.get("alg") != "EdDSA" or header.get("typ") != ROTATE_TYP:
        raise MalformedError(f"possession must have alg EdDSA and typ {ROTATE_TYP}")
    try:
        payload = jwt.decode(token, new_key, algorithms=["EdDSA"], options={"verify_exp": False, "verify_iat": False})
    except jwt.InvalidSignatureError:
        raise SignatureError("possession is not signed by the new key") from None
    except jwt.InvalidTokenError as exc:
        raise MalformedError(f"possession is not a valid JWS: {exc}") from None
    try:
        return RotationProof.model_validate(payload)
    except ValidationError as exc:
        raise MalformedError(f"possession {_field_problem(exc)}") from None


def _field_problem(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in err["loc"]) or "body"
    if err["type"] == "extra_forbidden":
        return f"unknown field '{where}'"
    if err["type"] == "missing":
        return f"missing field '{where}'"
    return f"{where}: {err['msg']}"


# ---- scene snapshots: the zone editor's privacy-safe view of a room ---------------------------------------

PREVIEW_HEADER = "WardSight-Preview"  # "1" on a device-API reply: the server wants scene snapshots now
SCENE_PATH = DEVICE_PREFIX + "scene"
PREVIEW_INTERVAL_SECONDS = 2.0
MAX_SCENE_BYTES = 16 * 1024  # a snapshot's JSON, at most (the server refuses larger bodies)
MAX_PEOPLE = 16
MAX_ZONES = 16
MAX_REGIONS = 16
MAX_POLYGON_POINTS = 64
MAX_FRAME_SIDE = 8192
KEYPOINT_COUNT = 17  # COCO order, as wardsight.keypoints

Pixel = Annotated[float, Field(ge=0, le=MAX_FRAME_SIDE)]
Score = Annotated[float, Field(ge=0, le=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Keypoint = tuple[Pixel, Pixel, Score]  # x, y in frame pixels; score 0..1
RelPoint = tuple[Fraction, Fraction]  # x, y as fractions of the frame's width and height
Polygon = Annotated[tuple[RelPoint, ...], Field(min_length=3, max_length=MAX_POLYGON_POINTS)]
ZoneKind = Literal["door", "dispenser", "bed", "floor", "room"]


class _StrictClosed(BaseModel):
    # strict: a number must be a JSON number (never a numeric string), a bool is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class SnapshotPerson(_StrictClosed):
    track_id: Annotated[int, Field(ge=0, lt=2**31)]
    score: Score
    box: tuple[Pixel, Pixel, Pixel, Pixel]  # x1, y1, x2, y2 in frame pixels
    keypoints: Annotated[tuple[Keypoint, ...], Field(min_length=KEYPOINT_COUNT, max_length=KEYPOINT_COUNT)]


class SnapshotZone(_StrictClosed):
    name: Identifier
    kind: ZoneKind
    polygon: Polygon


class SnapshotRegion(_StrictClosed):
    polygon: Polygon  # a privacy region (zeroed at capture); its free-text name stays on the device


class SceneSnapshot(_StrictClosed):
    """What the zone editor sees of a room: people as boxes and keypoints over the frame's geometry; no pixels.

    ``zones`` / ``privacy_regions`` None: not sent this time (the server keeps the ones it has); an empty
    tuple: the device has none.
    """

    v: Literal[1] = 1
    time: Annotated[float, Field(ge=0, le=1e11)]  # when the frame was seen, Unix seconds, device clock
    frame_width: Annotated[int, Field(ge=1, le=MAX_FRAME_SIDE)]
    frame_height: Annotated[int, Field(ge=1, le=MAX_FRAME_SIDE)]
    people: Annotated[tuple[SnapshotPerson, ...], Field(max_length=MAX_PEOPLE)] = ()
    zones: Annotated[tuple[SnapshotZone, ...], Field(max_length=MAX_ZONES)] | None = None
    privacy_regions: Annotated[tuple[SnapshotRegion, ...], Field(max_length=MAX_REGIONS)] | None = None

    @model_validator(mode="after")
    def _inside_the_frame(self) -> SceneSnapshot:
        w, h = self.frame_width, self.frame_height
        for person in self.people:
            x1, y1, x2, y2 = person.box
            if not (x1 <= x2 <= w and y1 <= y2 <= h):
                raise ValueError(f"track {person.track_id}: box outside the {w}x{h} frame or inverted")
            if any(x > w or y > h for x, y, _ in person.keypoints):
                raise ValueError(f"track {person.track_id}: keypoint outside the {w}x{h} frame")
        return self


# ---- keys -------------------------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write ``key`` as PKCS#8 PEM to a file created with mode 0600 (never widened later)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_file_atomically(path, pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise WardSightError(f"cannot load device key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise WardSightError(f"{path} is not an Ed25519 private key")
    return key


def encode_public_key(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise MalformedError("public_key is not a base64url Ed25519 key") from None
    if encode_public_key(key) != text:  # one key, one spelling: no aliases past the uniqueness check
        raise MalformedError("public_key is not in canonical unpadded base64url form")
    return key


def b64url_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def thumbprint(key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of an Ed25519 public key (base64url sha256 of its canonical JWK)."""
    jwk = '{"crv":"Ed25519","kty":"OKP","x":"' + encode_public_key(key) + '"}'
    return b64url_sha256(jwk.encode("ascii"))


# ---- signing and verification -----------------------------------------------------------------------


def sign_event(event: Event, key: Ed25519PrivateKey) -> str:
    headers = {"kid": event.device_id, "typ": EVENT_TYP}
    return jwt.encode(event.model_dump(mode="json"), key, algorithm="EdDSA", headers=headers)


def _header(token: str, typ: str, max_bytes: int = MAX_JWS_BYTES) -> dict[str, Any]:
    if len(token) > max_bytes:
        raise MalformedError(f"message larger than {max_bytes} bytes")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise MalformedError(f"not a compact JWS: {exc}") from None
    except UnicodeError:
        raise MalformedError("not a compact JWS: it is not ASCII") from None
    if header.get("alg") != "EdDSA" or header.get("typ") != typ:
        raise MalformedError(f"expected alg EdDSA and typ {typ}")
    return header


def _validated(model: type[_Model], payload: Any, what: str) -> _Model:
    """``payload`` as ``model``, or a MalformedError naming ``what`` and its first bad field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise MalformedError(f"{what} field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None


def _verified_payload(token: str, key: Ed25519PublicKey, audience: str | None = None) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=audience,
            # Devices may boot with a wrong clock; freshness is not judged from device time here.
            options={"verify_iat": False, "verify_nbf": False, "verify_exp": False},
        )
    except jwt.InvalidSignatureError:
        raise SignatureError("signature does not verify") from None
    except jwt.InvalidTokenError as exc:
        raise MalformedError(f"invalid JWS: {exc}") from None


def verify_event(token: str, resolve_key: Callable[[str], Ed25519PublicKey | None]) -> Event:
    """Verify a device-signed event.

    Raises:
        MalformedError: not a well-formed event JWS, or the payload breaks the schema.
        UnknownSignerError: ``resolve_key`` knows no key for the header's ``kid``.
        SignatureError: the signature does not verify with that key, or the payload names another device.
    """
    kid = _header(token, EVENT_TYP).get("kid")
    if not isinstance(kid, str) or not kid:
        raise MalformedError("JWS header has no kid")
    key = resolve_key(kid)
    if key is None:
        raise UnknownSignerError(f"unknown device '{kid[:64]}'")
    event = _validated(Event, _verified_payload(token, key), "event")
    if event.device_id != kid:
        raise SignatureError("event names a different device than its signer")
    return event


def sign_enrollment(request: EnrollmentRequest, key: Ed25519PrivateKey) -> str:
    return jwt.encode(request.model_dump(mode="json"), key, algorithm="EdDSA", headers={"typ": ENROLL_TYP})


def verify_enrollment(token: str) -> EnrollmentRequest:
    """Verify an enrollment request against the public key it carries (proof of possession).

    Raises:
        MalformedError: not a well-formed enrollment JWS or schema violation.
        SignatureError: not signed by the private half of the key it presents.
    """
    _header(token, ENROLL_TYP)
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise MalformedError(f"invalid JWS: {exc}") from None
    claimed = _validated(EnrollmentRequest, unverified, "enrollment")
    payload = _verified_payload(token, decode_public_key(claimed.public_key), audience=ENROLL_AUDIENCE)
    return EnrollmentRequest.model_validate(payload)


def sign_proof(
    key: Ed25519PrivateKey,
    device_id: str,
    *,
    method: str,
    path: str,
    body: bytes,
    nonce: str,
    credential: str | None,
    now: float,
    query: str | Iterable[tuple[str, str]] = "",
) -> str:
    """A proof for one request; a fresh random ``jti`` every call.

    ``path`` is the request's path and ``query`` its query string (raw, without ``?``, or decoded pairs):
    bound as :func:`canonical_query` gives it, so send that form, or one that decodes the same.
    """
    proof = Proof(
        jti=secrets.token_urlsafe(18),
        htm=method.upper(),  # validated by the model
        htu=path,
        htq=canonical_query(query) or None,
        bh=b64url_sha256(body),
        nonce=nonce,
        ath=b64url_sha256(credential.encode("ascii")) if credential is not None else None,
        iat=max(0.0, now),
    )
    headers = {"kid": device_id, "typ": PROOF_TYP}
    return jwt.encode(proof.model_dump(mode="json", exclude_none=True), key, algorithm="EdDSA", headers=headers)


def proof_signer(token: str) -> str:
    """The device id a proof claims to come from (unverified: look its key up, then :func:`verify_proof`)."""
    kid = _header(token, PROOF_TYP).get("kid")
    if not isinstance(kid, str) or not is_identifier(kid):
        raise MalformedError("proof header has no valid kid")
    return kid


def verify_proof(token: str, key: Ed25519PublicKey) -> Proof:
    """Check a proof's signature and shape; the caller checks what it is bound to (method, path, query, body,
    credential, nonce)."""
    _header(token, PROOF_TYP)
    return _validated(Proof, _verified_payload(token, key), "proof")


# ---- parsed once (the server's per-request path) ---------------------------------------------------------
#
# verify_event, proof_signer + verify_proof parse a token two or three times (PyJWT's header read, then its
# decode). These do the same checks on one parse: :func:`parse_signed` once, then :meth:`Signed.claims` with
# the key. Same verdicts; the first problem found may be worded differently.

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")


def _segment(segment: bytes, name: str) -> bytes:
    """A base64url segment decoded as strictly as PyJWT decodes it: its alphabet only, at most two ``=`` of
    padding and only to a multiple of four, and in canonical form (no stray bits)."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1 or not _B64URL.fullmatch(stripped):
        raise MalformedError(f"not a compact JWS: invalid {name} encoding")
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (ValueError, binascii.Error):
        raise MalformedError(f"not a compact JWS: invalid {name} encoding") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise MalformedError(f"not a compact JWS: invalid {name} encoding")
    return decoded


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"invalid JWS: invalid {what}: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedError(f"invalid JWS: the {what} is not a JSON object")
    return value


@dataclass(frozen=True)
class Signed:
    """A compact JWS parsed once by :func:`parse_signed`: its header checked, its signature not yet verified."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes
    _verified_by: list[Ed25519PublicKey] = field(default_factory=list, init=False, compare=False, repr=False)

    def verify(self, key: Ed25519PublicKey) -> None:
        """SignatureError unless the signature verifies with ``key`` (this very key object: a success is kept, so a
        server can verify off its event loop first and :meth:`claims` does not verify again)."""
        if any(known is key for known in self._verified_by):
            return
        try:
            key.verify(self.signature, self.signing_input)
        except InvalidSignature:
            raise SignatureError("signature does not verify") from None
        self._verified_by.append(key)

    def claims(self, key: Ed25519PublicKey) -> dict[str, Any]:
        """The payload once the signature verifies with ``key`` (:meth:`verify`), judged as :func:`_verified_payload`
        judges it (no audience; a device's clock is not judged). SignatureError or MalformedError."""
        self.verify(key)
        claims = _json_object(self.payload, "payload")
        if claims.get("aud"):
            raise MalformedError("invalid JWS: Invalid audience")
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise MalformedError(f"invalid JWS: claim '{name}' must be a string")
        return claims


def parse_signed(token: str, typ: str, max_bytes: int = MAX_JWS_BYTES) -> Signed:
    """``token`` parsed once with the checks :func:`_header` and PyJWT's decoding make: at most ``max_bytes``,
    three base64url segments, a JSON object header with alg EdDSA, ``typ`` and a string ``kid`` if any. A header
    with ``crit`` or ``b64`` is refused (no WardSight signer sets them; PyJWT refuses ``b64`` here too)."""
    if len(token) > max_bytes:
        raise MalformedError(f"message larger than {max_bytes} bytes")
    try:
        raw = token.encode("ascii")
    except UnicodeError:
        raise MalformedError("not a compact JWS: it is not ASCII") from None
    if raw.count(b".") != 2:
        raise MalformedError("not a compact JWS: Not enough segments")
    signing_input, _, signature = raw.rpartition(b".")
    header_part, _, payload_part = signing_input.partition(b".")
    header = _json_object(_segment(header_part, "header"), "header")
    payload = _segment(payload_part, "payload")
    if header.get("alg") != "EdDSA" or header.get("typ") != typ:
        raise MalformedError(f"expected alg EdDSA and typ {typ}")
    if "kid" in header and not isinstance(header["kid"], str):
        raise MalformedError("not a compact JWS: Key ID header parameter must be a string")
    if "crit" in header or "b64" in header:
        raise MalformedError("not a compact JWS: unsupported header parameter (crit, b64)")
    return Signed(header, signing_input, payload, _segment(signature, "signature"))


def parse_proof(token: str) -> Signed:
    """A proof parsed once, with its signer (``header["kid"]``) checked as :func:`proof_signer` checks it; then
    :func:`check_proof` with that device's key."""
    signed = parse_signed(token, PROOF_TYP)
    kid = signed.header.get("kid")
    if not isinstance(kid, str) or not is_identifier(kid):
        raise MalformedError("proof header has no valid kid")
    return signed


def check_proof(signed: Signed, key: Ed25519PublicKey) -> Proof:
    """What :func:`verify_proof` returns or raises, for a proof parsed by :func:`parse_proof`."""
    return _validated(Proof, signed.claims(key), "proof")


def check_event(token: str | Signed, resolve_key: Callable[[str], Ed25519PublicKey | None]) -> Event:
    """What :func:`verify_event` returns or raises, on one parse of ``token`` (or on it parsed with EVENT_TYP)."""
    signed = token if isinstance(token, Signed) else parse_signed(token, EVENT_TYP)
    kid = signed.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise MalformedError("JWS header has no kid")
    key = resolve_key(kid)
    if key is None:
        raise UnknownSignerError(f"unknown device '{kid[:64]}'")
    event = _validated(Event, signed.claims(key), "event")
    if event.device_id != kid:
        raise SignatureError("event names a different device than its signer")
    return event
