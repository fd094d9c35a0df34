"""Decoding of a Find My Device `DeviceUpdate`: parse it, decrypt every report, normalise them.

Reports come in the order Google lists them: the network locations first (report i paired with
`network_location_timestamps[i]`), then the recent location (with its own timestamp).

Semantic reports (status SEMANTIC: a place name such as "Home", no coordinates) are returned
apart, in `DecodedUpdate.semantic`, and never as `GoogleReport`s or `Location`s: they must not
reach Traccar.

Failures: a payload that does not parse, or lacks the identity key, raises `MalformedUpdate`. A
key that does not decrypt raises `DecryptionError` naming the device. A report that fails to
decrypt or to validate, or a network location left without a timestamp (a timestamp list shorter
than the reports), is skipped and described in `DecodedUpdate.skipped`: one bad report costs
that report only. When reports failed to decrypt and none succeeded, the first failure is
raised, which is how a wrong owner key shows with a CBC-wrapped identity key.
"""

from __future__ import annotations

import math
import struct
from typing import Literal

from google.protobuf.message import DecodeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.models import Location, Source
from shared.sources.google import crypto
from shared.sources.google.client import canonic_id_of
from shared.sources.google.errors import DecryptionError, MalformedUpdate, OwnerKeyRefused
from shared.sources.google.proto import device_update_pb2 as pb

COORDINATE_SCALE = 1e7
# `reportType` of each status, as Traccar users read it; a report the owner's own devices made
# (`isOwnReport`) is "own" whatever its status.
REPORT_TYPES = {
    "CROWDSOURCED": "crowdsourced",
    "LAST_KNOWN": "lastKnown",
    "AGGREGATED": "aggregated",
}
_SEMANTIC = pb.LocationStatus.SEMANTIC
# Every report with coordinates goes to Traccar as a valid fix, LAST_KNOWN too: a report carries
# the time it was measured (PROTOCOLS.md §5), and Traccar places it at that time, so it is a
# true fix of that moment, unlike a parked car's or TLINK's console pin repeated at a delivery's
# time (those go `valid=false`). `reportType=lastKnown` lets a Traccar user tell it apart;
# `valid=false` would make a server with `filter.invalid` drop a phone's own fixes.
_FLOAT32_SIGNIFICANT_DIGITS = 9


class GoogleReport(BaseModel):
    """One decrypted location report, with the field names of the decode command's output."""

    model_config = ConfigDict(frozen=True)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude: int
    accuracy: float | None = Field(None, ge=0, description="metres")
    timestamp: int = Field(ge=0, description="epoch seconds")
    status: str
    is_own_report: bool

    def to_location(self, device_id: str, *, approximate_above: float | None = None) -> Location:
        """The pipeline's `Location`. Traccar gets what kind of report it was as attributes a
        user can filter on: `reportType` (not Traccar's own `status` key, which means something
        else there), and `approximate` for a crowd-sourced report less precise than
        `approximate_above` metres (Traccar's own key for an imprecise fix)."""
        report_type = (
            "own" if self.is_own_report else REPORT_TYPES.get(self.status, self.status.lower())
        )
        attributes: dict[str, str | bool] = {"reportType": report_type}
        if (
            approximate_above is not None
            and report_type == "crowdsourced"
            and self.accuracy is not None
            and self.accuracy > approximate_above
        ):
            attributes["approximate"] = True
        return Location(
            id=device_id,
            lat=self.latitude,
            lon=self.longitude,
            timestamp=self.timestamp,
            altitude=self.altitude,
            accuracy=self.accuracy,
            loc_status=self.status,
            is_own_report=self.is_own_report,
            source=Source.GOOGLE,
            attributes=attributes,
        )


class SemanticReport(BaseModel):
    """A report naming a place without coordinates; kept for logs, never sent to Traccar."""

    model_config = ConfigDict(frozen=True)

    name: str
    timestamp: int
    is_own_report: bool


class DecodedUpdate(BaseModel):
    """Everything the bridge takes from one `DeviceUpdate`."""

    request_uuid: str
    canonic_id: str | None
    name: str
    key_wrap: Literal["gcm", "cbc"]
    reports: list[GoogleReport]
    semantic: list[SemanticReport]
    skipped: list[str] = Field(default_factory=list, description="reports that did not decrypt")

    def locations(
        self, device_id: str | None = None, *, approximate_above: float | None = None
    ) -> list[Location]:
        """The reports as pipeline `Location`s of `device_id` (default: the update's canonic id)."""
        device = device_id or self.canonic_id
        if not device:
            raise MalformedUpdate("DeviceUpdate names no device: pass the device id")
        return [
            report.to_location(device, approximate_above=approximate_above)
            for report in self.reports
        ]


def parse_device_update(payload: bytes) -> pb.DeviceUpdate:
    try:
        return pb.DeviceUpdate.FromString(payload)
    except DecodeError as exc:
        raise MalformedUpdate(f"payload is not a DeviceUpdate protobuf: {exc}") from None


def owner_key_version(update: pb.DeviceUpdate) -> int:
    """The owner key version the update's identity key is wrapped with (0: not said)."""
    registration = update.device_metadata.information.registration
    return registration.encrypted_user_secrets.owner_key_version


def decode_device_update(
    update: bytes | pb.DeviceUpdate, owner_key: bytes, *, device_id: str | None = None
) -> DecodedUpdate:
    """Decrypt every report of a DeviceUpdate (serialized or parsed) with the account's owner key.

    `device_id` names the device in errors when the caller knows it (the canonic id it located);
    otherwise the update's own canonic id, then its user-defined name, are used.
    """
    message = parse_device_update(update) if isinstance(update, bytes) else update
    metadata = message.device_metadata
    canonic_id = canonic_id_of(metadata)  # a phone's sits under phoneInformation
    name = metadata.user_defined_name
    label = device_id or canonic_id or (f'"{name}"' if name else "(unidentified)")

    registration = metadata.information.registration
    wrapped = registration.encrypted_user_secrets.encrypted_identity_key
    if not wrapped:
        raise MalformedUpdate(f"DeviceUpdate of device {label} carries no encrypted identity key")
    mcu = crypto.is_mcu_tracker(registration.fast_pair_model_id)
    try:
        identity_key = crypto.decrypt_identity_key(wrapped, owner_key, mcu=mcu)
    except DecryptionError as exc:
        raise type(exc)(exc.message, device=label) from None
    key_wrap: Literal["gcm", "cbc"] = (
        "cbc" if len(wrapped) == crypto.CBC_WRAPPED_KEY_BYTES else "gcm"
    )
    decryptor = crypto.IdentityKeyDecryptor(identity_key)

    reports: list[GoogleReport] = []
    semantic: list[SemanticReport] = []
    ordered, failures = _reports_in_order(message)
    undecryptable: list[str] = []
    for position, report, timestamp in ordered:
        if report.status == _SEMANTIC:
            semantic.append(
                SemanticReport(
                    name=report.semantic_location.location_name,
                    timestamp=timestamp,
                    is_own_report=report.geo_location.encrypted_report.is_own_report,
                )
            )
            continue
        try:
            reports.append(_decrypt_report(decryptor, report, timestamp, mcu=mcu))
        except DecryptionError as exc:
            # One bad report costs that report only: the others are delivered.
            undecryptable.append(f"{position}: {exc.message}")
            failures.append(undecryptable[-1])
        except MalformedUpdate as exc:
            failures.append(f"{position}: {exc.message}")
    if undecryptable and not reports:
        if key_wrap == "cbc":
            # Without a tag on the wrap, a stale owner key shows here only.
            raise OwnerKeyRefused(
                f"no report decrypts ({undecryptable[0]}); {crypto.WRONG_OWNER_KEY_HINT}",
                device=label,
            )
        raise DecryptionError(f"no report decrypts ({undecryptable[0]})", device=label)
    return DecodedUpdate(
        request_uuid=message.fcm_metadata.request_uuid,
        canonic_id=canonic_id,
        name=name,
        key_wrap=key_wrap,
        reports=reports,
        semantic=semantic,
        skipped=failures,
    )


def _reports_in_order(
    message: pb.DeviceUpdate,
) -> tuple[list[tuple[str, pb.LocationReport, int]], list[str]]:
    """(position, report, timestamp) for each report, network locations first, then recent;
    and the network locations skipped for want of a timestamp (paired by index, so a shorter
    list leaves the last ones without: guessing their time would misdate them)."""
    information = message.device_metadata.information
    locations = information.location_information.reports.recent_and_network_locations
    network = locations.network_locations
    times = locations.network_location_timestamps
    ordered = [
        (f"network location {index}", report, times[index].seconds)
        for index, report in enumerate(network[: len(times)])
    ]
    skipped = [
        f"network location {index}: no timestamp ({len(times)} for {len(network)} network "
        "locations)"
        for index in range(len(times), len(network))
    ]
    if locations.HasField("recent_location"):
        recent_time = locations.recent_location_timestamp.seconds
        ordered.append(("recent location", locations.recent_location, recent_time))
    return ordered, skipped


def _decrypt_report(
    decryptor: crypto.IdentityKeyDecryptor, report: pb.LocationReport, timestamp: int, *, mcu: bool
) -> GoogleReport:
    geo = report.geo_location
    encrypted = geo.encrypted_report
    if not encrypted.encrypted_location:
        raise MalformedUpdate("report has no encrypted location")
    # The decryption path follows the finder key, not the is_own_report flag.
    if encrypted.public_key_random:
        time_counter = 0 if mcu else geo.device_time_offset
        plaintext = decryptor.decrypt_crowdsourced_report(
            encrypted.public_key_random, encrypted.encrypted_location, time_counter
        )
    else:
        plaintext = decryptor.decrypt_own_report(encrypted.encrypted_location)
    try:
        location = pb.PlainLocation.FromString(plaintext)
        return GoogleReport(
            latitude=location.latitude / COORDINATE_SCALE,
            longitude=location.longitude / COORDINATE_SCALE,
            altitude=location.altitude,
            accuracy=_float32_value(geo.accuracy),
            timestamp=timestamp,
            status=_status_name(report.status),
            is_own_report=encrypted.is_own_report,
        )
    except (DecodeError, ValidationError) as exc:
        raise MalformedUpdate(f"decrypted report is not a valid location: {exc}") from None


def _status_name(status: int) -> str:
    try:
        return pb.LocationStatus.Name(status)
    except ValueError:
        # An open proto3 enum: a status newer than this file keeps its number.
        return f"STATUS_{status}"


def _float32_value(value: float) -> float | None:
    """The shortest decimal that is the same float32: 12.3 rather than 12.300000190734863."""
    if not math.isfinite(value):
        return None
    packed = struct.pack("<f", value)
    for digits in range(1, _FLOAT32_SIGNIFICANT_DIGITS + 1):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value
