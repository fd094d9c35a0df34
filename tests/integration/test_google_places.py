"""Named places (issue 17, point 2): Google's semantic reports, recorded and, once a user gave
the name coordinates, pushed to Traccar there. OAuth, Nova and MCS fakes over real sockets, the
emulator, an OsmAnd server; reports made by the independent test encryptor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.models import Device, Source
from shared.runtime import Runtime
from shared.services import ServiceSpec
from shared.sources.google.places import PlaceSpec
from tests.conftest import make_settings
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import LAST_KNOWN, Report

T0 = 1_790_000_000


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=1) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        tracker = fake.trackers[0]
        tracker.network = [
            Report("own", timestamp=T0 - 600, latitude=48.80, longitude=2.30, accuracy=8.0,
                   is_own_report=True, status=LAST_KNOWN),
            Report("semantic", timestamp=T0 - 300, place="Home"),
            Report("semantic", timestamp=T0 - 200, place="Kitchen speaker"),
        ]  # fmt: skip
        tracker.recent = Report(
            "own", timestamp=T0, latitude=48.85, longitude=2.35, accuracy=5.0,
            is_own_report=True, status=LAST_KNOWN,
        )  # fmt: skip
        yield fake


@pytest.fixture
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=["canonic-0"]) as server:
        yield server


@pytest.fixture
def runtime(
    tmp_path: Path, firestore_client: object, google: FakeGoogle, traccar: OsmAndServer
) -> Runtime:
    settings = make_settings(tmp_path, **google.settings(), traccar_server_url=traccar.url)
    runtime = Runtime(settings, firestore_client=firestore_client)
    google.store_secrets(runtime.secrets)
    runtime.store.devices.put(
        Device(
            id="canonic-0", source=Source.GOOGLE, name="Tracker 0", traccar_unique_id="canonic-0"
        )
    )
    runtime.services.upsert("canonic-0", ServiceSpec(timer=600, delta=5))
    return runtime


def test_a_mapped_place_reaches_traccar_at_its_coordinates_in_time_order_and_only_once(
    runtime: Runtime, traccar: OsmAndServer
) -> None:
    runtime.google.places.put("Home", PlaceSpec(lat=48.8566, lon=2.3522))

    first = runtime.sync.sync_device("canonic-0")
    again = runtime.sync.sync_device("canonic-0", force=True)  # the same reports once more

    assert first.result.pushed == 3 and again.result.pushed == 0
    assert [(p.latitude, p.longitude, int(p.fix_time.timestamp())) for p in traccar.positions] == [
        (48.80, 2.30, T0 - 600), (48.8566, 2.3522, T0 - 300), (48.85, 2.35, T0),
    ]  # fmt: skip
    home = traccar.positions[1]
    assert home.attributes["place"] == "Home"
    assert home.valid is False  # the user's pin for a name, not a fix
    assert home.accuracy == 30.0  # the default: the mapping gave none
    assert all("place" not in p.attributes for p in (traccar.positions[0], traccar.positions[2]))


def test_a_mapping_s_own_accuracy_is_sent_and_removing_it_stops_the_pushes(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    runtime.google.places.put("Kitchen speaker", PlaceSpec(lat=48.0, lon=2.0, accuracy=12.0))
    runtime.sync.sync_device("canonic-0")
    kitchen = [p for p in traccar.positions if p.attributes.get("place") == "Kitchen speaker"]
    assert [(p.latitude, p.accuracy) for p in kitchen] == [(48.0, 12.0)]

    runtime.google.places.delete("Kitchen speaker")
    google.trackers[0].network.append(
        Report("semantic", timestamp=T0 + 100, place="Kitchen speaker")
    )
    runtime.sync.sync_device("canonic-0", force=True)

    assert [p.attributes.get("place") for p in traccar.positions].count("Kitchen speaker") == 1


def test_unmapped_names_never_reach_traccar_and_are_listed_with_their_devices(
    runtime: Runtime, traccar: OsmAndServer
) -> None:
    report = runtime.sync.sync_device("canonic-0")

    assert report.result.pushed == 2
    assert all("place" not in p.attributes for p in traccar.positions)
    views = {view.name: view for view in runtime.google.places.views()}
    assert sorted(views) == ["Home", "Kitchen speaker"]
    assert views["Home"].lat is None and views["Home"].last_seen == T0 - 300
    assert [(d.id, d.last_seen) for d in views["Kitchen speaker"].devices] == [
        ("canonic-0", T0 - 200)
    ]
