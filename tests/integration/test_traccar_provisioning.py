"""What the pipeline does in Traccar through its REST API, as each function is wired.

Against the fake Traccar (`tests/fakes/traccar_api.py`) sharing its devices with the OsmAnd
server: the scheduled functions (API_URL set, the command key stored) write Traccar's Find Hub
sender attributes onto the devices they create or find (PROTOCOLS.md §2b); a runtime without
API_URL (the public webhooks function) writes none; an expired token is said once (PROTOCOLS.md
§2) and the positions go once new credentials are stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import service_status
from shared.models import Device, Location, Source
from shared.runtime import Runtime
from shared.secrets import LocalSecretStore
from tests.conftest import make_settings
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smtp import SmtpServer
from tests.fakes.traccar_api import ADMIN_EMAIL, ADMIN_PASSWORD, FakeTraccarApi

TOKEN = "traccar-token-0123456789"
COMMAND_KEY = "command-key-4b5c6d7e"
API_URL = "https://bridge-api.example.run.app"
TAG = Device(id="tag1", source=Source.GOOGLE, name="Tag", traccar_unique_id="tag1")
FIND_HUB = {
    "command.sender": "findHub",
    "command.findHub.url": API_URL,
    "command.findHub.key": COMMAND_KEY,
}


@pytest.fixture
def osmand() -> Iterator[OsmAndServer]:
    with OsmAndServer() as server:
        yield server


@pytest.fixture
def traccar(osmand: OsmAndServer) -> Iterator[FakeTraccarApi]:
    with FakeTraccarApi(TOKEN, devices=osmand.devices) as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def runtime_for(
    tmp_path: Path,
    firestore_client: Any,
    osmand: OsmAndServer,
    traccar: FakeTraccarApi,
    smtp: SmtpServer | None = None,
    **overrides: object,
) -> Runtime:
    secrets = LocalSecretStore(tmp_path / "secrets")
    secrets.add_version("traccar-api-token", TOKEN)
    secrets.add_version("traccar-command-key", COMMAND_KEY)
    mail: dict[str, object] = {}
    if smtp is not None:
        mail = {
            "notify_smtp_host": smtp.host,
            "notify_smtp_port": smtp.port,
            "notify_email_from": "bridge@example.com",
            "notify_email_to": "owner@example.com",
        }
    settings = make_settings(
        tmp_path,
        traccar_server_url=osmand.url,
        traccar_api_url=traccar.url,
        **mail,
        **overrides,
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.store.devices.put(TAG)
    return runtime


def position(timestamp: int = 1_700_000_000) -> Location:
    return Location(id="tag1", lat=48.85, lon=2.35, timestamp=timestamp)


def test_a_scheduled_function_creates_the_device_ready_for_traccars_commands(
    tmp_path: Path, firestore_client: Any, osmand: OsmAndServer, traccar: FakeTraccarApi
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar, api_url=API_URL)
    report = runtime.sync.push_locations(TAG, [position()])
    assert report.result.pushed == 1
    assert traccar.record("tag1")["attributes"] == FIND_HUB


def test_a_device_found_in_traccar_gets_the_attributes_beside_its_own(
    tmp_path: Path, firestore_client: Any, osmand: OsmAndServer, traccar: FakeTraccarApi
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar, api_url=API_URL)
    api = runtime.traccar_api()
    assert api is not None
    created = api.create_device("tag1", "Tag", attributes={"speedLimit": "30"})
    found = api.ensure_device("tag1", "Tag", attributes=FIND_HUB)
    assert found.id == created.id
    assert traccar.record("tag1")["attributes"] == {"speedLimit": "30", **FIND_HUB}


def test_without_api_url_as_the_webhooks_function_no_command_attribute_is_written(
    tmp_path: Path, firestore_client: Any, osmand: OsmAndServer, traccar: FakeTraccarApi
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar)
    assert runtime.command_attributes() is None
    runtime.sync.push_locations(TAG, [position()])
    assert traccar.record("tag1")["attributes"] == {}


def test_an_expired_token_is_said_once_and_the_positions_go_with_new_credentials(
    tmp_path: Path,
    firestore_client: Any,
    osmand: OsmAndServer,
    traccar: FakeTraccarApi,
    smtp: SmtpServer,
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar, smtp)
    traccar.expire_token(TOKEN)
    first = runtime.sync.push_locations(TAG, [position()])
    second = runtime.sync.push_locations(TAG, [position(1_700_000_060)])
    assert (first.result.pushed, second.result.pushed) == (0, 0)
    assert second.result.outbox == 2
    mails = [m for m in smtp.messages if "Traccar API" in m.message["Subject"]]
    assert len(mails) == 1
    assert TOKEN not in mails[0].message.get_content()
    health = service_status.health(runtime.store)
    assert health.traccar_api == "unauthorized"
    assert health.public().traccar_api is None

    # A new instance (runtime_for stores the dead token again), then the new credentials.
    renewed = runtime_for(
        tmp_path, firestore_client, osmand, traccar, smtp, traccar_api_auth="basic"
    )
    LocalSecretStore(tmp_path / "secrets").add_version(
        "traccar-api-token", f"{ADMIN_EMAIL}:{ADMIN_PASSWORD}"
    )
    report = renewed.sync.push_locations(TAG, [])
    assert report.result.pushed == 2
    assert service_status.health(renewed.store).traccar_api is None
    assert len([m for m in smtp.messages if "Traccar API" in m.message["Subject"]]) == 1


# --- The hourly pass over devices that existed before (refresh_devices) --------------------


def traccar_calls(traccar: FakeTraccarApi, since: int) -> list[str]:
    return [f"{r.method} {r.target.split('?')[0]}" for r in traccar.requests[since:]]


def test_the_hourly_pass_gives_devices_made_before_the_attributes_at_a_bounded_cost(
    tmp_path: Path, firestore_client: Any, osmand: OsmAndServer, traccar: FakeTraccarApi
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar, api_url=API_URL)
    for unique_id in ("tag2", "tag3", "tag4"):
        runtime.store.devices.put(
            Device(id=unique_id, source=Source.GOOGLE, name=unique_id, traccar_unique_id=unique_id)
        )
    api = runtime.traccar_api()
    assert api is not None
    # Made by hand (or by an older bridge): the user's own attribute, no command attributes.
    api.create_device("tag1", "Tag", attributes={"speedLimit": "30"})
    api.create_device("tag2", "Tag 2", attributes=FIND_HUB)  # ready already
    api.create_device("other", "Not the bridge's")
    # tag3 and tag4 were never pushed: Traccar does not have them.
    before = len(traccar.requests)

    report = runtime.command_provisioning.run()

    assert (report.status, report.found, report.missing) == ("done", 2, 2)
    assert report.updated == ["tag1"] and report.failed == []
    assert traccar.record("tag1")["attributes"] == {"speedLimit": "30", **FIND_HUB}
    assert traccar.record("tag1")["name"] == "Tag"  # the rest of the device kept
    assert traccar.record("other")["attributes"] == {}
    # One listing, one PUT for the one device that differed.
    assert traccar_calls(traccar, before) == ["GET /api/devices", "PUT /api/devices/1"]

    before = len(traccar.requests)
    again = runtime.command_provisioning.run()
    assert again.updated == [] and traccar_calls(traccar, before) == ["GET /api/devices"]


def test_a_rotated_command_key_reaches_every_device_with_the_next_pass(
    tmp_path: Path, firestore_client: Any, osmand: OsmAndServer, traccar: FakeTraccarApi
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar, api_url=API_URL)
    runtime.sync.push_locations(TAG, [position()])  # created with the first key
    assert traccar.record("tag1")["attributes"] == FIND_HUB

    # The next hour's run (a new instance, runtime_for stores the first key again), then the
    # new key.
    hourly = runtime_for(tmp_path, firestore_client, osmand, traccar, api_url=API_URL)
    LocalSecretStore(tmp_path / "secrets").add_version("traccar-command-key", "rotated-key-9f8e")
    report = hourly.command_provisioning.run()

    assert report.updated == ["tag1"]
    assert traccar.record("tag1")["attributes"]["command.findHub.key"] == "rotated-key-9f8e"


def test_without_api_url_the_pass_asks_traccar_nothing(
    tmp_path: Path, firestore_client: Any, osmand: OsmAndServer, traccar: FakeTraccarApi
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar)
    report = runtime.command_provisioning.run()
    assert report.status == "skipped" and "API_URL" in (report.reason or "")
    assert traccar.requests == []


def test_refused_credentials_end_the_pass_said_once_and_never_raise(
    tmp_path: Path,
    firestore_client: Any,
    osmand: OsmAndServer,
    traccar: FakeTraccarApi,
    smtp: SmtpServer,
) -> None:
    runtime = runtime_for(tmp_path, firestore_client, osmand, traccar, smtp, api_url=API_URL)
    traccar.expire_token(TOKEN)

    first = runtime.command_provisioning.run()
    second = runtime.command_provisioning.run()

    assert (first.status, second.status) == ("failed", "failed")
    assert TOKEN not in (first.reason or "") and COMMAND_KEY not in (first.reason or "")
    assert service_status.health(runtime.store).traccar_api == "unauthorized"
    assert len([m for m in smtp.messages if "Traccar API" in m.message["Subject"]]) == 1
