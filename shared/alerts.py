"""The operations alerts (issue 20), evaluated by the hourly `refresh_devices` run.

Each alert opens once per incident (mailed, logged as an error `alert opened` with its name,
which the Terraform log-based policies match), is listed by `/health` until it ends, and its
end is mailed and logged (`alert ended`) once too: opening and ending are conditional writes
(`OperationsDocument.resolve`), so of instances racing only the one whose write won mails.

- `traccar_down`: Traccar's OsmAnd endpoint refusing or unreachable for more than
  `ALERT_TRACCAR_DOWN_MINUTES` while positions wait. Opened where the data is, by the pipeline's
  watch (`shared.traccar_status.OsmAndWatch`); ended here too once a device's run pushed again.
- `device_silent:<device id>`: a device with an unpaused sync service and no new position for
  `ALERT_DEVICE_SILENT_HOURS` (the service's `silent_hours` overrides it; 0 never alerts).
- `webhooks_silent:<vendor>`: no webhook from a vendor for `ALERT_WEBHOOKS_SILENT_HOURS` after
  they used to arrive (`WebhookArrivals` records when the last one came).
- `positions_parked:<device id>`: positions of a device Traccar refused again and again while it
  took later ones, parked in the outbox (shared/pipeline.py): no run retries them by itself, so
  somebody must look; ends once none is parked (a manual sync delivered them, or the device was
  removed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared.models import DeviceState, Service, utc_now
from shared.store.google import GoogleAlert
from shared.traccar_status import TRACCAR_DOWN, end_traccar_down

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.store import DeliveryRepository, Repository
    from shared.store.alerts import OperationsDocument

logger = logging.getLogger(__name__)

DEVICE_SILENT = "device_silent"
WEBHOOKS_SILENT = "webhooks_silent"
POSITIONS_PARKED = "positions_parked"
# Devices with parked positions read per evaluation (one query): beyond that many, the rest are
# alerted as the first ones end.
PARKED_DEVICES_READ = 100
# A webhooks instance records an arrival at most this often: the evaluation runs hourly.
SEEN_EVERY = timedelta(minutes=10)

DEVICE_SILENT_ADVICE = (
    "Its sync service runs but brings no new position. Look at GET /devices (the device's last\n"
    "run and error) and GET /push-log?device_id=<id>. A tracker may be out of battery or out\n"
    "of reach; a vehicle may be parked without signal. To hear of it later or never, set\n"
    'PUT /devices/<id>/services {"timer": ..., "silent_hours": <hours, 0 = never>}.'
)
POSITIONS_PARKED_ADVICE = (
    "Traccar keeps refusing these positions while it accepts the device's later ones, so they\n"
    "are parked in the outbox and no run retries them by itself. Traccar's answer is in\n"
    "GET /push-log?device_id=<id> (a value it cannot parse, a device it disabled). Once the\n"
    "cause is fixed, PUT /traccar/devices/<id>/locations retries them; DELETE /devices/<id>\n"
    "drops them with the device."
)
WEBHOOKS_SILENT_ADVICE = (
    "Webhooks used to arrive and stopped. Check the vendor's console: the webhook URL (output\n"
    "tlink_webhook_url or smartcar_webhook_url), its subscription, and the webhooks function's\n"
    "logs for refused deliveries (a rotated path token or signature secret past its grace)."
)


@dataclass
class AlertsReport:
    """What one evaluation opened and ended (the refresh answers it)."""

    opened: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)


class OperationsAlerts:
    """Opens and ends the silence alerts, and ends a Traccar outage the watch could not see end."""

    def __init__(
        self,
        *,
        document: OperationsDocument,
        services: Repository[Service],
        delivery: DeliveryRepository,
        notifier: Callable[[], Notifier],
        device_silent: timedelta,
        webhooks_silent: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._document = document
        self._services = services
        self._delivery = delivery
        self._notifier = notifier
        self._device_silent = device_silent
        self._webhooks_silent = webhooks_silent
        self._clock = clock

    def evaluate(self) -> AlertsReport:
        now = self._clock()
        state = self._document.read()
        report = AlertsReport()
        services = [service for service in self._services.list() if not service.paused]
        states = self._delivery.states_of([service.id for service in services])

        # Traccar: a run that pushed after the outage began shows it accepts again.
        began = state.watch.get(TRACCAR_DOWN) or (
            state.alerts[TRACCAR_DOWN].since if TRACCAR_DOWN in state.alerts else None
        )
        recovered = began is not None and any(
            _pushed_since(found, began) for found in states.values()
        )
        if recovered and end_traccar_down(self._document, self._notifier):
            report.ended.append(TRACCAR_DOWN)

        # Devices: silent when their newest delivered position is older than their limit.
        wanted: dict[str, tuple[str, datetime]] = {}
        for service in services:
            hours = service.silent_hours
            limit = self._device_silent if hours is None else timedelta(hours=hours)
            device_state = states.get(service.id)
            newest = _newest_position(device_state)
            if not limit or newest is None:
                continue  # never alerted, or nothing delivered yet to fall silent after
            if now - newest > limit:
                name = service.name or service.id
                wanted[f"{DEVICE_SILENT}:{service.id}"] = (
                    f"{name} ({service.id}) sent no new position since "
                    f"{newest.isoformat(timespec='minutes')}",
                    newest,
                )

        # Devices with positions Traccar refused again and again (parked): no run retries them.
        for parked in self._delivery.with_parked(limit=PARKED_DEVICES_READ):
            wanted[f"{POSITIONS_PARKED}:{parked.id}"] = (
                f"{parked.parked_count} position(s) of {parked.id} refused by Traccar again and "
                "again while it took later ones: parked in the outbox",
                parked.last_sync or now,
            )

        # Vendors: silent when their last webhook is older than the limit.
        for vendor, seen in state.webhooks_seen.items():
            if now - seen > self._webhooks_silent:
                wanted[f"{WEBHOOKS_SILENT}:{vendor}"] = (
                    f"no {vendor} webhook since {seen.isoformat(timespec='minutes')}",
                    seen,
                )

        for name, (reason, since) in wanted.items():
            if name in state.alerts:
                continue
            if self._document.alerts.open(name, GoogleAlert(reason=reason, since=since)):
                logger.error("alert opened: %s", reason, extra={"alert": name})
                self._notifier().incident_opened(_title(name), reason, _advice(name))
                report.opened.append(name)
        for name in state.alerts:
            if name.startswith(OWN_ALERTS) and name not in wanted:
                ended = self._document.resolve(name)
                if ended is None:
                    continue  # another instance ended it first, and mailed it
                logger.info("alert ended: %s", _title(name), extra={"alert": name})
                self._notifier().incident_resolved(_title(name), ended.since)
                report.ended.append(name)
        return report


class WebhookArrivals:
    """Records that a vendor's webhook arrived: at most every `SEEN_EVERY` per instance and
    vendor (one small write), and at once when its silence alert is open, so it ends."""

    def __init__(
        self, *, document: OperationsDocument, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._document = document
        self._clock = clock
        self._lock = threading.Lock()
        self._written: dict[str, datetime] = {}

    def seen(self, vendor: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._written.get(vendor)
            if last is not None and now - last < SEEN_EVERY:
                return
            self._written[vendor] = now
        self._document.webhook_seen(vendor, now)


def _newest_position(state: DeviceState | None) -> datetime | None:
    if state is None or state.last_location is None:
        return None
    return datetime.fromtimestamp(state.last_location.timestamp, UTC)


def _pushed_since(state: DeviceState, began: datetime) -> bool:
    result = state.last_result
    return bool(
        state.last_sync and state.last_sync > began and result and result.pushed > result.failed
    )


# The alerts this evaluation opens and ends (Traccar's outage is the pipeline watch's).
OWN_ALERTS = (DEVICE_SILENT, WEBHOOKS_SILENT, POSITIONS_PARKED)


def _title(name: str) -> str:
    kind, _, subject = name.partition(":")
    if kind == DEVICE_SILENT:
        return f"Device {subject} sends no positions"
    if kind == WEBHOOKS_SILENT:
        return f"No {subject} webhooks arrive"
    if kind == POSITIONS_PARKED:
        return f"Traccar keeps refusing positions of {subject}"
    return name


def _advice(name: str) -> str:
    kind = name.partition(":")[0]
    if kind == DEVICE_SILENT:
        return DEVICE_SILENT_ADVICE
    if kind == POSITIONS_PARKED:
        return POSITIONS_PARKED_ADVICE
    return WEBHOOKS_SILENT_ADVICE
