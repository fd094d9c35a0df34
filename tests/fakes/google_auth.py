"""A local Google OAuth endpoint (`android.clients.google.com/auth`) for gpsoauth.

It answers as Google does to `gpsoauth.perform_oauth`: a form-encoded POST in, `key=value`
lines out. A known account (email, AAS token in `EncryptedPasswd`, `androidId`) asking for
the Find My Device scope with the right app and signature gets `Auth=<token>` with `Expiry`
(epoch seconds, by `clock`) and `ExpiresInDurationSec`; a wrong or revoked AAS token, or another
android_id, gets 403 `Error=BadAuthentication` (PROTOCOLS.md §5, OAuth: "that is the expiry
case"). Answers that are not that (PROTOCOLS.md §5, OAuth, and issue 14 point 6):

- `needs_browser()`: every request is answered 403 `Error=NeedsBrowser` with a sign-in `Url`
  until `signed_in()` (the user signed in in a browser); retrying does not clear it;
- `bad_authentication(times=1)`: the next `times` requests are answered `BadAuthentication`
  although the token is good (the refusal that a second, fresh attempt does not repeat);
- `fail_with(status, times=1)`: the next `times` requests get a bare `status` (5xx) page.

`oauth_requests` counts the token requests, whatever their answer.

The Spot API's token (PROTOCOLS.md §5, "Spot token": the same call with
`service=oauth2:https://www.googleapis.com/auth/spot`, `app=com.google.android.gms`, the same
client_sig and android_id) is issued like the Find My Device one; each token keeps its scope, and
`is_valid(token, scope)` holds for its own scope only (Nova takes no Spot token, the Spot fake
no Find My Device one). `spot_token_requests` counts the Spot token requests.
`revoke_access_tokens(scope)` makes the tokens issued so far invalid before their expiry (a
bearer token Google stops honouring early), the AAS token staying good.

The same host serves the GCM check-in (`POST /checkin`, PROTOCOLS.md §5 "GCM check-in"): an
`AndroidCheckinRequest` (the protobuf of firebase-messaging, MIT) carrying a registered
`android_id` (`id`, 2) and `security_token` (13) is answered `AndroidCheckinResponse` with the
same ids and recorded in `checkins`; one carrying no ids is a new device registration, counted in
`new_registrations` and answered with fresh ids (what a client falling back to "register anew"
gets); wrong ids get 403. `refuse_checkins()` makes every check-in answer 503.
`checked_in_since(android_id, moment)` is what the MCS fake asks before it accepts a login.

    with FakeGoogleAuth() as auth:
        auth.add_account("me@example.com", "aas_et/abc", "3912345678901234567")
        ... settings google_auth_url=auth.auth_url ...
        assert auth.is_valid(token)
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from tests.fakes.osmand import FakeHttpServer, HttpRequest, HttpResponse

FIND_MY_DEVICE_SCOPE = "oauth2:https://www.googleapis.com/auth/android_device_manager"
FIND_MY_DEVICE_APP = "com.google.android.apps.adm"
FIND_MY_DEVICE_SIG = "38918a453d07199354f8b19af05ec6562ced5788"
SPOT_SCOPE = "oauth2:https://www.googleapis.com/auth/spot"
SPOT_APP = "com.google.android.gms"
APPS = {FIND_MY_DEVICE_SCOPE: FIND_MY_DEVICE_APP, SPOT_SCOPE: SPOT_APP}


@dataclass(frozen=True)
class Issued:
    token: str
    email: str
    expires_at: float
    scope: str = FIND_MY_DEVICE_SCOPE


class FakeGoogleAuth(FakeHttpServer):
    def __init__(
        self, *, lifetime: int = 3599, clock: Callable[[], float] = time.time, port: int = 0
    ) -> None:
        super().__init__(port=port)
        self.lifetime = lifetime
        self._clock = clock
        self._accounts: dict[str, tuple[str, str]] = {}  # email -> (aas token, android id)
        self._issued: list[Issued] = []
        self._revoked: set[str] = set()
        self._error: str | None = None
        self._bad_authentications = 0
        self._failures: list[int] = []
        self.oauth_requests = 0
        self.spot_token_requests = 0
        self._state_lock = threading.Lock()
        self._devices: dict[str, str] = {}  # android_id -> security_token (GCM check-in)
        self.checkins: list[tuple[float, str]] = []  # (time.monotonic(), android_id)
        self.new_registrations = 0
        self._refuse_checkins = False

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth"

    def add_account(self, email: str, aas_token: str, android_id: str) -> None:
        with self._state_lock:
            self._accounts[email] = (aas_token, android_id)

    def add_device(self, android_id: str, security_token: str) -> None:
        """A GCM registration the check-in knows (android_id and security token as decimals)."""
        with self._state_lock:
            self._devices[android_id] = security_token

    def refuse_checkins(self, refuse: bool = True) -> None:
        with self._state_lock:
            self._refuse_checkins = refuse

    def checked_in_since(self, android_id: str, moment: float) -> bool:
        """True when `android_id` checked in at or after `moment` (time.monotonic())."""
        with self._state_lock:
            return any(at >= moment and who == android_id for at, who in self.checkins)

    def revoke(self, email: str | None = None) -> None:
        """Every AAS token (only `email`'s, when given) is refused from now on
        (BadAuthentication), and the access tokens made from them stop working (Nova answers
        401). Each account's token is its own (PROTOCOLS.md §5, OAuth: `perform_oauth(username,
        aas_token, ...)`), so revoking one leaves the others working."""
        with self._state_lock:
            if email is None:
                self._accounts.clear()
            else:
                self._accounts.pop(email, None)
            self._revoked.update(
                issued.token for issued in self._issued if email in (None, issued.email)
            )

    def revoke_access_tokens(self, scope: str | None = None) -> None:
        """The access tokens issued so far (only `scope`'s, when given) stop working before
        their expiry, while the AAS tokens stay good: a fresh token request gets a new one."""
        with self._state_lock:
            self._revoked.update(i.token for i in self._issued if scope in (None, i.scope))

    def email_of(self, token: str) -> str | None:
        """The account an access token was issued to (Nova answers for that account only)."""
        with self._state_lock:
            return next((i.email for i in self._issued if i.token == token), None)

    def needs_browser(self) -> None:
        """Google wants a browser sign-in: every request gets `NeedsBrowser` until `signed_in`."""
        with self._state_lock:
            self._error = "NeedsBrowser"

    def signed_in(self) -> None:
        with self._state_lock:
            self._error = None

    def bad_authentication(self, times: int = 1) -> None:
        """The next `times` requests are refused `BadAuthentication` although the token is good."""
        with self._state_lock:
            self._bad_authentications = times

    def fail_with(self, status: int, times: int = 1) -> None:
        """The next `times` requests are answered a bare `status` page (Google's 5xx)."""
        with self._state_lock:
            self._failures.extend([status] * times)

    def is_valid(self, token: str, scope: str = FIND_MY_DEVICE_SCOPE) -> bool:
        now = self._clock()
        with self._state_lock:
            if token in self._revoked:
                return False
            return any(
                i.token == token and i.expires_at > now and i.scope == scope for i in self._issued
            )

    @property
    def issued(self) -> list[Issued]:
        with self._state_lock:
            return list(self._issued)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.target == "/checkin":
            return self._checkin(request)
        if request.method != "POST" or request.target != "/auth":
            return HttpResponse(404, b"Error=NotFound\n")
        form = {key: values[-1] for key, values in parse_qs(request.body.decode()).items()}
        with self._state_lock:
            self.oauth_requests += 1
            if form.get("service") == SPOT_SCOPE:
                self.spot_token_requests += 1
            error = self._error
            account = self._accounts.get(form.get("Email", ""))
            failure = self._failures.pop(0) if self._failures else None
            flaky = self._bad_authentications > 0
            self._bad_authentications = max(0, self._bad_authentications - 1)
        if failure is not None:
            return HttpResponse(failure, b"<html>Server Error</html>", "text/html")
        if flaky:
            return _answer(403, {"Error": "BadAuthentication"})
        if error is not None:
            return _answer(403, {"Error": error, "Url": "https://accounts.google.com/signin"})
        expected = (form.get("EncryptedPasswd"), form.get("androidId"))
        if (
            account is None
            or account != expected
            or form.get("service") not in APPS
            or form.get("app") != APPS[form["service"]]
            or form.get("client_sig") != FIND_MY_DEVICE_SIG
        ):
            return _answer(403, {"Error": "BadAuthentication"})
        now = self._clock()
        scope = form["service"]
        issued = Issued(
            "ya29." + secrets.token_urlsafe(24), form["Email"], now + self.lifetime, scope
        )
        with self._state_lock:
            self._issued.append(issued)
        return _answer(
            200,
            {
                "issueAdvice": "auto",
                "Expiry": str(int(issued.expires_at)),
                "ExpiresInDurationSec": str(self.lifetime),
                "storeConsentRemotely": "0",
                "isTokenSnowballed": "0",
                "grantedScopes": scope.removeprefix("oauth2:"),
                "Auth": issued.token,
            },
        )

    def _checkin(self, request: HttpRequest) -> HttpResponse:
        # The library's messages (MIT), not the bridge's: the fake shares no code with it.
        from firebase_messaging.proto.checkin_pb2 import (
            AndroidCheckinRequest,
            AndroidCheckinResponse,
        )
        from google.protobuf.message import DecodeError

        if request.headers.get("content-type") != "application/x-protobuf":
            return HttpResponse(400, b"Bad Request")
        try:
            asked = AndroidCheckinRequest.FromString(request.body)
        except DecodeError:
            return HttpResponse(400, b"Bad Request")
        with self._state_lock:
            if self._refuse_checkins:
                return HttpResponse(503, b"Service Unavailable")
            if not asked.id and not asked.security_token:
                # No ids: Google registers a new device (and the stored keys stop matching).
                self.new_registrations += 1
                answer = AndroidCheckinResponse(
                    stats_ok=True,
                    android_id=secrets.randbits(62),
                    security_token=secrets.randbits(63),
                )
                return HttpResponse(200, answer.SerializeToString(), "application/x-protobuf")
            android_id = str(asked.id)
            if self._devices.get(android_id) != str(asked.security_token):
                return HttpResponse(403, b"Forbidden")
            self.checkins.append((time.monotonic(), android_id))
        answer = AndroidCheckinResponse(
            stats_ok=True,
            time_msec=int(time.time() * 1000),
            android_id=asked.id,
            security_token=asked.security_token,
        )
        return HttpResponse(200, answer.SerializeToString(), "application/x-protobuf")

    @property
    def checkin_url(self) -> str:
        return f"{self.url}/checkin"


def _answer(status: int, fields: dict[str, str]) -> HttpResponse:
    body = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
    return HttpResponse(status, body, "text/plain; charset=utf-8")
