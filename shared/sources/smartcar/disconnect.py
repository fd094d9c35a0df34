"""Disconnecting a vehicle from the application at Smartcar (`DELETE /devices/<id>`, issue 20).

The management API's `DELETE /v2.0/management/connections/?vehicle_id=<id>`, authorised with
HTTP Basic `default:<application management token>`: what the official SDK's
`smartcar.delete_connections(amt, filter={"vehicle_id": ...})` sends (smartcar 6.x,
`smartcar/smartcar.py`). It needs no user token, so it works for a vehicle whose user's tokens
expired, and once it is gone Smartcar sends no more webhooks for it.

Sent with the instance's pooled session rather than through the SDK: the SDK reads its
management origin from the environment at import and has no timeout of its own.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import requests

from shared.errors import BridgeError, ConfigError
from shared.secrets import SecretNotFound, missing

if TYPE_CHECKING:
    from shared.secrets import CachedSecrets

TIMEOUT = (5.0, 15.0)


class DisconnectFailed(BridgeError):
    """Smartcar did not disconnect the vehicle: 502, nothing removed yet (run it again)."""

    status = 502


class SmartcarDisconnect:
    def __init__(
        self,
        *,
        session: requests.Session,
        management_origin: str,
        secrets: CachedSecrets,
        secret_name: str,
    ) -> None:
        self._session = session
        self._url = management_origin.rstrip("/") + "/v2.0/management/connections/"
        self._secrets = secrets
        self._secret_name = secret_name

    def __call__(self, vehicle_id: str) -> bool:
        """Disconnect the vehicle; False if Smartcar had no connection for it."""
        try:
            token = self._secrets.read(self._secret_name).strip()
        except SecretNotFound as exc:
            raise ConfigError(
                missing("Smartcar management token", self._secret_name, exc)
            ) from None
        basic = base64.b64encode(f"default:{token}".encode()).decode("ascii")
        try:
            response = self._session.delete(
                self._url,
                params={"vehicle_id": vehicle_id},
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise DisconnectFailed(
                f"Smartcar's management API did not answer ({type(exc).__name__}); "
                f"vehicle {vehicle_id} is still connected and nothing was removed"
            ) from None
        if response.status_code in (401, 403):
            raise ConfigError(
                f"Smartcar refused the management token in secret {self._secret_name} "
                f"({response.status_code}); store the application's current one"
            )
        if response.status_code == 404:
            return False
        if not 200 <= response.status_code < 300:
            raise DisconnectFailed(
                f"Smartcar answered {response.status_code} to disconnecting vehicle "
                f"{vehicle_id}; nothing was removed"
            )
        try:
            connections = response.json().get("connections") or []
        except (ValueError, AttributeError):
            connections = []
        return bool(connections)
