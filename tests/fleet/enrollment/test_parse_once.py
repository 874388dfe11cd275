"""The server's parse-once JWS helpers (wardsight.wire.parse_signed, parse_proof, check_proof, check_event) reach the
same verdicts as verify_event and proof_signer + verify_proof, on good tokens and on every kind of bad one."""

import base64
import json

import jwt
import pytest

from tests.fleet.helpers import event_for
from wardsight import wire

KEY = wire.generate_key()
OTHER = wire.generate_key()
DEVICE = "dev-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token(header: dict | bytes, payload: dict | bytes, key=KEY) -> str:
    """A compact JWS made by hand, so any part can be bent; signed over what it carries."""
    head = b64(header if isinstance(header, bytes) else json.dumps(header).encode())
    body = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    return f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()))}"


def outcome(call, *args):
    try:
        return "ok", call(*args)
    except wire.WireError as exc:
        return type(exc).__name__, None


def resolve(kid):
    return KEY.public_key() if kid == DEVICE else None


def bent(good: str, typ: str, payload: dict) -> list[str]:
    """Tokens that differ from ``good`` in one way each."""
    head, body, sig = good.split(".")
    header = {"alg": "EdDSA", "kid": DEVICE, "typ": typ}
    flipped = sig[:-1] + ("B" if sig[-1] == "A" else "A")  # stray bits in the last character: not canonical
    return [
        good,
        f"{head}.{body}.{sig[:10]}{'B' if sig[10] == 'A' else 'A'}{sig[11:]}",  # another signature
        f"{head}.{body}.{flipped}",
        f"{head}.{body}.{sig}==",  # padding to a multiple of four: accepted, as PyJWT accepts it
        f"{head}.{body}.{sig}=",
        f"{head}===.{body}.{sig}",
        f"{head}.{body}.{sig}.x",
        f"{head}.{body}",
        f"{head}!.{body}.{sig}",
        "é" + good,
        good + "A" * wire.MAX_JWS_BYTES,
        "",
        "garbage",
        token(header, payload, OTHER),
        token({**header, "typ": "other"}, payload),
        token({**header, "alg": "none"}, payload),
        token({**header, "kid": 7}, payload),
        token({**header, "kid": "dev-2"}, payload),
        token({**header, "kid": "bad kid!"}, payload),
        token({k: v for k, v in header.items() if k != "kid"}, payload),
        token(b"[1]", payload),
        token(b"{not json", payload),
        token(header, b"[1]"),
        token(header, b"{not json"),
        token(header, {**payload, "aud": "x"}),
        token(header, {**payload, "sub": 5}),
        token(header, {**payload, "extra": 1}),
        token(header, {**payload, "jti": 5}),
        jwt.encode(payload, "k" * 32, algorithm="HS256", headers={"kid": DEVICE, "typ": typ}),
    ]


def test_events_get_the_same_verdict_as_verify_event():
    event = event_for(DEVICE)
    good = wire.sign_event(event, KEY)
    payload = event.model_dump(mode="json")
    cases = [*bent(good, wire.EVENT_TYP, payload), wire.sign_event(event_for("dev-2"), KEY)]
    cases.append(token({"alg": "EdDSA", "kid": DEVICE, "typ": wire.EVENT_TYP}, {**payload, "device_id": "dev-2"}))
    verdicts = [outcome(wire.verify_event, case, resolve) for case in cases]
    assert verdicts == [outcome(wire.check_event, case, resolve) for case in cases]
    assert verdicts[0] == verdicts[3] == ("ok", event)
    assert {v[0] for v in verdicts} == {"ok", "MalformedError", "SignatureError", "UnknownSignerError"}


def proof_then_check(tok: str, key) -> wire.Proof:
    return wire.check_proof(wire.parse_proof(tok), key)


def signer_then_verify(tok: str, key) -> wire.Proof:
    wire.proof_signer(tok)
    return wire.verify_proof(tok, key)


def test_proofs_get_the_same_verdict_as_proof_signer_and_verify_proof():
    good = wire.sign_proof(
        KEY, DEVICE, method="POST", path="/api/v1/device/events", body=b"x", nonce="n" * 16, credential="c", now=1.0
    )
    payload = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    cases = bent(good, wire.PROOF_TYP, payload)
    verdicts = [outcome(signer_then_verify, case, KEY.public_key()) for case in cases]
    assert verdicts == [outcome(proof_then_check, case, KEY.public_key()) for case in cases]
    assert verdicts[0][0] == "ok" and verdicts[0][1].bh == wire.b64url_sha256(b"x")
    assert wire.parse_proof(good).header["kid"] == wire.proof_signer(good) == DEVICE
    assert {v[0] for v in verdicts} == {"ok", "MalformedError", "SignatureError"}


def test_headers_no_wardsight_signer_sets_are_refused():
    header = {"alg": "EdDSA", "kid": DEVICE, "typ": wire.EVENT_TYP, "crit": ["b64"], "b64": True}
    with pytest.raises(wire.MalformedError, match="unsupported header"):
        wire.parse_signed(token(header, event_for(DEVICE).model_dump(mode="json")), wire.EVENT_TYP)
