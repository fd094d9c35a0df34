"""VERIFY answers and `SC-Signature` checks, against the SDK's own HMAC and Smartcar's samples."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
import smartcar

from shared.errors import BadRequest, Unauthorized
from shared.sources.smartcar.payloads import verify_challenge
from shared.sources.smartcar.webhook import challenge_answer, check_signature

DATA = Path(__file__).resolve().parents[2] / "data"
TOKEN = "a7c2b1e4-management-token-5f3d"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "challenge"),
    [
        ("smartcar_verify_v4.json", "3a5c8f72-6a0e-4a41-8b43-9d5c1e0f2b7a"),
        ("smartcar_verify_v2.json", "9c9c9c9c"),
    ],
)
def test_verify_answers_the_challenge_hmac_the_sdk_computes(name: str, challenge: str) -> None:
    found = verify_challenge(json.loads(sample(name)))

    assert found == challenge
    assert challenge_answer(TOKEN, found) == smartcar.hash_challenge(TOKEN, challenge)


def test_a_delivery_is_not_taken_for_a_verify() -> None:
    assert verify_challenge(json.loads(sample("smartcar_vehicle_state_v4.json"))) is None


def test_a_verify_without_challenge_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match=r"data\.challenge"):
        verify_challenge({"eventType": "VERIFY", "data": {}})


def test_the_signature_of_the_raw_body_is_accepted_in_either_case() -> None:
    raw = sample("smartcar_vehicle_state_v4.json")
    signature = hmac.new(TOKEN.encode(), raw, hashlib.sha256).hexdigest()

    check_signature(raw, signature, TOKEN)
    check_signature(raw, signature.upper(), TOKEN)
    assert smartcar.verify_payload(TOKEN, signature, raw.decode())


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (None, "missing SC-Signature"),
        ("", "missing SC-Signature"),
        ("0" * 64, "wrong SC-Signature"),
        ("é" * 64, "wrong SC-Signature"),
    ],
)
def test_a_missing_or_wrong_signature_is_refused(signature: str | None, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        check_signature(sample("smartcar_vehicle_state_v4.json"), signature, TOKEN)


def test_a_signature_of_the_parsed_and_reserialised_body_is_refused() -> None:
    raw = sample("smartcar_vehicle_state_v4.json")
    reserialised = json.dumps(json.loads(raw), indent=2).encode()
    signature = hmac.new(TOKEN.encode(), reserialised, hashlib.sha256).hexdigest()

    with pytest.raises(Unauthorized):
        check_signature(raw, signature, TOKEN)


def test_a_signature_made_with_another_token_is_refused() -> None:
    raw = sample("smartcar_vehicle_state_v4.json")
    signature = hmac.new(b"another-token-entirely", raw, hashlib.sha256).hexdigest()

    with pytest.raises(Unauthorized):
        check_signature(raw, signature, TOKEN)


def test_verify_is_no_signing_oracle_for_a_forged_delivery() -> None:
    # Answering this challenge would hand out the SC-Signature of the forged body.
    forged = json.dumps({"eventId": "x", "eventType": "VEHICLE_STATE", "vehicleId": "v"})

    with pytest.raises(BadRequest, match="not answered"):
        challenge_answer(TOKEN, forged)
