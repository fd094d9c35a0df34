"""Ringing a tracker (issue 17, point 3; PROTOCOLS.md §5, "Ringing a tracker").

`POST /devices/<id>/sound` starts the tracker's sound, `DELETE` stops it: one Nova
`nbe_execute_action` with `startSound` or `stopSound`. Nova's HTTP answer is the result: a 200
means Google took the request (`accepted`), a refusal (Google no longer knows the device, or
will not act on it) is answered with `accepted: false` and Nova's reason, since the caller asked
a question and that is its answer. A transient failure (429, 5xx, no connection, retried first)
stays an error (503): nothing was decided. The push Google may send afterwards is informational
and nobody waits for it; a locate session that happens to receive it skips it (its request
uuid is no locate's), so ringing needs neither an MCS session nor the FCM lease.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Literal

from shared.errors import BadRequest, NotFound
from shared.models import Device, Model, Source
from shared.sources.google.client import NovaThrottled, NovaUnavailable
from shared.sources.google.credentials import require_aas_token
from shared.sources.google.errors import NovaError

if TYPE_CHECKING:
    from shared.sources.google.account import GoogleAccount
    from shared.store import Repository

logger = logging.getLogger(__name__)


class SoundAnswer(Model):
    """What Nova said to a sound request."""

    id: str
    action: Literal["start", "stop"]
    accepted: bool
    message: str | None = None


class Ringer:
    def __init__(self, *, account: GoogleAccount, devices: Repository[Device]) -> None:
        self._account = account
        self._devices = devices

    def sound(self, device_id: str, *, start: bool) -> SoundAnswer:
        """Start (`start`) or stop the device's sound; 404 for an unknown device, 400 for a
        device of another source (only Google's ring)."""
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"unknown device: {device_id}")
        if device.source != Source.GOOGLE:
            raise BadRequest(
                f"device {device_id} is a {device.source.value} device: only Google devices ring"
            )
        credentials = self._account.credentials()
        require_aas_token(credentials)
        action: Literal["start", "stop"] = "start" if start else "stop"
        try:
            self._account.with_token(
                credentials,
                lambda token: self._account.nova.sound(
                    token,
                    device.id,
                    start=start,
                    request_uuid=str(uuid.uuid4()),
                    fcm_token=credentials.fcm_token,
                ),
            )
        except (NovaUnavailable, NovaThrottled):
            raise  # nothing was decided: the caller tries again later (503)
        except NovaError as exc:
            logger.warning(
                "Google refused to %s the sound: %s", action, exc.message,
                extra={"device_id": device.id},
            )  # fmt: skip
            return SoundAnswer(id=device.id, action=action, accepted=False, message=exc.message)
        logger.info(
            "Google took the request to %s the sound", action, extra={"device_id": device.id}
        )
        return SoundAnswer(id=device.id, action=action, accepted=True)


__all__ = ["Ringer", "SoundAnswer"]
