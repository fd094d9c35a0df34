"""The typed Firestore repositories on the emulator, and the runtime's one lazy client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.cloud import firestore
from pydantic import BaseModel, ValidationError

from shared.config import Settings
from shared.errors import BadRequest, Conflict
from shared.models import AuthState, Device, ExcludedDevice, Service, Source, SyncResult
from shared.runtime import Runtime
from shared.store import MAX_ID_BYTES, Repository, Store

ROOT = Path(__file__).resolve().parents[2]
IMPORT_CHECK_TIMEOUT = 60  # seconds; a cold interpreter importing pydantic on a busy CI box
# Firestore keeps microseconds; a datetime with them must come back equal.
WHEN = datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)


@pytest.fixture
def store(firestore_client: firestore.Client) -> Store:
    return Store(firestore_client)


def device(device_id: str, **fields: object) -> Device:
    values: dict[str, object] = {
        "id": device_id,
        "source": Source.GOOGLE,
        "name": f"Tracker {device_id}",
        "traccar_unique_id": f"gfmd-{device_id}",
        "first_seen": WHEN,
        "last_seen": WHEN,
    }
    values.update(fields)
    return Device.model_validate(values)


def service(service_id: str, **fields: object) -> Service:
    values: dict[str, object] = {"id": service_id, "timer": 600, "delta": 5}
    values.update(fields)
    return Service.model_validate(values)


def excluded(item_id: str, **fields: object) -> ExcludedDevice:
    values: dict[str, object] = {"id": item_id, "since": WHEN}
    values.update(fields)
    return ExcludedDevice.model_validate(values)


# Each repository with a factory of its model and a field to vary: one contract for all three.
CONTRACTS = {
    "devices": (device, {"name": "changed"}),
    "services": (service, {"name": "changed"}),
    "excluded_devices": (excluded, {"since": WHEN + timedelta(days=1)}),
}

Factory = Callable[..., BaseModel]


@pytest.fixture(params=sorted(CONTRACTS))
def contract(request: pytest.FixtureRequest, store: Store) -> tuple[Repository, Factory, dict]:
    make, variation = CONTRACTS[request.param]
    return getattr(store, request.param), make, variation


def test_put_then_get_returns_an_equal_model(contract: tuple[Repository, Factory, dict]) -> None:
    repository, make, _ = contract
    item = make("item-1")

    repository.put(item)

    assert repository.get("item-1") == item
    assert repository.get("missing") is None


def test_create_refuses_an_existing_id_and_keeps_the_first(
    contract: tuple[Repository, Factory, dict],
) -> None:
    repository, make, variation = contract
    first = make("item-1")
    repository.create(first)

    with pytest.raises(Conflict, match="item-1"):
        repository.create(make("item-1", **variation))

    assert repository.get("item-1") == first


def test_create_stores_a_new_document(contract: tuple[Repository, Factory, dict]) -> None:
    repository, make, _ = contract

    repository.create(make("item-1"))

    assert repository.get("item-1") == make("item-1")


def test_delete_reports_whether_there_was_a_document(
    contract: tuple[Repository, Factory, dict],
) -> None:
    repository, make, _ = contract
    repository.put(make("item-1"))

    assert repository.delete("item-1") is True
    assert repository.get("item-1") is None
    assert repository.delete("item-1") is False


def test_list_is_ordered_by_id_and_count_counts(
    contract: tuple[Repository, Factory, dict],
) -> None:
    repository, make, _ = contract
    assert repository.list() == []
    assert repository.count() == 0

    for item_id in ("charlie", "alpha", "bravo"):
        repository.put(make(item_id))

    assert repository.list() == [make("alpha"), make("bravo"), make("charlie")]
    assert repository.count() == 3


def test_put_replaces_the_whole_document(store: Store) -> None:
    store.devices.put(device("d1", model="Pixel Tag"))

    store.devices.put(device("d1", name="renamed"))

    stored = store.devices.get("d1")
    assert stored is not None
    assert stored.name == "renamed"
    assert stored.model is None


def test_collections_are_kept_apart(store: Store) -> None:
    store.devices.put(device("same-id"))

    assert store.services.get("same-id") is None
    assert store.excluded_devices.count() == 0


def test_service_with_nested_result_and_datetimes_round_trips(store: Store) -> None:
    item = service(
        "d1",
        name="Keys",
        timer=900,
        delta=30,
        job_name="projects/p/locations/r/jobs/sync-d1",
        paused=True,
        last_sync=WHEN,
        next_sync=WHEN + timedelta(minutes=15),
        last_result=SyncResult(fetched=4, new=2, pushed=1, failed=1, outbox=1),
    )

    store.services.put(item)

    assert store.services.get("d1") == item


def test_datetimes_come_back_aware_utc_at_the_same_instant(store: Store) -> None:
    paris_summer = timezone(timedelta(hours=2))
    local = datetime(2026, 7, 1, 12, 0, 0, 250_000, tzinfo=paris_summer)
    store.devices.put(device("d1", first_seen=local, last_seen=local))

    stored = store.devices.get("d1")

    assert stored is not None
    assert stored.first_seen == local
    assert stored.first_seen.utcoffset() == timedelta(0)
    assert stored.first_seen.replace(tzinfo=None) == datetime(2026, 7, 1, 10, 0, 0, 250_000)


def test_models_refuse_naive_datetimes() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        device("d1", first_seen=datetime(2026, 1, 1))  # naive, on purpose


def test_fields_unknown_to_this_version_are_ignored(
    store: Store, firestore_client: firestore.Client
) -> None:
    data = device("d1").model_dump(mode="python") | {"added_by_a_newer_version": 42}
    firestore_client.collection("devices").document("d1").set(data)

    assert store.devices.get("d1") == device("d1")


def test_auth_state_is_ok_until_something_says_otherwise(store: Store) -> None:
    assert store.state.auth().status == "ok"
    assert store.state.get("auth", AuthState) is None


def test_auth_state_put_then_get(store: Store) -> None:
    refused = AuthState(status="auth_required", since=WHEN, reason="token revoked")

    store.state.put("auth", refused)

    assert store.state.auth() == refused
    assert store.state.get("auth", AuthState) == refused


def test_state_documents_are_each_their_own_model(store: Store) -> None:
    class Cursor(BaseModel):
        last_page: str

    store.state.put("refresh_cursor", Cursor(last_page="p2"))

    assert store.state.get("refresh_cursor", Cursor) == Cursor(last_page="p2")
    assert store.state.auth().status == "ok"


INVALID_IDS = ["", "a/b", "/", ".", "..", "__reserved__", "x" * (MAX_ID_BYTES + 1), "é" * 751]


@pytest.mark.parametrize("bad_id", INVALID_IDS)
def test_invalid_document_ids_are_bad_requests(store: Store, bad_id: str) -> None:
    with pytest.raises(BadRequest):
        store.devices.get(bad_id)
    with pytest.raises(BadRequest):
        store.services.delete(bad_id)
    with pytest.raises(BadRequest):
        store.state.get(bad_id, AuthState)
    if bad_id:  # the models refuse an empty id themselves
        with pytest.raises(BadRequest):
            store.devices.put(device(bad_id))
        with pytest.raises(BadRequest):
            store.excluded_devices.create(ExcludedDevice(id=bad_id))


def test_longest_valid_id_is_stored(store: Store) -> None:
    longest = "é" * (MAX_ID_BYTES // 2)

    store.excluded_devices.put(ExcludedDevice(id=longest, since=WHEN))

    assert store.excluded_devices.get(longest) == ExcludedDevice(id=longest, since=WHEN)


def test_runtime_creates_no_client_before_first_use(settings: Settings) -> None:
    runtime = Runtime(settings)

    assert "firestore_client" not in vars(runtime)
    assert "store" not in vars(runtime)
    assert "http_session" not in vars(runtime)


def test_runtime_creates_one_firestore_client_lazily_on_the_emulator(
    settings: Settings, firestore_client: firestore.Client
) -> None:
    runtime = Runtime(settings)  # no client given: it builds its own, on the emulator
    firestore_client.collection("services").document("d1").set(
        service("d1").model_dump(mode="python")
    )

    store = runtime.store

    assert "firestore_client" in vars(runtime)
    assert runtime.store is store
    assert runtime.firestore_client is store.client
    assert runtime.firestore_client.project == settings.gcp_project
    assert store.services.count() == 1  # really the emulator's data


def test_runtime_builds_each_adapter_once(settings: Settings, firestore_client) -> None:
    runtime = Runtime(settings, firestore_client=firestore_client)

    assert runtime.firestore_client is firestore_client
    assert runtime.http_session is runtime.http_session
    assert runtime.secrets is runtime.secrets
    assert runtime.scheduler is runtime.scheduler


def test_library_imports_no_google_client_until_used() -> None:
    code = (
        "import sys\n"
        "import shared.runtime, shared.store, shared.secrets, shared.scheduler\n"
        "import shared.service_status, shared.web\n"
        "from shared.config import load_settings\n"
        "shared.runtime.Runtime(load_settings(_env_file=None))\n"
        # `google` and `google.cloud` themselves are namespace packages a .pth file loads.
        "heavy = ('google.cloud.', 'google.api_core', 'grpc')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=IMPORT_CHECK_TIMEOUT,
        check=True,
    )

    assert result.stdout.strip() == "[]"
