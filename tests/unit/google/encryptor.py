"""Test-only encryptor for Google Find My Device reports, written from the math of PROTOCOLS.md §5.

No public test vectors exist, so the tests make their own: this module plays the tracker, the
finder phone and Google. It shares nothing with the decryptor (`shared.sources.google`) so a
round trip proves the decryptor rather than repeating it:

- the finder side of the ECDH: the finder draws s, sends x(S) with S = s·G and derives the secret
  as x(s·R) from the tracker's public R (the decryptor computes x(r·S)); all point arithmetic
  here is `ecdsa`'s;
- HKDF is pycryptodome's (the decryptor has its own on `hmac`);
- the DeviceUpdate and the plaintext are written with a tiny protobuf wire encoder below, from
  the field numbers of PROTOCOLS.md, not with the bridge's generated `_pb2` modules: decoding
  them proves the bridge's `.proto` field numbers too.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from dataclasses import dataclass, field

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF
from ecdsa.curves import SECP160r1

MCU_MODEL_ID = "003200"

SEMANTIC, LAST_KNOWN, CROWDSOURCED, AGGREGATED = 0, 1, 2, 3


# --- protobuf wire format -------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 go out as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def fixed32_field(number: int, packed: bytes) -> bytes:
    return _varint(number << 3 | 5) + packed


def plain_location(latitude: float, longitude: float, altitude: int) -> bytes:
    """The report plaintext: sfixed32 latitude = 1, sfixed32 longitude = 2, int32 altitude = 3."""
    return (
        fixed32_field(1, struct.pack("<i", round(latitude * 1e7)))
        + fixed32_field(2, struct.pack("<i", round(longitude * 1e7)))
        + varint_field(3, altitude)
    )


def time_message(seconds: int) -> bytes:
    return varint_field(1, seconds) + varint_field(2, 123_000_000)


# --- the cryptography -----------------------------------------------------------------------


def wrap_identity_key_gcm(identity_key: bytes, owner_key: bytes) -> bytes:
    """60 bytes: IV (12) ‖ AES-256-GCM ciphertext (32) ‖ tag (16)."""
    iv = os.urandom(12)
    ciphertext, tag = AES.new(owner_key, AES.MODE_GCM, nonce=iv).encrypt_and_digest(identity_key)
    return iv + ciphertext + tag


def wrap_identity_key_cbc(identity_key: bytes, owner_key: bytes) -> bytes:
    """48 bytes: IV (16) ‖ AES-256-CBC ciphertext without padding (32)."""
    iv = os.urandom(16)
    return iv + AES.new(owner_key, AES.MODE_CBC, iv=iv).encrypt(identity_key)


def invert_bits(blob: bytes) -> bytes:
    return bytes(255 - byte for byte in blob)


def encrypt_own_report(identity_key: bytes, plaintext: bytes) -> bytes:
    """IV (12) ‖ AES-GCM ciphertext ‖ tag (16), under SHA-256 of the identity key."""
    key = hashlib.sha256(identity_key).digest()
    iv = os.urandom(12)
    ciphertext, tag = AES.new(key, AES.MODE_GCM, nonce=iv).encrypt_and_digest(plaintext)
    return iv + ciphertext + tag


def tracker_scalar(identity_key: bytes, time_counter: int) -> int:
    """The tracker's private r for the rotation window holding `time_counter`."""
    window = struct.pack(">I", time_counter >> 10 << 10)
    block = bytes([0xFF] * 11 + [0x0A]) + window + bytes([0x00] * 11 + [0x0A]) + window
    return int.from_bytes(AES.new(identity_key, AES.MODE_ECB).encrypt(block), "big") % (
        SECP160r1.order
    )


def encrypt_crowdsourced_report(
    identity_key: bytes, plaintext: bytes, time_counter: int
) -> tuple[bytes, bytes]:
    """What a finder phone uploads: (x(S) as 20 bytes, EAX ciphertext ‖ tag)."""
    generator = SECP160r1.generator
    tracker_public = generator * tracker_scalar(identity_key, time_counter)  # R, advertised
    finder_secret = secrets.randbelow(SECP160r1.order - 1) + 1
    finder_public = generator * finder_secret  # S
    shared = (tracker_public * finder_secret).x()  # x(s·R) = x(r·S)
    key = HKDF(shared.to_bytes(20, "big"), 32, None, SHA256)
    finder_x = finder_public.x().to_bytes(20, "big")
    nonce = tracker_public.x().to_bytes(20, "big")[12:] + finder_x[12:]
    ciphertext, tag = AES.new(key, AES.MODE_EAX, nonce=nonce).encrypt_and_digest(plaintext)
    return finder_x, ciphertext + tag


# --- DeviceUpdate -----------------------------------------------------------------------------


@dataclass
class Report:
    """One report to put in a DeviceUpdate. `kind`: "own", "crowdsourced" or "semantic"."""

    kind: str
    timestamp: int
    latitude: float = 0.0
    longitude: float = 0.0
    altitude: int = 0
    accuracy: float = 10.0
    status: int = CROWDSOURCED
    is_own_report: bool = False
    time_offset: int = 0
    place: str = ""
    # The time counter the tracker used; None means time_offset (MCU trackers use 0).
    encrypt_time_counter: int | None = None

    def message(self, identity_key: bytes) -> bytes:
        if self.kind == "semantic":
            return bytes_field(5, bytes_field(1, self.place.encode())) + varint_field(11, SEMANTIC)
        plaintext = plain_location(self.latitude, self.longitude, self.altitude)
        if self.kind == "own":
            finder_x, ciphertext = b"", encrypt_own_report(identity_key, plaintext)
        else:
            counter = (
                self.time_offset if self.encrypt_time_counter is None else self.encrypt_time_counter
            )
            finder_x, ciphertext = encrypt_crowdsourced_report(identity_key, plaintext, counter)
        encrypted = (
            (bytes_field(1, finder_x) if finder_x else b"")
            + bytes_field(2, ciphertext)
            + varint_field(3, int(self.is_own_report))
        )
        geo = (
            bytes_field(1, encrypted)
            + varint_field(2, self.time_offset)
            + fixed32_field(3, struct.pack("<f", self.accuracy))
        )
        return bytes_field(10, geo) + varint_field(11, self.status)


@dataclass
class Tracker:
    """A tracker of the account: its keys and how Google stores the identity key."""

    owner_key: bytes = field(default_factory=lambda: os.urandom(32))
    identity_key: bytes = field(default_factory=lambda: os.urandom(32))
    wrap: str = "gcm"
    mcu: bool = False
    canonic_id: str = "tracker-canonic-1"
    name: str = "Keys"
    # An Android phone: its canonic id sits under phoneInformation (PROTOCOLS.md §5).
    phone: bool = False
    # encryptedUserSecrets.ownerKeyVersion (3): the version of the owner key that wraps the EIK.
    owner_key_version: int = 1

    def identifiers(self) -> bytes:
        """`DeviceMetadata.identifierInformation` (1) as Google writes it for this device."""
        canonic_ids = bytes_field(1, bytes_field(1, self.canonic_id.encode()))
        if self.phone:
            return bytes_field(1, bytes_field(2, canonic_ids)) + varint_field(2, 1)
        return varint_field(2, 2) + bytes_field(3, canonic_ids)

    def wrapped_identity_key(self) -> bytes:
        if self.wrap == "gcm":
            blob = wrap_identity_key_gcm(self.identity_key, self.owner_key)
        else:
            blob = wrap_identity_key_cbc(self.identity_key, self.owner_key)
        return invert_bits(blob) if self.mcu else blob

    def device_update(
        self,
        network: list[Report],
        recent: Report | None = None,
        *,
        request_uuid: str = "request-uuid-1",
        wrapped_identity_key: bytes | None = None,
        network_timestamps: list[int] | None = None,
    ) -> bytes:
        """A serialized DeviceUpdate, as the FCM push carries it (after base64 decoding)."""
        wrapped = (
            self.wrapped_identity_key() if wrapped_identity_key is None else wrapped_identity_key
        )
        registration = bytes_field(
            19, bytes_field(1, wrapped) + varint_field(3, self.owner_key_version)
        )
        registration += bytes_field(20, b"Acme")
        registration += bytes_field(21, (MCU_MODEL_ID if self.mcu else "a1b2c3").encode())
        stamps = (
            [r.timestamp for r in network] if network_timestamps is None else network_timestamps
        )
        locations = b""
        if recent is not None:
            locations += bytes_field(1, recent.message(self.identity_key))
            locations += bytes_field(2, time_message(recent.timestamp))
        for report in network:
            locations += bytes_field(5, report.message(self.identity_key))
        for stamp in stamps:
            locations += bytes_field(6, time_message(stamp))
        location_information = bytes_field(3, bytes_field(4, locations))
        information = bytes_field(1, registration) + bytes_field(2, location_information)
        metadata = (
            bytes_field(1, self.identifiers())
            + bytes_field(4, information)
            + bytes_field(5, self.name.encode())
        )
        fcm_metadata = varint_field(1, 2) + bytes_field(2, request_uuid.encode())
        return bytes_field(1, fcm_metadata) + bytes_field(3, metadata)
