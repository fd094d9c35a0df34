"""A local fake of Google's Spot API: `GetEidInfoForE2eeDevices`, HTTP/2 gRPC over plain TCP.

What it imitates, from PROTOCOLS.md §5 ("Owner key renewal", "Spot token"):

- `POST /google.internal.spot.v1.SpotService/GetEidInfoForE2eeDevices` over HTTP/2 (the fake
  speaks h2c with prior knowledge: the bridge's URL is `http://` here, TLS in production);
- headers `content-type: application/grpc`, `te: trailers`, `authorization: Bearer <spot token>`
  where the token is one `FakeGoogleAuth` issued for the Spot scope (`is_valid(token,
  SPOT_SCOPE)`); a Find My Device token does not do;
- the body is one gRPC message: a 5-byte frame header (0 = not compressed, then the big-endian
  length) and the request `{int32 ownerKeyVersion = 1 (-1: latest); bool hasOwnerKeyVersion =
  2}`, read by a wire reader of its own (no generated code is shared with the bridge);
- the answer is the framed response with field 4 `encryptedOwnerKeyAndMetadata {bytes
  encryptedOwnerKey = 1; int32 ownerKeyVersion = 2; string securityDomain = 3}`, then trailers
  `grpc-status: 0`. `encryptedOwnerKey` is the owner key under the account's `shared_key`,
  AES-256-GCM with a 12-byte IV first and the tag last.

Anything else gets a gRPC error as Google's front end answers it: HTTP 200 with the status in
trailers only (`grpc-status` 16 UNAUTHENTICATED for a missing or wrong token, 3
INVALID_ARGUMENT for a bad content type, missing `te: trailers` or a malformed frame, 12
UNIMPLEMENTED for another path, 5 NOT_FOUND for an owner key version it does not have).
`requests` records each request (`SpotRequest`): the version asked for and its headers.
`while_answering`, when set, is called once a valid request has arrived and before it is
answered: a test's way to make something happen while the bridge waits for the Spot API (a user
uploading new credentials in the middle of a renewal).

    spot = FakeSpot(auth, shared_key)
    spot.publish(1, owner_key)            # the account's owner keys, by version
    ... settings google_spot_url=spot.url ...
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes.google_auth import SPOT_SCOPE, FakeGoogleAuth
from tests.unit.google.encryptor import bytes_field, varint_field

HOST = "127.0.0.1"
GET_EID_INFO = "/google.internal.spot.v1.SpotService/GetEidInfoForE2eeDevices"
SECURITY_DOMAIN = "finder_hw"
OK, INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, UNAUTHENTICATED = 0, 3, 5, 12, 16
_INT32_SIGN = 1 << 31


@dataclass(frozen=True)
class SpotRequest:
    version: int | None  # the ownerKeyVersion asked for (-1: latest); None when not said
    headers: dict[str, str]


def _varint_fields(data: bytes) -> dict[int, int]:
    """The varint fields of a message (the request has no others); `ValueError` otherwise."""
    fields: dict[int, int] = {}
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        if key & 7 != 0:
            raise ValueError(f"field {key >> 3} is not a varint")
        fields[key >> 3], position = _varint(data, position)
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _int32(value: int) -> int:
    """A varint read as protobuf's int32 (negative numbers come as ten-byte varints)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & _INT32_SIGN else value


class FakeSpot:
    def __init__(self, auth: FakeGoogleAuth, shared_key: bytes) -> None:
        self._auth = auth
        self.shared_key = shared_key
        self._owner_keys: dict[int, bytes] = {}
        self.requests: list[SpotRequest] = []
        self.while_answering: Callable[[], object] | None = None
        self._lock = threading.Lock()
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                # The client went away, or spoke something else than HTTP/2.
                with contextlib.suppress(OSError, h2.exceptions.ProtocolError):
                    fake._serve(self.request)

        # Bound at once, so that `url` is known before `start()` (settings are made early).
        self._server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def publish(self, version: int, owner_key: bytes) -> None:
        """The account's owner key of `version` (the highest is the latest)."""
        with self._lock:
            self._owner_keys[version] = owner_key

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    # --- one call -------------------------------------------------------------------------

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        """(grpc-status, grpc-message, the response message) for one request."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if headers.get(":method") != "POST" or headers.get(":path") != GET_EID_INFO:
            return UNIMPLEMENTED, "unknown method", b""
        if not headers.get("content-type", "").startswith("application/grpc"):
            return INVALID_ARGUMENT, "content-type must be application/grpc", b""
        if headers.get("te") != "trailers":
            return INVALID_ARGUMENT, "te: trailers is required", b""
        if scheme != "Bearer" or not self._auth.is_valid(token, SPOT_SCOPE):
            return UNAUTHENTICATED, "a Spot API token is required", b""
        if len(body) < 5 or body[0] != 0 or struct.unpack(">I", body[1:5])[0] != len(body) - 5:
            return INVALID_ARGUMENT, "not one uncompressed gRPC message", b""
        try:
            fields = _varint_fields(body[5:])
        except ValueError as exc:
            return INVALID_ARGUMENT, f"malformed request: {exc}", b""
        asked = _int32(fields[1]) if 1 in fields else None
        with self._lock:
            self.requests.append(SpotRequest(asked, dict(headers)))
        if self.while_answering is not None:
            self.while_answering()
        with self._lock:
            keys = dict(self._owner_keys)
        if not fields.get(2) or asked is None or asked == -1:
            version = max(keys, default=None)
        else:
            version = asked if asked in keys else None
        if version is None:
            return NOT_FOUND, "no such owner key version", b""
        iv = os.urandom(12)
        encrypted = iv + AESGCM(self.shared_key).encrypt(iv, keys[version], None)
        metadata = (
            bytes_field(1, encrypted)
            + varint_field(2, version)
            + bytes_field(3, SECURITY_DOMAIN.encode())
        )
        return OK, "", bytes_field(4, metadata)

    # --- HTTP/2 -----------------------------------------------------------------------------

    def _serve(self, connection: socket.socket) -> None:
        h2_connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        h2_connection.initiate_connection()
        connection.sendall(h2_connection.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        while True:
            data = connection.recv(65_536)
            if not data:
                return
            for event in h2_connection.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = {str(k): str(v) for k, v in event.headers}
                    streams[event.stream_id] = (headers, bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id][1].extend(event.data)
                    h2_connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded):
                    headers, body = streams.pop(event.stream_id)
                    self._respond(h2_connection, event.stream_id, headers, bytes(body))
                elif isinstance(event, h2.events.ConnectionTerminated):
                    connection.sendall(h2_connection.data_to_send())
                    return
            connection.sendall(h2_connection.data_to_send())

    def _respond(
        self,
        h2_connection: h2.connection.H2Connection,
        stream_id: int,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        status, message, answer = self.answer(headers, body)
        response_headers = [(":status", "200"), ("content-type", "application/grpc")]
        trailers = [("grpc-status", str(status)), ("grpc-message", message)]
        if status != OK:  # trailers-only: the status in the one HEADERS frame
            h2_connection.send_headers(stream_id, response_headers + trailers, end_stream=True)
            return
        h2_connection.send_headers(stream_id, response_headers)
        h2_connection.send_data(stream_id, b"\x00" + struct.pack(">I", len(answer)) + answer)
        h2_connection.send_headers(stream_id, trailers, end_stream=True)

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="FakeSpot", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
