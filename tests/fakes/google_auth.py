"""A local Google OAuth endpoint (`android.clients.google.com/auth`) for gpsoauth.

It answers as Google does to `gpsoauth.perform_oauth`: a form-encoded POST in, `key=value`
lines out. A known account (email, AAS token in `EncryptedPasswd`, `androidId`) asking for
the Find My Device scope with the right app and signature gets `Auth=<token>` with `Expiry`
(epoch seconds, by `clock`) and `ExpiresInDurationSec`; a wrong or revoked AAS token, or another
android_id, gets 403 `Error=BadAuthentication`; `needs_browser()` makes it answer
`Error=NeedsBrowser`.

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


@dataclass(frozen=True)
class Issued:
    token: str
    email: str
    expires_at: float


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
        self._state_lock = threading.Lock()

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth"

    def add_account(self, email: str, aas_token: str, android_id: str) -> None:
        with self._state_lock:
            self._accounts[email] = (aas_token, android_id)

    def revoke(self) -> None:
        """Every AAS token is refused from now on (BadAuthentication), and the access tokens
        made from them stop working (Nova answers 401)."""
        with self._state_lock:
            self._accounts.clear()
            self._revoked.update(issued.token for issued in self._issued)

    def needs_browser(self) -> None:
        with self._state_lock:
            self._error = "NeedsBrowser"

    def is_valid(self, token: str) -> bool:
        now = self._clock()
        with self._state_lock:
            if token in self._revoked:
                return False
            return any(i.token == token and i.expires_at > now for i in self._issued)

    @property
    def issued(self) -> list[Issued]:
        with self._state_lock:
            return list(self._issued)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.target != "/auth":
            return HttpResponse(404, b"Error=NotFound\n")
        form = {key: values[-1] for key, values in parse_qs(request.body.decode()).items()}
        with self._state_lock:
            error = self._error
            account = self._accounts.get(form.get("Email", ""))
        if error is not None:
            return _answer(403, {"Error": error, "Url": "https://accounts.google.com/signin"})
        expected = (form.get("EncryptedPasswd"), form.get("androidId"))
        if (
            account is None
            or account != expected
            or form.get("service") != FIND_MY_DEVICE_SCOPE
            or form.get("app") != FIND_MY_DEVICE_APP
            or form.get("client_sig") != FIND_MY_DEVICE_SIG
        ):
            return _answer(403, {"Error": "BadAuthentication"})
        now = self._clock()
        issued = Issued("ya29." + secrets.token_urlsafe(24), form["Email"], now + self.lifetime)
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
                "grantedScopes": FIND_MY_DEVICE_SCOPE.removeprefix("oauth2:"),
                "Auth": issued.token,
            },
        )


def _answer(status: int, fields: dict[str, str]) -> HttpResponse:
    body = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
    return HttpResponse(status, body, "text/plain; charset=utf-8")
