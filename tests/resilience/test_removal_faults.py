"""A device removal meeting Firestore faults (shared/removal.py): what it leaves can simply be
asked to remove again. The official client on the emulator, its calls failed on the wire
(`tests/resilience/faults.py`)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.api_core.exceptions import GoogleAPIError
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import Device, DeviceState, Location, OutboxEntry, Source
from shared.runtime import Runtime
from tests.conftest import PROJECT, Clock, make_settings
from tests.resilience.faults import FaultyClient

TRACKER = Device(id="tlink-31", source=Source.TLINK, traccar_unique_id="tlink-31")


@pytest.fixture
def client(emulator: Emulator, firestore_client: firestore.Client) -> FaultyClient:
    return FaultyClient(project=PROJECT)


def seed(client: firestore.Client) -> None:
    """The device with its state and one position waiting in the outbox."""
    location = Location(id=TRACKER.id, lat=1.0, lon=2.0, timestamp=1_700_000_000)
    client.collection("devices").document(TRACKER.id).set(TRACKER.model_dump(mode="python"))
    client.collection("device_state").document(TRACKER.id).set(
        DeviceState(id=TRACKER.id, outbox_count=1).model_dump(mode="python")
    )
    entry = OutboxEntry(id="w1", device_id=TRACKER.id, fingerprint="f", location=location)
    client.collection("outbox").document(entry.id).set(entry.model_dump(mode="python"))


def test_a_removal_failing_in_firestore_can_be_asked_again_at_once(
    client: FaultyClient, firestore_client: firestore.Client, tmp_path: Path, clock: Clock
) -> None:
    seed(firestore_client)
    runtime = Runtime(make_settings(tmp_path), firestore_client=client)
    # The removal's first query is its outbox's: Firestore refuses it (and its retries).
    client.faults.fail("RunQuery", times=20, code=grpc.StatusCode.INTERNAL)

    with pytest.raises(GoogleAPIError):
        runtime.removal.remove(TRACKER.id)

    # Asked again: not a 429 against the failed removal's own lease, and done.
    client.faults.fail("RunQuery", times=0)
    removed = Runtime(make_settings(tmp_path), firestore_client=firestore_client).removal.remove(
        TRACKER.id
    )
    assert removed.removed["outbox"] == 1 and removed.removed["device"] == 1
