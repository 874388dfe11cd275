"""A parsed JWS verified once (:meth:`wardsight.wire.Signed.verify`), as the server does off its event loop: the
success is kept for that key object only, a failure is not kept, and the verdicts stay those of a fresh check."""

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fleet.helpers import event_for
from wardsight import wire


def test_a_kept_success_counts_for_that_key_only_and_a_failure_is_not_kept():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    token = wire.sign_event(event_for("cam-1"), key)
    signed = wire.parse_signed(token, wire.EVENT_TYP)
    with pytest.raises(wire.SignatureError):
        signed.verify(other.public_key())
    with pytest.raises(wire.SignatureError):  # still refused: nothing was kept
        wire.check_event(signed, lambda kid: other.public_key())
    public = key.public_key()
    signed.verify(public)
    assert wire.check_event(signed, lambda kid: public).device_id == "cam-1"
    with pytest.raises(wire.SignatureError):  # another key object is checked afresh
        signed.claims(other.public_key())


def test_a_tampered_token_parsed_again_is_checked_again():
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    token = wire.sign_event(event_for("cam-1"), key)
    wire.parse_signed(token, wire.EVENT_TYP).verify(public)
    head, payload, signature = token.split(".")
    forged = wire.sign_event(event_for("cam-1", room="elsewhere"), key).split(".")[1]
    with pytest.raises(wire.SignatureError):
        wire.check_event(wire.parse_signed(f"{head}.{forged}.{signature}", wire.EVENT_TYP), lambda kid: public)


def test_a_copy_with_other_bytes_does_not_inherit_the_kept_success():
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    signed = wire.parse_signed(wire.sign_event(event_for("cam-1"), key), wire.EVENT_TYP)
    signed.verify(public)
    forged = dataclasses.replace(signed, payload=b'{"forged": 1}', signing_input=b"x.y")
    with pytest.raises(wire.SignatureError):
        forged.verify(public)
