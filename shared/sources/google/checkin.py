"""The GCM check-in that comes before each MCS login (PROTOCOLS.md §5, "GCM check-in").

Every client that works against Google today checks in (`POST <GOOGLE_CHECKIN_URL>`, an
`AndroidCheckinRequest` carrying the stored `android_id` and `security_token`) before it logs in
to MCS. firebase-messaging's own `gcm_check_in` retries a failed check-in *without* the ids, which
registers a new device whose keys match neither the AAS token nor the FCM registration Nova pushes
to; so the bridge sends exactly one check-in with the stored ids, built from the library's
messages, and never registers anew. A refusal or an unreachable endpoint raises `CheckinFailed`:
that run fails with what happened, and the next one checks in again.
"""

from __future__ import annotations

import logging

import requests

from shared.sources.google.errors import CheckinFailed

logger = logging.getLogger(__name__)

DEFAULT_CHECKIN_TIMEOUT = 15.0  # seconds for the check-in request
CHECKIN_CONTENT_TYPE = "application/x-protobuf"
CHECKIN_VERSION = 3  # what firebase-messaging sends for a Chrome-like client
CHROME_VERSION = "94.0.4606.51"  # firebase-messaging's default; the login uses the same


class GcmCheckin:
    """Checks in the stored GCM registration (see the module docstring)."""

    def __init__(
        self, *, session: requests.Session, url: str, timeout: float = DEFAULT_CHECKIN_TIMEOUT
    ) -> None:
        self._session = session
        self._url = url
        self._timeout = timeout

    def check_in(self, android_id: str, security_token: str) -> None:
        """One check-in with the stored ids; `CheckinFailed` unless Google accepts them."""
        # Cold start: the library's protobuf messages load with the first locate.
        from firebase_messaging.proto.android_checkin_pb2 import (
            DEVICE_CHROME_BROWSER,
            AndroidCheckinProto,
            ChromeBuildProto,
        )
        from firebase_messaging.proto.checkin_pb2 import (
            AndroidCheckinRequest,
            AndroidCheckinResponse,
        )
        from google.protobuf.message import DecodeError

        try:
            ids = int(android_id), int(security_token)
        except ValueError:
            raise CheckinFailed(
                "the stored fcm_credentials.gcm android_id/security_token are not numbers: "
                "upload the secrets.json GoogleFindMyTools wrote"
            ) from None
        if not all(ids):
            # Without ids Google would register a new device: never do that.
            raise CheckinFailed(
                "secrets.json has no fcm_credentials.gcm android_id/security_token: upload the "
                "secrets.json GoogleFindMyTools wrote"
            )
        request = AndroidCheckinRequest(
            id=ids[0],
            security_token=ids[1],
            version=CHECKIN_VERSION,
            user_serial_number=0,
            checkin=AndroidCheckinProto(
                type=DEVICE_CHROME_BROWSER,
                chrome_build=ChromeBuildProto(
                    platform=ChromeBuildProto.Platform.PLATFORM_LINUX,
                    chrome_version=CHROME_VERSION,
                    channel=ChromeBuildProto.Channel.CHANNEL_STABLE,
                ),
            ),
        )
        try:
            response = self._session.post(
                self._url,
                data=request.SerializeToString(),
                headers={"Content-Type": CHECKIN_CONTENT_TYPE},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise CheckinFailed(f"GCM check-in: cannot reach Google: {exc}") from None
        if response.status_code != 200:
            raise CheckinFailed(
                f"GCM check-in refused ({response.status_code}): the stored GCM "
                "android_id/security_token may be stale; make new credentials and upload them"
                if response.status_code in (400, 401, 403)
                else f"GCM check-in failed: Google answered {response.status_code}"
            )
        try:
            answer = AndroidCheckinResponse.FromString(response.content)
        except DecodeError:
            raise CheckinFailed("GCM check-in: the answer is not a check-in response") from None
        if answer.android_id and answer.android_id != ids[0]:
            # Google assigned another id: ours is no longer known. Never adopt the new one.
            raise CheckinFailed(
                "GCM check-in: Google no longer knows the stored android_id; make new "
                "credentials and upload them"
            )
        logger.info("GCM check-in done")
