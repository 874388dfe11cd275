import base64
import json
import re

import pytest
from pydantic import ValidationError

from wardsight import wire


def make_event(**over):
    fields = dict(
        event_id=wire.new_event_id(),
        device_id="dev-1",
        room="3B-12",
        app="occupancy",
        type="count_changed",
        time=1_790_000_000.5,
        confidence=0.8,
        data={"count": 2, "previous": 1},
    )
    fields.update(over)
    return wire.Event(**fields)


def resolver(key):
    return lambda kid: key.public_key() if kid == "dev-1" else None


def test_sign_and_verify_roundtrip():
    key = wire.generate_key()
    event = make_event()
    assert wire.verify_event(wire.sign_event(event, key), resolver(key)) == event


def _tamper(token: str, change) -> str:
    header, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    change(body)
    new = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{new}.{sig}"


def test_tampered_event_is_refused():
    key = wire.generate_key()
    token = wire.sign_event(make_event(), key)
    tampered = _tamper(token, lambda b: b["data"].update(count=0))
    with pytest.raises(wire.SignatureError):
        wire.verify_event(tampered, resolver(key))


def test_wrong_key_is_refused():
    key, other = wire.generate_key(), wire.generate_key()
    token = wire.sign_event(make_event(), other)
    with pytest.raises(wire.SignatureError):
        wire.verify_event(token, resolver(key))


def test_unknown_signer():
    key = wire.generate_key()
    token = wire.sign_event(make_event(device_id="dev-2"), key)
    with pytest.raises(wire.UnknownSignerError):
        wire.verify_event(token, resolver(key))


def test_event_for_another_device_is_refused():
    key = wire.generate_key()
    event = make_event(device_id="dev-2")
    token = wire.jwt.encode(event.model_dump(), key, algorithm="EdDSA", headers={"kid": "dev-1", "typ": wire.EVENT_TYP})
    with pytest.raises(wire.SignatureError, match="different device"):
        wire.verify_event(token, resolver(key))


def test_other_algorithms_are_refused():
    token = wire.jwt.encode(
        make_event().model_dump(),
        "secret-secret-secret-secret-1234",
        algorithm="HS256",
        headers={"kid": "dev-1", "typ": wire.EVENT_TYP},
    )
    with pytest.raises(wire.MalformedError):
        wire.verify_event(token, resolver(wire.generate_key()))


@pytest.mark.parametrize(
    "bad",
    [
        {"image": "iVBORw0KGgo="},  # unknown field
        {"data": {"jpeg": "/9j/4AAQSkZJRg=="}},  # strings are not allowed as data values
        {"data": {f"k{i}": i for i in range(17)}},  # too many numbers
        {"type": "x" * 65},  # identifiers are short
        {"room": "a b"},
        {"confidence": 1.5},
        {"app": "camera"},
        {"time": float("nan")},
    ],
)
def test_schema_cannot_carry_image_bytes_or_junk(bad):
    with pytest.raises(ValidationError):
        make_event(**bad)


def test_signed_payload_with_extra_field_is_malformed():
    key = wire.generate_key()
    token = wire.jwt.encode(
        {**make_event().model_dump(), "frame": "AAAA"},
        key,
        algorithm="EdDSA",
        headers={"kid": "dev-1", "typ": wire.EVENT_TYP},
    )
    with pytest.raises(wire.MalformedError, match="frame"):
        wire.verify_event(token, resolver(key))


def test_oversized_message_is_refused_before_parsing():
    with pytest.raises(wire.MalformedError, match="larger"):
        wire.verify_event("a" * (wire.MAX_JWS_BYTES + 1), lambda kid: None)


def test_enrollment_proof_of_possession():
    key = wire.generate_key()
    req = wire.EnrollmentRequest(
        token="wst.abc.defghijk", public_key=wire.encode_public_key(key.public_key()), name="cam-1"
    )
    assert wire.verify_enrollment(wire.sign_enrollment(req, key)) == req
    # Presenting someone else's public key but signing with our own key fails.
    victim = wire.generate_key()
    forged = req.model_copy(update={"public_key": wire.encode_public_key(victim.public_key())})
    with pytest.raises(wire.SignatureError):
        wire.verify_enrollment(wire.sign_enrollment(forged, key))


def test_rotation_proof_roundtrip_and_tampering():
    new_key, old_key = wire.generate_key(), wire.generate_key()
    public = wire.encode_public_key(new_key.public_key())
    nonce = "n" * 32
    token = wire.sign_rotation_proof(new_key, "dev-1", "job-0123456789abcdef", nonce)
    proof = wire.verify_rotation_proof(token, new_key.public_key())
    assert proof == wire.RotationProof(device_id="dev-1", job_id="job-0123456789abcdef", public_key=public, nonce=nonce)
    assert wire.jwt.get_unverified_header(token)["typ"] == wire.ROTATE_TYP
    # Signed by another key (e.g. the old one): a signature error, the server's 401.
    forged = wire.sign_rotation_proof(old_key, "dev-1", "job-0123456789abcdef", nonce)
    with pytest.raises(wire.SignatureError, match="possession is not signed by the new key"):
        wire.verify_rotation_proof(forged, new_key.public_key())
    # A tampered payload no longer verifies.
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["device_id"] = "dev-2"
    tampered_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(wire.SignatureError):
        wire.verify_rotation_proof(f"{head}.{tampered_body}.{sig}", new_key.public_key())
    # Malformed: not a JWS, the wrong typ, an extra claim (the server's 400).
    with pytest.raises(wire.MalformedError, match="possession is not a compact JWS"):
        wire.verify_rotation_proof("not-a-jws", new_key.public_key())
    wrong_typ = wire.jwt.encode({**proof.model_dump()}, new_key, algorithm="EdDSA", headers={"typ": wire.JOB_TYP})
    with pytest.raises(wire.MalformedError, match=re.escape(f"typ {wire.ROTATE_TYP}")):
        wire.verify_rotation_proof(wrong_typ, new_key.public_key())
    extra = wire.jwt.encode(
        {**proof.model_dump(), "frame": "AAAA"}, new_key, algorithm="EdDSA", headers={"typ": wire.ROTATE_TYP}
    )
    with pytest.raises(wire.MalformedError, match="possession unknown field 'frame'"):
        wire.verify_rotation_proof(extra, new_key.public_key())


def test_private_key_file_is_0600(tmp_path):
    path = tmp_path / "k" / "key.pem"
    key = wire.generate_key()
    wire.write_private_key(key, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert wire.load_private_key(path).public_key() == key.public_key()


def test_key_file_replaces_wider_files_and_symlinks(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("old")
    path.chmod(0o644)
    target = tmp_path / "elsewhere"
    (tmp_path / "key.pem.tmp").symlink_to(target)  # a planted link at the old fixed temp name
    wire.write_private_key(wire.generate_key(), path)
    assert path.stat().st_mode & 0o777 == 0o600 and not path.is_symlink()
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


SHA = "0123456789abcdef" * 4


def health(**over):
    return wire.Health(device_id="dev-1", sent_at=1.8e9, uptime_s=1.0, agent_version="0.1.0", accelerator="cpu", **over)


def test_the_heartbeat_carries_the_system_slot_version_and_sbom_digest_through_json():
    system = wire.SystemVersion(slot="B", version="2026.12.1", sbom_sha256=SHA)
    sent = health(system=system)
    back = wire.Health.model_validate_json(sent.model_dump_json())
    assert back == sent and back.system == system
    assert json.loads(sent.model_dump_json())["system"] == {
        "slot": "B", "version": "2026.12.1", "sbom_sha256": SHA, "compatible": None
    }
    # Outside an A/B image there is no slot; an image without a digest has none; an older agent says nothing.
    assert wire.SystemVersion(version="1.0").model_dump() == {
        "slot": None, "version": "1.0", "sbom_sha256": None, "compatible": None
    }
    assert wire.Health.model_validate_json(health().model_dump_json(exclude={"system"})).system is None


@pytest.mark.parametrize(
    "bad",
    [
        {"version": ""},  # a version is required
        {"version": "1" * 33},  # at most 32 characters
        {"version": "-1.0"},  # starts with a letter or digit
        {"version": "1.0 beta"},
        {"version": "1.0\n"},
        {"slot": "A B"},
        {"slot": "_external_"},  # RAUC's name for "booted from outside every slot" is not a slot
        {"slot": "a" * 65},
        {"sbom_sha256": SHA[:-1]},  # 64 hex digits
        {"sbom_sha256": SHA + "0"},
        {"sbom_sha256": SHA.upper()},  # lowercase only
        {"sbom_sha256": "g" * 64},
        {"sbom_sha256": ""},
        {"compatible": "Wardsight RPi5"},  # RAUC's compatible: lowercase letters, digits, dots, dashes
        {"kernel": "6.6.51"},  # closed: no other field
    ],
)
def test_the_system_version_is_bounded_and_closed(bad):
    fields = {"slot": "A", "version": "2026.12.1", "sbom_sha256": SHA, **bad}
    with pytest.raises(ValidationError):
        wire.SystemVersion(**fields)
    with pytest.raises(ValidationError, match="system"):
        wire.Health.model_validate_json(health().model_dump_json()[:-1] + f', "system": {json.dumps(fields)}}}')
