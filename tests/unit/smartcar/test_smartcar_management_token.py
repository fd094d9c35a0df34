"""The management token is read once per few minutes, yet a rotated one works at once."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from shared.errors import Unauthorized
from shared.secrets import CachedSecrets, LocalSecretStore
from shared.sources.smartcar.webhook import SignatureCheck

NAME = "smartcar-management-token"
OLD, NEW = "old-management-token-1234", "new-management-token-5678"
RAW = b'{"eventId": "e-1", "eventType": "VEHICLE_STATE"}'


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def checker(store: LocalSecretStore, ticks: Ticks) -> tuple[SignatureCheck, CachedSecrets]:
    """The receiver's check over the instance's secret cache, on the test's clock."""
    cache = CachedSecrets(store, clock=ticks)
    return SignatureCheck(secrets=cache, secret_name=NAME), cache


def signed_by(token: str) -> str:
    return hmac.new(token.encode(), RAW, hashlib.sha256).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalSecretStore:
    store = LocalSecretStore(tmp_path / "secrets")
    store.add_version(NAME, OLD)
    return store


def test_the_token_is_cached_between_deliveries(store: LocalSecretStore) -> None:
    ticks = Ticks()
    token, cache = checker(store, ticks)
    token(RAW, signed_by(OLD))
    store.add_version(NAME, NEW)

    ticks.now += cache.max_age - 1
    token(RAW, signed_by(OLD))  # still the cached value: the secret was not read again

    ticks.now += 1
    with pytest.raises(Unauthorized):
        token(RAW, signed_by(OLD))


def test_a_rotated_token_is_accepted_from_its_first_delivery(store: LocalSecretStore) -> None:
    ticks = Ticks()
    token, cache = checker(store, ticks)
    token(RAW, signed_by(OLD))
    store.add_version(NAME, NEW)
    ticks.now += cache.min_reread

    token(RAW, signed_by(NEW))


def test_forged_deliveries_do_not_make_the_secret_read_more_than_every_few_seconds(
    store: LocalSecretStore,
) -> None:
    ticks = Ticks()
    token, cache = checker(store, ticks)
    token(RAW, signed_by(OLD))
    store.add_version(NAME, NEW)  # a re-read would now accept NEW

    ticks.now += cache.min_reread - 1
    with pytest.raises(Unauthorized):
        token(RAW, signed_by(NEW))


def test_verify_reads_the_token_afresh_but_not_at_every_request(store: LocalSecretStore) -> None:
    ticks = Ticks()
    token, cache = checker(store, ticks)
    assert token.token() == OLD
    store.add_version(NAME, NEW)

    assert token.token(fresh=True) == OLD
    ticks.now += cache.min_reread
    assert token.token(fresh=True) == NEW
