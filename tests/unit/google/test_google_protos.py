"""Our `.proto` files against the wire facts of PROTOCOLS.md §5, byte for byte.

The expected bytes are written with the test encryptor's hand-made wire encoder, from the field
numbers in PROTOCOLS.md (and the Nova ones of the official client), not from the `_pb2` modules.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import __version__ as protobuf_version

from shared.sources.google.proto import device_update_pb2 as pb
from shared.sources.google.proto import nova_pb2 as nova
from shared.sources.google.proto import spot_pb2 as spot
from tests.unit.google.encryptor import bytes_field, varint_field

SPOT_DEVICE = 2
FMDN_ALL_LOCATIONS = 2


def test_generated_modules_match_the_pinned_protobuf_runtime():
    # protobuf refuses gencode from another major version or newer than the runtime: regenerating
    # with a grpcio-tools ahead of the pinned protobuf would break the import in production.
    runtime = tuple(int(part) for part in protobuf_version.split(".")[:3])
    for module in (pb, nova, spot):
        header = Path(module.__file__).read_text().split("Protobuf Python Version: ")[1]
        gencode = tuple(int(part) for part in header.split()[0].split("."))
        assert gencode[0] == runtime[0]
        assert gencode <= runtime


def test_locate_request_has_the_official_field_numbers():
    request = nova.ExecuteActionRequest()
    request.scope.type = pb.SPOT_DEVICE
    request.scope.device.canonic_id.id = "canonic-1"
    request.action.locate_tracker.last_high_traffic_enabling_time.seconds = 1_732_120_060
    request.action.locate_tracker.contributor_type = nova.FMDN_ALL_LOCATIONS
    request.request_metadata.type = pb.SPOT_DEVICE
    request.request_metadata.request_uuid = "uuid-1"
    request.request_metadata.fmd_client_uuid = "client-1"
    request.request_metadata.fcm_registration.token = "fcm-token"
    request.request_metadata.unknown_flag = True

    scope = varint_field(2, SPOT_DEVICE) + bytes_field(
        3, bytes_field(1, bytes_field(1, b"canonic-1"))
    )
    locate = bytes_field(2, varint_field(1, 1_732_120_060)) + varint_field(3, FMDN_ALL_LOCATIONS)
    metadata = (
        varint_field(1, SPOT_DEVICE)
        + bytes_field(2, b"uuid-1")
        + bytes_field(3, b"client-1")
        + bytes_field(4, bytes_field(1, b"fcm-token"))
        + varint_field(6, 1)
    )
    expected = (
        bytes_field(1, scope) + bytes_field(2, bytes_field(30, locate)) + bytes_field(3, metadata)
    )
    assert request.SerializeToString() == expected


def test_device_list_request_has_the_official_field_numbers():
    request = nova.DevicesListRequest()
    request.payload.type = pb.SPOT_DEVICE
    request.payload.id = "list-uuid"

    expected = bytes_field(1, varint_field(1, SPOT_DEVICE) + bytes_field(3, b"list-uuid"))
    assert request.SerializeToString() == expected


def test_device_list_answer_yields_ids_names_and_models():
    registration = bytes_field(20, b"Chipolo") + bytes_field(34, b"ONE Point")
    device = (
        bytes_field(1, bytes_field(3, bytes_field(1, bytes_field(1, b"canonic-7"))))
        + bytes_field(4, bytes_field(1, registration))
        + bytes_field(5, b"Backpack")
        # A field this bridge does not declare: kept as unknown, not an error.
        + bytes_field(6, bytes_field(1, b"https://example.invalid/image.png"))
    )

    answer = nova.DevicesList.FromString(bytes_field(2, device))

    (metadata,) = answer.device_metadata
    assert [c.id for c in metadata.identifiers.canonic_ids.canonic_id] == ["canonic-7"]
    assert metadata.user_defined_name == "Backpack"
    assert metadata.information.registration.manufacturer == "Chipolo"
    assert metadata.information.registration.model == "ONE Point"
