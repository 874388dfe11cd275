"""The signature thread (fleet.auth.signatures): requests asking in one turn of the loop share one job; a good
signature is kept on its parsed JWS, a bad one is left for the decision, and nothing is decided or raised here."""

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.auth.signatures import SignatureChecker
from tests.fleet.helpers import event_for
from wardsight import wire


def signed_event(key: Ed25519PrivateKey) -> wire.Signed:
    return wire.parse_signed(wire.sign_event(event_for("dev-0001"), key), wire.EVENT_TYP)


@pytest.fixture
def checker():
    checker = SignatureChecker()
    yield checker
    checker.close()


async def test_requests_of_one_turn_share_a_job_and_good_signatures_are_kept(checker):
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    tokens = [signed_event(key) for _ in range(8)]
    await asyncio.wait_for(asyncio.gather(*(checker.check([t], public) for t in tokens)), 10)
    assert checker.jobs == 1
    assert all(t._verified_by == [public] for t in tokens)  # kept: the decision does not check them again
    later = signed_event(key)
    await asyncio.wait_for(checker.check([later], public), 10)
    assert checker.jobs == 2 and later._verified_by == [public]


async def test_a_bad_signature_is_left_for_the_decision(checker):
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = key.public_key()
    good, forged = signed_event(key), signed_event(other)
    await asyncio.wait_for(checker.check([forged, good], public), 10)  # (completes: nothing raised here)
    assert good._verified_by == [public]
    assert forged._verified_by == []
    with pytest.raises(wire.SignatureError):  # what the decision meets when it checks it on the loop
        forged.verify(public)


async def test_checks_asked_while_closing_are_made_on_the_loop():
    checker = SignatureChecker()
    key = Ed25519PrivateKey.generate()
    token = signed_event(key)
    pending = checker.check([token], key.public_key())
    checker.close()  # before the job is sent
    await asyncio.wait_for(pending, 10)
    assert checker.jobs == 0 and len(token._verified_by) == 1


async def test_a_cancelled_request_does_not_stop_the_others(checker):
    key = Ed25519PrivateKey.generate()
    first, second = signed_event(key), signed_event(key)
    gone = checker.check([first], key.public_key())
    kept = checker.check([second], key.public_key())
    gone.cancel()
    await asyncio.wait_for(kept, 10)
    assert len(second._verified_by) == 1
