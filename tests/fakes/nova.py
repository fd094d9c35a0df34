"""Local fakes of Google's Find My Device back end: the Nova API and FCM's MCS endpoint.

`FakeNova` (HTTP) answers `nbe_list_devices` with the account's trackers and
`nbe_execute_action` (a locate) with an empty 200, then has `FakeMcs` push the tracker's
`DeviceUpdate` to the FCM token the request names, as Google does. It reads the requests with
a tiny protobuf wire reader of its own and writes the answers with the test encryptor's wire
writer (`tests.unit.google.encryptor`), from PROTOCOLS.md's field numbers: it shares no
generated code with the bridge, so a wrong field number in our `.proto` shows.
Requests need `Authorization: Bearer <token>` with a token `FakeGoogleAuth` issued (401
otherwise), the form content type and Google's user agent (400 otherwise).

Throttling (PROTOCOLS.md §5, Nova: "Retry 429/5xx with exponential backoff"; "Pacing": many
locates at once risk Nova's 429): `throttle(times, retry_after=None)` answers the next `times`
requests 429, with a `Retry-After` header (seconds) when given; `answered_at` records when
each request came (time.monotonic()), throttled or not, so a test can see the client waited.

Ringing (PROTOCOLS.md §5, "Ringing a tracker"): `nbe_execute_action` with the action's field 31
`startSound` or 32 `stopSound` instead of 30 `locateTracker`, each `{DeviceComponent component =
1}` (0 unspecified; 1 right, 2 left, 3 case). The fake checks what the section lists: scope
SPOT_DEVICE with a canonic id, request metadata with a `requestUuid` and the FCM registration
token, exactly one of fields 30/31/32 in the action, and a component in 0..3; anything else is a
400. A request it takes is recorded in `sounds` (a `SoundRequest`) and answered an empty 200;
a canonic id the account does not have is a 404 ("Nova's HTTP answer says whether it took the
request"). No push follows: any that would is informational only.

Semantic reports (PROTOCOLS.md §5, "Semantic reports" and "Decryption chain": status 0 with
`semanticLocation` (5) → `locationName` (1), no coordinates): a tracker's `network`/`recent`
may hold `Report("semantic", place=...)`, written by the test encryptor like any other report.

Silent trackers (PROTOCOLS.md §5, "Known failures": a locate answering nothing, no reports or a
tracker set to high-traffic areas only): a `FakeTracker` with `answers=False` takes the locate
(200) and no push ever follows.

`FakeMcs` is MCS (`mtalk.google.com:5228`) over TLS: a login (`LoginRequest`, tag 2) with a
registered android_id and security token is answered `LoginResponse`; a push is a
`DataMessageStanza` whose `raw_data` is Web-Push "aesgcm" encrypted for the registration's
keys, with `crypto-key: dh=`, `encryption: salt=` and `subtype` app data. The encryption is
written here from the aesgcm draft with `cryptography` (ECDH P-256, HKDF-SHA256, AES-128-GCM,
two-byte padding length), independently of `http_ece`, which decrypts on the bridge's side.
Pushes wait for the client (FCM stores them) and are sent again at the next login until
acknowledged (`SelectiveAck` in an `IqStanza`). A second login with the same android_id cuts
the first session, as MCS does. Heartbeat pings are answered.

Phones (PROTOCOLS.md §5, "Android phones"): a `FakeTracker` with `phone=True` is listed with
`identifierInformation.type` = IDENTIFIER_ANDROID (1) and its canonic id under
`phoneInformation` (1) → `canonicIds` (2) → `canonicId` (1) → `id` (1), nothing in field 3;
trackers are listed with type IDENTIFIER_SPOT (2) and their ids in `canonicIds` (3). Phones are
located with the same action and answer like trackers.

GCM check-in (PROTOCOLS.md §5, "GCM check-in"): `FakeMcs.checkin_gate` (set by `FakeGoogle` to
`FakeGoogleAuth.checked_in_since`) refuses a login unless the android_id checked in since its
previous login, as every working client checks in before each MCS login.

A dead GCM registration (PROTOCOLS.md §5, "Known failures": MCS refusing, the stored
android_id/security_token no longer known): `FakeMcs.refuse_logins()` refuses every login,
counted in `refused_logins`, until `refuse_logins(False)`.

Owner key rotation (PROTOCOLS.md §5, "Owner key renewal": an end-to-end-encryption reset moves
the owner key on; "Known failures": `InvalidTag` with a stale owner key):
`FakeGoogle.rotate_owner_key()` wraps every tracker's identity key with a new owner key from
then on, and writes its version (one more) in `encryptedUserSecrets.ownerKeyVersion`; the
secrets.json made before keeps the old one. The account's Spot API (`tests/fakes/spot.py`,
`FakeGoogle.spot`) serves every version of the owner key, encrypted under the `shared_key`.
`FakeGoogle.rewrap_owner_key()` moves the version on while the key stays (Google rewrapping:
the issue 14 point 4 case): every update names the new version, the identity keys still unwrap
under the stored key, and the Spot API serves the same key under the new version. Only the
version (PROTOCOLS.md §5, "Owner key renewal": `ownerKeyVersion` beside `encryptedIdentityKey`,
the current key and its version from `GetEidInfoForE2eeDevices`) says that anything changed.

Several accounts (issue 17, point 1): `FakeGoogle.add_account(username)` adds a `FakeAccount`
with its own AAS token, GCM/FCM registration and owner key, served by the same fakes. Each
access token is minted for the `Email` of its OAuth request (PROTOCOLS.md §5, OAuth), and Nova
answers for the bearer's account: `nbe_list_devices` lists that account's devices only, and a
locate or sound for another account's canonic id is a 404 (as for any id the account does not
have). A tracker added without an owner is every account's (the one-account tests' default).

`FakeGoogle` puts the three together (with `FakeGoogleAuth`) for one account and makes its
`secrets.json`; `ca_file` is the CA the MCS certificate chains to (tests export it as
`SSL_CERT_FILE`, which the library's default TLS context reads).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from firebase_messaging.proto import mcs_pb2

from tests.fakes.google_auth import FakeGoogleAuth
from tests.fakes.osmand import HOST, FakeHttpServer, HttpRequest, HttpResponse
from tests.fakes.spot import FakeSpot
from tests.unit.google.encryptor import Report, Tracker, bytes_field

FCM_PAYLOAD_KEY = "com.google.android.apps.adm.FCM_PAYLOAD"
MCS_VERSION = 41
TAG_HEARTBEAT_PING, TAG_HEARTBEAT_ACK, TAG_LOGIN_REQUEST, TAG_LOGIN_RESPONSE = 0, 1, 2, 3
TAG_CLOSE, TAG_IQ_STANZA, TAG_DATA_MESSAGE = 4, 7, 8
SELECTIVE_ACK_EXTENSION = 12
SPOT_DEVICE = 2
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
NOVA_USER_AGENT = "fmd/20006320; gzip"


# --- protobuf wire reading ------------------------------------------------------------------


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def read_fields(data: bytes) -> dict[int, list[Any]]:
    """Field number → values (ints for varints, bytes for length-delimited)."""
    fields: dict[int, list[Any]] = {}
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire_type == 5:
            value, position = data[position : position + 4], position + 4
        elif wire_type == 1:
            value, position = data[position : position + 8], position + 8
        else:
            raise ValueError(f"wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def _path(data: bytes, *numbers: int) -> Any:
    """The first value at a path of field numbers, or None."""
    value: Any = data
    for number in numbers:
        values = read_fields(value).get(number)
        if not values:
            return None
        value = values[0]
    return value


# --- keys, certificates, Web-Push encryption --------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _raw_public(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def aesgcm_encrypt(
    plaintext: bytes, receiver_public: bytes, auth_secret: bytes
) -> tuple[bytes, bytes, bytes]:
    """Web-Push "aesgcm": (ciphertext, salt, sender public key), one record."""
    sender = ec.generate_private_key(ec.SECP256R1())
    sender_public = _raw_public(sender.public_key())
    receiver = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), receiver_public)
    shared = sender.exchange(ec.ECDH(), receiver)
    salt = os.urandom(16)
    ikm = _hkdf(auth_secret, shared, b"Content-Encoding: auth\x00", 32)
    context = (
        b"P-256\x00"
        + len(receiver_public).to_bytes(2, "big")
        + receiver_public
        + len(sender_public).to_bytes(2, "big")
        + sender_public
    )
    key = _hkdf(salt, ikm, b"Content-Encoding: aesgcm\x00" + context, 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00" + context, 12)
    record = (0).to_bytes(2, "big") + plaintext  # two-byte padding length, no padding
    return AESGCM(key).encrypt(nonce, record, None), salt, sender_public


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer_key: Any, issuer: str, public: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("fake-mcs-ca", ca_key, "fake-mcs-ca", ca_key.public_key(), True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = build("localhost", ca_key, "fake-mcs-ca", server_key.public_key(), False)
    paths = directory / "mcs-ca.pem", directory / "mcs-cert.pem", directory / "mcs-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class FcmIdentity:
    """One FCM registration of the account: GCM check-in, FCM token, Web-Push keys."""

    android_id: str = field(default_factory=lambda: str(secrets.randbits(62) | 1 << 62))
    security_token: str = field(default_factory=lambda: str(secrets.randbits(63)))
    app_id: str = field(default_factory=lambda: f"wp:receiver.push.com#{secrets.token_hex(8)}")
    token: str = field(default_factory=lambda: "fcm:" + secrets.token_urlsafe(32))
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))
    installation_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    installation_expires_in: int = 604_800
    # Kept as made, so that every secrets.json of this identity is the same document.
    gcm_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    refresh_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    fid: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def public_raw(self) -> bytes:
        return _raw_public(self.private_key.public_key())

    def fcm_credentials(self) -> dict[str, Any]:
        """As firebase-messaging's registration writes them (GoogleFindMyTools stores them)."""
        private = self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "keys": {
                "public": _b64url(self.public_raw),
                "private": _b64url(private),
                "secret": _b64url(self.auth_secret),
            },
            "gcm": {
                "token": self.gcm_token,
                "app_id": self.app_id,
                "android_id": self.android_id,
                "security_token": self.security_token,
            },
            "fcm": {
                "registration": {"name": "projects/x/registrations/y", "token": self.token},
                "installation": {
                    "token": self.installation_token,
                    "expires_in": self.installation_expires_in,
                    "refresh_token": self.refresh_token,
                    "fid": self.fid,
                    "created_at": 12345.6,
                },
            },
            "config": {"bundle_id": "receiver.push.com", "project_id": "x", "vapid_key": None},
        }


# --- MCS ------------------------------------------------------------------------------------


def _frame(tag: int, message: Any, *, first: bool = False) -> bytes:
    body = message.SerializeToString()
    size = len(body)
    length = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return (bytes([MCS_VERSION]) if first else b"") + bytes([tag]) + bytes(length) + body


_MESSAGES = {
    TAG_HEARTBEAT_PING: mcs_pb2.HeartbeatPing,
    TAG_HEARTBEAT_ACK: mcs_pb2.HeartbeatAck,
    TAG_LOGIN_REQUEST: mcs_pb2.LoginRequest,
    TAG_CLOSE: mcs_pb2.Close,
    TAG_IQ_STANZA: mcs_pb2.IqStanza,
}


@dataclass
class _Session:
    android_id: str
    writer: asyncio.StreamWriter


class FakeMcs:
    """MCS over TLS on 127.0.0.1 (see the module docstring)."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(cert_file, key_file)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._identities: dict[str, FcmIdentity] = {}  # by android_id
        self._sessions: dict[str, _Session] = {}
        self._pending: dict[str, list[mcs_pb2.DataMessageStanza]] = {}
        self.logins: list[tuple[float, str]] = []  # (time.monotonic(), android_id)
        self.refused_logins = 0
        self.displaced = 0
        self.acked: list[str] = []
        self.port = 0
        # (android_id, since) -> checked in since then? None: no check-in required.
        self.checkin_gate: Callable[[str, float], bool] | None = None
        self._last_login: dict[str, float] = {}
        self._refuse_logins = False

    def refuse_logins(self, refuse: bool = True) -> None:
        self._refuse_logins = refuse

    def register(self, identity: FcmIdentity) -> None:
        self._identities[identity.android_id] = identity

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, HOST, 0, ssl=self._ssl)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="FakeMcs", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        """Stop listening and cut the sessions (connections are refused from then on)."""
        if self._thread is None:
            return
        self._thread, thread = None, self._thread

        async def shutdown() -> None:
            for session in list(self._sessions.values()):
                session.writer.close()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, fcm_token: str, data: dict[str, Any]) -> None:
        """Send `data` to the registration `fcm_token` (now, or at its next login)."""
        asyncio.run_coroutine_threadsafe(self._push(fcm_token, data), self._loop).result(5)

    async def _push(self, fcm_token: str, data: dict[str, Any]) -> None:
        identity = next((i for i in self._identities.values() if i.token == fcm_token), None)
        if identity is None:
            return  # an unknown registration: FCM drops it
        ciphertext, salt, sender = aesgcm_encrypt(
            json.dumps(data).encode(), identity.public_raw, identity.auth_secret
        )
        stanza = mcs_pb2.DataMessageStanza(
            id=secrets.token_hex(4),
            persistent_id="0:" + secrets.token_hex(12),
            category="org.chromium.linux",
            raw_data=ciphertext,
            sent=int(time.time()),
            ttl=2_419_200,
            token="fcm",
            device_user_id=0,
        )
        setattr(stanza, "from", "289722593072")
        for key, value in (
            ("crypto-key", "dh=" + _b64url(sender)),
            ("encryption", "salt=" + _b64url(salt)),
            ("subtype", identity.app_id),
        ):
            stanza.app_data.add(key=key, value=value)
        self._pending.setdefault(identity.android_id, []).append(stanza)
        session = self._sessions.get(identity.android_id)
        if session is not None:
            await self._send(session.writer, TAG_DATA_MESSAGE, stanza)

    async def _send(self, writer: asyncio.StreamWriter, tag: int, message: Any) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(_frame(tag, message))
            await writer.drain()

    async def _read(self, reader: asyncio.StreamReader, *, first: bool) -> tuple[int, bytes]:
        header = await reader.readexactly(2 if first else 1)
        if first and header[0] != MCS_VERSION:
            raise ValueError(f"MCS version {header[0]}")
        size = shift = 0
        while True:
            byte = (await reader.readexactly(1))[0]
            size |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        return header[-1], await reader.readexactly(size)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session: _Session | None = None
        try:
            tag, body = await self._read(reader, first=True)
            login = mcs_pb2.LoginRequest.FromString(body) if tag == TAG_LOGIN_REQUEST else None
            identity = self._identities.get(login.user) if login is not None else None
            if (
                self._refuse_logins
                or login is None
                or identity is None
                or login.auth_token != identity.security_token
                or login.device_id != f"android-{int(identity.android_id):x}"
                or (
                    self.checkin_gate is not None
                    and not self.checkin_gate(
                        identity.android_id, self._last_login.get(identity.android_id, 0.0)
                    )
                )
            ):
                self.refused_logins += 1
                return
            self._last_login[identity.android_id] = time.monotonic()
            previous = self._sessions.get(identity.android_id)
            if previous is not None:
                self.displaced += 1
                previous.writer.close()
            session = self._sessions[identity.android_id] = _Session(identity.android_id, writer)
            self.logins.append((time.monotonic(), identity.android_id))
            response = mcs_pb2.LoginResponse(id=login.id, server_timestamp=int(time.time() * 1000))
            writer.write(_frame(TAG_LOGIN_RESPONSE, response, first=True))
            for stanza in list(self._pending.get(identity.android_id, [])):
                writer.write(_frame(TAG_DATA_MESSAGE, stanza))
            await writer.drain()
            while True:
                tag, body = await self._read(reader, first=False)
                if tag == TAG_HEARTBEAT_PING:
                    await self._send(writer, TAG_HEARTBEAT_ACK, mcs_pb2.HeartbeatAck())
                elif tag == TAG_IQ_STANZA:
                    self._acknowledge(identity.android_id, mcs_pb2.IqStanza.FromString(body))
                elif tag == TAG_CLOSE:
                    return
                elif tag not in _MESSAGES:
                    raise ValueError(f"unexpected MCS tag {tag}")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            return
        finally:
            if session is not None and self._sessions.get(session.android_id) is session:
                del self._sessions[session.android_id]
            writer.close()

    def _acknowledge(self, android_id: str, stanza: mcs_pb2.IqStanza) -> None:
        if stanza.extension.id != SELECTIVE_ACK_EXTENSION:
            return
        acked = set(mcs_pb2.SelectiveAck.FromString(stanza.extension.data).id)
        self.acked.extend(sorted(acked))
        self._pending[android_id] = [
            s for s in self._pending.get(android_id, []) if s.persistent_id not in acked
        ]


# --- Nova -----------------------------------------------------------------------------------


@dataclass
class FakeTracker:
    """A tracker of the fake account and what Google answers when it is located."""

    tracker: Tracker
    network: list[Report] = field(default_factory=list)
    recent: Report | None = None
    model: str = "Acme Tag"
    answers: bool = True
    delay: float = 0.0
    # The network locations' timestamps when not one per report (a shorter list: §5 "Details
    # that trip decoders", paired by index).
    network_timestamps: list[int] | None = None

    @property
    def phone(self) -> bool:
        return self.tracker.phone


@dataclass(frozen=True)
class LocateRequest:
    canonic_id: str
    request_uuid: str
    fcm_token: str
    contributor_type: int
    at: float  # time.monotonic()


SOUND_ACTIONS = {31: "start", 32: "stop"}
LOCATE_ACTION = 30
DEVICE_COMPONENTS = range(4)  # unspecified, right, left, case


@dataclass(frozen=True)
class SoundRequest:
    canonic_id: str
    action: str  # "start" or "stop"
    component: int
    request_uuid: str
    fcm_token: str


class FakeNova(FakeHttpServer):
    def __init__(self, auth: FakeGoogleAuth, mcs: FakeMcs, *, port: int = 0) -> None:
        super().__init__(port=port)
        self._auth = auth
        self._mcs = mcs
        self.trackers: dict[str, FakeTracker] = {}
        self.owners: dict[str, str] = {}  # canonic id -> the account (email) that has it
        self.locates: list[LocateRequest] = []
        self.sounds: list[SoundRequest] = []
        self._timers: list[threading.Timer] = []
        self._throttle: list[int | None] = []
        self.answered_at: list[tuple[float, int]] = []  # (time.monotonic(), status)

    def throttle(self, times: int = 1, *, retry_after: int | None = None) -> None:
        """Answer the next `times` requests 429 (with `Retry-After` seconds when given)."""
        self._throttle.extend([retry_after] * times)

    @property
    def nova_url(self) -> str:
        return f"{self.url}/nova"

    def add(self, tracker: FakeTracker, *, owner: str | None = None) -> None:
        self.trackers[tracker.tracker.canonic_id] = tracker
        if owner is not None:
            self.owners[tracker.tracker.canonic_id] = owner

    def _visible(self, canonic_id: str, email: str | None) -> bool:
        owner = self.owners.get(canonic_id)
        return canonic_id in self.trackers and (owner is None or owner == email)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        super().stop()

    def handle(self, request: HttpRequest) -> HttpResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not self._auth.is_valid(token):
            return HttpResponse(401, b"Unauthorized")
        if (
            request.headers.get("content-type") != FORM_CONTENT_TYPE
            or request.headers.get("user-agent") != NOVA_USER_AGENT
        ):
            return HttpResponse(400, b"Bad Request")
        if self._throttle:
            retry_after = self._throttle.pop(0)
            self.answered_at.append((time.monotonic(), 429))
            return HttpResponse(
                429,
                b"Too Many Requests",
                headers=(("Retry-After", str(retry_after)),) if retry_after is not None else (),
            )
        self.answered_at.append((time.monotonic(), 200))
        email = self._auth.email_of(token)
        if request.method == "POST" and request.target == "/nova/nbe_list_devices":
            return self._list_devices(request.body, email)
        if request.method == "POST" and request.target == "/nova/nbe_execute_action":
            canonic_id = (_path(request.body, 1, 3, 1, 1) or b"").decode()
            if canonic_id and canonic_id in self.trackers and not self._visible(canonic_id, email):
                return HttpResponse(404, b"Not Found")  # another account's device
            return self._execute_action(request.body)
        return HttpResponse(404, b"Not Found")

    def _list_devices(self, body: bytes, email: str | None = None) -> HttpResponse:
        if _path(body, 1, 1) != SPOT_DEVICE:
            return HttpResponse(400, b"Bad Request")
        return HttpResponse(200, self.device_list(email), "application/x-protobuf")

    def device_list(self, email: str | None = None) -> bytes:
        """The serialized `nbe_list_devices` answer for the account's devices (`email`'s, when
        several accounts own trackers)."""
        answer = b""
        for canonic_id, fake in self.trackers.items():
            if not self._visible(canonic_id, email):
                continue
            tracker = fake.tracker
            identifiers = tracker.identifiers()
            registration = bytes_field(34, fake.model.encode())
            metadata = (
                bytes_field(1, identifiers)
                + bytes_field(4, bytes_field(1, registration))
                + bytes_field(5, tracker.name.encode())
            )
            answer += bytes_field(2, metadata)
        return answer

    def _execute_action(self, body: bytes) -> HttpResponse:
        canonic_id = (_path(body, 1, 3, 1, 1) or b"").decode()
        request_uuid = (_path(body, 3, 2) or b"").decode()
        fcm_token = (_path(body, 3, 4, 1) or b"").decode()
        if _path(body, 1, 2) != SPOT_DEVICE or not request_uuid or not fcm_token:
            return HttpResponse(400, b"Bad Request")
        action = read_fields(_path(body, 2) or b"")
        kinds = [number for number in (LOCATE_ACTION, *SOUND_ACTIONS) if number in action]
        if len(kinds) != 1 or not canonic_id:
            return HttpResponse(400, b"Bad Request")
        if kinds[0] in SOUND_ACTIONS:
            return self._sound(
                canonic_id, SOUND_ACTIONS[kinds[0]], action[kinds[0]][0], request_uuid, fcm_token
            )
        self.locates.append(
            LocateRequest(
                canonic_id,
                request_uuid,
                fcm_token,
                _path(body, 2, 30, 3) or 0,
                time.monotonic(),
            )
        )
        fake = self.trackers.get(canonic_id)
        if fake is None:
            return HttpResponse(404, b"Not Found")
        if fake.answers:
            update = fake.tracker.device_update(
                fake.network,
                fake.recent,
                request_uuid=request_uuid,
                network_timestamps=fake.network_timestamps,
            )
            data = {
                "data": {FCM_PAYLOAD_KEY: base64.b64encode(update).decode()},
                "from": "289722593072",
                "priority": "high",
                "fcmMessageId": secrets.token_hex(8),
            }
            timer = threading.Timer(fake.delay, self._mcs.push, (fcm_token, data))
            self._timers.append(timer)
            timer.start()
        return HttpResponse(200, b"", "application/x-protobuf")

    def _sound(
        self, canonic_id: str, action: str, sound: bytes, request_uuid: str, fcm_token: str
    ) -> HttpResponse:
        """`startSound`/`stopSound` (see the module docstring): checked, recorded, answered."""
        fields = read_fields(sound)
        component = fields.get(1, [0])[0]
        if set(fields) - {1} or not isinstance(component, int):
            return HttpResponse(400, b"Bad Request")
        if component not in DEVICE_COMPONENTS:
            return HttpResponse(400, b"Bad Request")
        if canonic_id not in self.trackers:
            return HttpResponse(404, b"Not Found")
        self.sounds.append(SoundRequest(canonic_id, action, component, request_uuid, fcm_token))
        return HttpResponse(200, b"", "application/x-protobuf")


# --- the whole account --------------------------------------------------------------------------


class FakeAccount:
    """A further Google account on `FakeGoogle`'s servers: its own AAS token, GCM/FCM
    registration (check-in, MCS login, Web-Push keys), owner key and trackers (see the module
    docstring, "Several accounts")."""

    def __init__(self, google: FakeGoogle, username: str) -> None:
        self.username = username
        self.aas_token = "aas_et/" + secrets.token_urlsafe(48)
        self.owner_key = os.urandom(32)
        self.shared_key = os.urandom(32)
        self.identity = FcmIdentity()
        self._nova = google.nova
        google.auth.add_account(username, self.aas_token, self.identity.android_id)
        google.auth.add_device(self.identity.android_id, self.identity.security_token)
        google.mcs.register(self.identity)

    def add_tracker(self, canonic_id: str, name: str, **options: Any) -> FakeTracker:
        fake = FakeTracker(
            Tracker(owner_key=self.owner_key, canonic_id=canonic_id, name=name), **options
        )
        self._nova.add(fake, owner=self.username)
        return fake

    def secrets(self) -> dict[str, Any]:
        return {
            "aas_token": self.aas_token,
            "username": self.username,
            "fcm_credentials": self.identity.fcm_credentials(),
            "owner_key": self.owner_key.hex(),
            "shared_key": self.shared_key.hex(),
        }


class FakeGoogle:
    """One Google account: OAuth, Nova and MCS fakes, its trackers and its secrets.json."""

    def __init__(self, directory: Path, trackers: int = 1) -> None:
        self.username = "owner@example.com"
        self.aas_token = "aas_et/" + secrets.token_urlsafe(48)
        self.owner_key = os.urandom(32)
        self.owner_key_version = 1
        self.shared_key = os.urandom(32)
        self.identity = FcmIdentity()
        self.ca_file, cert, key = make_ca_and_certificate(directory)
        self.auth = FakeGoogleAuth()
        self.mcs = FakeMcs(cert, key)
        self.nova = FakeNova(self.auth, self.mcs)
        self.spot = FakeSpot(self.auth, self.shared_key)
        self.spot.publish(self.owner_key_version, self.owner_key)
        self.auth.add_account(self.username, self.aas_token, self.identity.android_id)
        self.auth.add_device(self.identity.android_id, self.identity.security_token)
        self.mcs.register(self.identity)
        self.mcs.checkin_gate = self.auth.checked_in_since
        self.trackers = [self.add_tracker(f"canonic-{n}", f"Tracker {n}") for n in range(trackers)]

    def rotate_owner_key(self) -> bytes:
        """A new owner key wraps every tracker's identity key from now on (see the module doc)."""
        self.owner_key = os.urandom(32)
        self.owner_key_version += 1
        self.spot.publish(self.owner_key_version, self.owner_key)
        for fake in self.nova.trackers.values():
            fake.tracker.owner_key = self.owner_key
            fake.tracker.owner_key_version = self.owner_key_version
        return self.owner_key

    def rewrap_owner_key(self) -> None:
        """A new owner key version holding the same key (see the module docstring)."""
        self.owner_key_version += 1
        self.spot.publish(self.owner_key_version, self.owner_key)
        for fake in self.nova.trackers.values():
            fake.tracker.owner_key_version = self.owner_key_version

    def add_tracker(self, canonic_id: str, name: str, **options: Any) -> FakeTracker:
        fake = FakeTracker(
            Tracker(
                owner_key=self.owner_key,
                owner_key_version=self.owner_key_version,
                canonic_id=canonic_id,
                name=name,
            ),
            **options,
        )
        self.nova.add(fake, owner=self.username)
        return fake

    def add_phone(self, canonic_id: str, name: str, **options: Any) -> FakeTracker:
        """An Android phone of the account: listed and located like a tracker."""
        options.setdefault("model", "Pixel 8")
        fake = FakeTracker(
            Tracker(
                owner_key=self.owner_key,
                owner_key_version=self.owner_key_version,
                canonic_id=canonic_id,
                name=name,
                phone=True,
            ),
            **options,
        )
        self.nova.add(fake, owner=self.username)
        return fake

    def secrets(self) -> dict[str, Any]:
        return {
            "aas_token": self.aas_token,
            "username": self.username,
            "fcm_credentials": self.identity.fcm_credentials(),
            "owner_key": self.owner_key.hex(),
            "shared_key": self.shared_key.hex(),
        }

    def store_secrets(self, store: Any, name: str = "google-secrets") -> None:
        """Put this account's secrets.json into a secrets adapter, as an upload would."""
        store.add_version(name, json.dumps(self.secrets()))

    def add_account(self, username: str) -> FakeAccount:
        """Another account served by the same fakes (see the module docstring)."""
        return FakeAccount(self, username)

    def settings(self) -> dict[str, object]:
        """Settings overrides pointing the bridge at these fakes."""
        return {
            "google_auth_url": self.auth.auth_url,
            "google_checkin_url": self.auth.checkin_url,
            "google_nova_url": self.nova.nova_url,
            "google_mcs_host": HOST,
            "google_mcs_port": self.mcs.port,
            "google_spot_url": self.spot.url,
        }

    def environment(self) -> dict[str, str]:
        """The same as environment variables, plus the CA the MCS certificate chains to."""
        return {
            **{name.upper(): str(value) for name, value in self.settings().items()},
            "SSL_CERT_FILE": str(self.ca_file),
        }

    def start(self) -> Self:
        self.auth.start()
        self.mcs.start()
        self.nova.start()
        self.spot.start()
        return self

    def stop(self) -> None:
        self.spot.stop()
        self.nova.stop()
        self.mcs.stop()
        self.auth.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
