"""Whole DeviceUpdates, built by the independent test encryptor, decoded by the bridge."""

from __future__ import annotations

import os

import pytest

from shared.models import Source
from shared.sources.google.decode import decode_device_update
from shared.sources.google.errors import DecryptionError, MalformedUpdate
from tests.unit.google.encryptor import AGGREGATED, LAST_KNOWN, Report, Tracker


def _mixed_reports() -> tuple[list[Report], Report]:
    network = [
        Report(
            "crowdsourced",
            timestamp=1_700_000_100,
            latitude=48.8566,
            longitude=2.3522,
            altitude=35,
            accuracy=12.3,
            time_offset=0x0123_4567,
        ),
        Report("semantic", timestamp=1_700_000_200, place="Home"),
        Report(
            "own",
            timestamp=1_700_000_300,
            latitude=-33.8688,
            longitude=151.2093,
            altitude=-12,
            accuracy=4.5,
            status=AGGREGATED,
            is_own_report=True,
        ),
        Report(
            # A finder key with the flag set: the path follows the key, the output the flag.
            "crowdsourced",
            timestamp=1_700_000_400,
            latitude=40.7128,
            longitude=-74.006,
            altitude=10,
            accuracy=50.0,
            is_own_report=True,
            time_offset=0x0123_8000,
        ),
    ]
    recent = Report(
        "own",
        timestamp=1_700_000_500,
        latitude=51.5072,
        longitude=-0.1276,
        altitude=0,
        accuracy=3.0,
        status=LAST_KNOWN,
        is_own_report=True,
    )
    return network, recent


@pytest.mark.parametrize("wrap", ["gcm", "cbc"])
def test_mixed_update_round_trips_in_report_order(wrap):
    tracker = Tracker(wrap=wrap)
    network, recent = _mixed_reports()

    decoded = decode_device_update(tracker.device_update(network, recent), tracker.owner_key)

    assert [r.model_dump() for r in decoded.reports] == [
        {
            "latitude": 48.8566,
            "longitude": 2.3522,
            "altitude": 35,
            "accuracy": 12.3,
            "timestamp": 1_700_000_100,
            "status": "CROWDSOURCED",
            "is_own_report": False,
        },
        {
            "latitude": -33.8688,
            "longitude": 151.2093,
            "altitude": -12,
            "accuracy": 4.5,
            "timestamp": 1_700_000_300,
            "status": "AGGREGATED",
            "is_own_report": True,
        },
        {
            "latitude": 40.7128,
            "longitude": -74.006,
            "altitude": 10,
            "accuracy": 50.0,
            "timestamp": 1_700_000_400,
            "status": "CROWDSOURCED",
            "is_own_report": True,
        },
        {
            "latitude": 51.5072,
            "longitude": -0.1276,
            "altitude": 0,
            "accuracy": 3.0,
            "timestamp": 1_700_000_500,
            "status": "LAST_KNOWN",
            "is_own_report": True,
        },
    ]
    assert decoded.request_uuid == "request-uuid-1"
    assert decoded.canonic_id == "tracker-canonic-1"
    assert decoded.name == "Keys"
    assert decoded.key_wrap == wrap
    assert decoded.skipped == []


def test_semantic_reports_never_become_locations():
    tracker = Tracker()
    network, recent = _mixed_reports()

    decoded = decode_device_update(tracker.device_update(network, recent), tracker.owner_key)
    locations = decoded.locations()

    assert [s.model_dump() for s in decoded.semantic] == [
        {"name": "Home", "timestamp": 1_700_000_200, "is_own_report": False}
    ]
    assert len(locations) == 4
    assert all(location.loc_status != "SEMANTIC" for location in locations)


def test_locations_are_pipeline_locations_of_the_device():
    tracker = Tracker()
    network, recent = _mixed_reports()
    decoded = decode_device_update(tracker.device_update(network, recent), tracker.owner_key)

    first = decoded.locations()[0]
    assert (first.id, first.lat, first.lon, first.timestamp) == (
        "tracker-canonic-1",
        48.8566,
        2.3522,
        1_700_000_100,
    )
    assert (first.altitude, first.accuracy, first.loc_status, first.is_own_report) == (
        35,
        12.3,
        "CROWDSOURCED",
        False,
    )
    assert first.source is Source.GOOGLE
    assert decoded.locations("other-id")[0].id == "other-id"


def test_network_reports_take_their_timestamps_by_index():
    tracker = Tracker()
    network = [
        Report("own", timestamp=0, latitude=float(i), longitude=0.0, status=LAST_KNOWN)
        for i in range(3)
    ]

    decoded = decode_device_update(
        tracker.device_update(network, network_timestamps=[1_000, 2_000, 3_000]),
        tracker.owner_key,
    )

    assert [(r.latitude, r.timestamp) for r in decoded.reports] == [
        (0.0, 1_000),
        (1.0, 2_000),
        (2.0, 3_000),
    ]


@pytest.mark.parametrize("wrap", ["gcm", "cbc"])
def test_mcu_tracker_decrypts_with_time_counter_zero_whatever_the_offset(wrap):
    tracker = Tracker(wrap=wrap, mcu=True)
    report = Report(
        "crowdsourced",
        timestamp=1_700_000_000,
        latitude=45.0,
        longitude=7.0,
        time_offset=987_654,
        encrypt_time_counter=0,
    )

    decoded = decode_device_update(tracker.device_update([report]), tracker.owner_key)

    assert [(r.latitude, r.longitude) for r in decoded.reports] == [(45.0, 7.0)]


def test_wrong_owner_key_with_gcm_wrap_fails_at_the_identity_key_naming_the_device():
    tracker = Tracker(wrap="gcm")
    network, recent = _mixed_reports()

    with pytest.raises(DecryptionError) as caught:
        decode_device_update(tracker.device_update(network, recent), os.urandom(32))

    assert caught.value.device == "tracker-canonic-1"
    assert caught.value.message.startswith("device tracker-canonic-1: identity key fails")
    assert "owner key" in caught.value.message


def test_wrong_owner_key_with_cbc_wrap_fails_at_the_report_tags_naming_the_device():
    tracker = Tracker(wrap="cbc")
    network, recent = _mixed_reports()

    with pytest.raises(DecryptionError) as caught:
        decode_device_update(
            tracker.device_update(network, recent), os.urandom(32), device_id="located-id"
        )

    message = caught.value.message
    assert caught.value.device == "located-id"
    assert message.startswith("device located-id: no report decrypts (network location 0:")
    assert "authentication tag" in message
    assert "wrong or stale owner key" in message


def test_identity_key_of_unknown_length_names_the_device():
    tracker = Tracker()
    update = tracker.device_update([], wrapped_identity_key=os.urandom(52))

    with pytest.raises(DecryptionError, match=r"device tracker-canonic-1: .* has 52 bytes"):
        decode_device_update(update, tracker.owner_key)


def test_undecryptable_report_among_good_ones_is_listed_in_skipped():
    tracker = Tracker()
    stranger = Tracker(owner_key=tracker.owner_key)
    good = Report("own", timestamp=1, latitude=1.0, longitude=1.0, status=LAST_KNOWN)
    bad = Report("own", timestamp=2, latitude=2.0, longitude=2.0, status=LAST_KNOWN)
    # Splice: a report sealed for the stranger's identity key inside the tracker's update.
    update = _splice_network_report(
        tracker.device_update([good, good]), stranger.device_update([bad]), index=1
    )

    decoded = decode_device_update(update, tracker.owner_key)

    assert [r.latitude for r in decoded.reports] == [1.0]
    assert decoded.skipped == ["network location 1: own report fails its authentication tag"]


def test_payload_that_is_not_a_device_update_is_malformed():
    with pytest.raises(MalformedUpdate, match="not a DeviceUpdate"):
        decode_device_update(b"\xff\xff\xff\xff", os.urandom(32))


def test_update_without_identity_key_is_malformed():
    with pytest.raises(MalformedUpdate, match="carries no encrypted identity key"):
        decode_device_update(b"", os.urandom(32))


def test_network_locations_without_their_timestamps_are_skipped_and_the_rest_kept():
    tracker = Tracker()
    reports = [
        Report("own", timestamp=1, latitude=1.0, status=LAST_KNOWN),
        Report("own", timestamp=2, latitude=2.0, status=LAST_KNOWN),
    ]
    recent = Report("own", timestamp=3, latitude=3.0, status=LAST_KNOWN)

    decoded = decode_device_update(
        tracker.device_update(reports, recent, network_timestamps=[1]), tracker.owner_key
    )

    assert [(r.latitude, r.timestamp) for r in decoded.reports] == [(1.0, 1), (3.0, 3)]
    assert decoded.skipped == ["network location 1: no timestamp (1 for 2 network locations)"]


def test_a_report_that_does_not_validate_costs_only_that_report():
    tracker = Tracker()
    # Decrypts, but its plaintext is no location (latitude beyond 90°).
    reports = [
        Report("own", timestamp=1, latitude=95.0, status=LAST_KNOWN),
        Report("own", timestamp=2, latitude=2.0, status=LAST_KNOWN),
    ]

    decoded = decode_device_update(tracker.device_update(reports), tracker.owner_key)

    assert [r.latitude for r in decoded.reports] == [2.0]
    assert len(decoded.skipped) == 1 and decoded.skipped[0].startswith("network location 0:")


def test_update_without_reports_decodes_to_nothing():
    tracker = Tracker()

    decoded = decode_device_update(tracker.device_update([]), tracker.owner_key)

    assert (decoded.reports, decoded.semantic, decoded.skipped) == ([], [], [])


def _splice_network_report(update: bytes, donor: bytes, *, index: int) -> bytes:
    """`update` with its network report `index` replaced by the donor's first one."""
    from shared.sources.google.proto import device_update_pb2 as pb

    target = pb.DeviceUpdate.FromString(update)
    source = pb.DeviceUpdate.FromString(donor)
    path = "device_metadata.information.location_information.reports.recent_and_network_locations"
    target_list = _walk(target, path).network_locations
    target_list[index].CopyFrom(_walk(source, path).network_locations[0])
    return target.SerializeToString()


def _walk(message, path: str):
    for name in path.split("."):
        message = getattr(message, name)
    return message
