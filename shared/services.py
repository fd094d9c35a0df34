"""Sync services and the exclusion list: each service is a Firestore document plus a job.

The scheduler job is written before the document and deleted before it, so a failure halfway
leaves at worst a job syncing a device that still exists, never a service without its job.

Pausing and resuming a vendor's jobs (Google refused the credentials; new ones came) and
auto-registration live here, called by whoever decides: the expiry handling, the hourly
refresh, the API. A source never schedules or pauses anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from shared.errors import BadRequest, Conflict, Forbidden, NotFound
from shared.models import (
    MAX_JITTER_SECONDS,
    Device,
    DeviceState,
    ExcludedDevice,
    Model,
    Service,
    Source,
    SyncResult,
)

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.scheduler import JobScheduler
    from shared.store import DeliveryRepository, DeviceRepository, Repository, StateRepository

logger = logging.getLogger(__name__)


class ServiceSpec(Model):
    """Body of `PUT /devices/<id>/services`: sync every `timer` ± `delta` seconds."""

    timer: int = Field(ge=60, le=86_400)
    delta: int = Field(0, ge=0, le=MAX_JITTER_SECONDS)
    # Hours without a new position before the device's silence alert (issue 20); None: the
    # ALERT_DEVICE_SILENT_HOURS default, 0: never.
    silent_hours: int | None = Field(None, ge=0, le=8_760)


# Smartcar's call budget (PROTOCOLS.md §3): counted per vehicle per month; the longest month.
MONTH_SECONDS = 31 * 86_400
SMARTCAR_CALLS_PER_PULL = 1  # one GET /vehicles/{id}/signals (`smartcar.client`)


def shortest_gap(timer: int, delta: int) -> int:
    """The shortest time between two runs of a job every `timer` ± `delta`, on either scheduler
    backend: the local loop's `timer - delta`, Cloud Scheduler's cron step (which may round
    the timer down: 90 min runs hourly) less the jitter applied inside the run."""
    from shared.scheduler import cron_for

    fields = cron_for(timer).split()
    if fields[0] == "*":
        step = 60
    elif fields[0].startswith("*/"):
        step = int(fields[0][2:]) * 60
    elif fields[1] == "*":
        step = 3_600
    elif fields[1].startswith("*/"):
        step = int(fields[1][2:]) * 3_600
    else:
        step = 86_400
    return max(1, min(timer, step) - delta)


def calls_a_month(timer: int, delta: int) -> int:
    """Smartcar API calls a vehicle pulled every `timer` ± `delta` may cost in a month."""
    return -(-MONTH_SECONDS // shortest_gap(timer, delta)) * SMARTCAR_CALLS_PER_PULL


def smallest_fitting_timer(delta: int, budget: int) -> int | None:
    """The shortest timer whose pulls stay within `budget` calls a month (None: none does)."""
    for timer in range(60, 86_401):
        if calls_a_month(timer, delta) <= budget:
            return timer
    return None


class ServiceView(Model):
    """A service as the API shows it, with its device's last run.

    Its `id` is the device's uniqueId in Traccar and `vendor_id` the id the bridge stores it
    under, as `GET /devices` lists them (issue 18): every route takes either."""

    id: str
    vendor_id: str
    name: str
    timer: int
    delta: int
    job_name: str | None
    paused: bool
    paused_by_user: bool = False
    last_sync: datetime | None
    # Expected: the last run + timer (the jitter aside); None while paused or before a first run.
    next_sync: datetime | None = None
    last_result: SyncResult | None
    # The last failed run's error and when it happened (None: none recorded).
    last_error: str | None = None
    last_error_at: datetime | None = None


class DeviceView(Device):
    """A device as `GET /devices` shows it: with its last run, and its last error and when.

    Its `id` is the uniqueId Traccar shows (issue 18), what users type in every route;
    `vendor_id` is the id the bridge stores it under, which those routes take too: the
    vendor's own (Google's canonic id, Smartcar's vehicle id), `tlink-<number>` for TLINK."""

    vendor_id: str
    last_sync: datetime | None = None
    last_result: SyncResult | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


class ExcludedView(ExcludedDevice):
    """An excluded device as the API lists it: under its uniqueId in Traccar when the device is
    known, with the id the bridge stores it under beside it (issue 18)."""

    vendor_id: str


def _view(service: Service, state: DeviceState | None, unique_id: str) -> ServiceView:
    return ServiceView(
        **service.model_dump(
            include={"name", "timer", "delta", "job_name", "paused", "paused_by_user"}
        ),
        id=unique_id,
        vendor_id=service.id,
        last_sync=state.last_sync if state else None,
        next_sync=service.expected_next_sync(state.last_sync if state else None),
        last_result=state.last_result if state else None,
        last_error=state.last_error if state else None,
        last_error_at=state.last_error_at if state else None,
    )


class Services:
    """The sync services of every device, their scheduler jobs and the exclusion list."""

    def __init__(
        self,
        *,
        services: Repository[Service],
        devices: DeviceRepository,
        excluded: Repository[ExcludedDevice],
        state: StateRepository,
        delivery: DeliveryRepository,
        scheduler: JobScheduler,
        notifier: Notifier,
        smartcar_monthly_calls: int = 500,
    ) -> None:
        self._smartcar_monthly_calls = smartcar_monthly_calls
        self._services = services
        self._devices = devices
        self._excluded = excluded
        self._state = state
        self._delivery = delivery
        self._scheduler = scheduler
        self._notifier = notifier

    # --- reading ----------------------------------------------------------------------------

    def view(self, service: Service) -> ServiceView:
        unique_ids = self._devices.unique_ids([service.id])
        return _view(service, self._delivery.state(service.id), unique_ids[service.id])

    def views(self) -> list[ServiceView]:
        services = self._services.list()
        states = {state.id: state for state in self._delivery.states()}
        unique_ids = self._devices.unique_ids([service.id for service in services])
        return [
            _view(service, states.get(service.id), unique_ids[service.id]) for service in services
        ]

    def device_views(self, devices: list[Device]) -> list[DeviceView]:
        """A page of devices with their runs' outcome (one batch read of their states)."""
        states = self._delivery.states_of([device.id for device in devices])
        views = []
        for device in devices:
            state = states.get(device.id)
            views.append(
                DeviceView(
                    **{**device.model_dump(), "id": device.traccar_unique_id},
                    vendor_id=device.id,
                    last_sync=state.last_sync if state else None,
                    last_result=state.last_result if state else None,
                    last_error=state.last_error if state else None,
                    last_error_at=state.last_error_at if state else None,
                )
            )
        return views

    def get(self, device_id: str) -> Service:
        service = self._services.get(device_id)
        if service is None:
            raise NotFound(f"no sync service for device {device_id}")
        return service

    # --- one service ------------------------------------------------------------------------

    def upsert(self, device_id: str, spec: ServiceSpec) -> tuple[Service, bool]:
        """Create or update the device's service and its job; returns it and whether it is new."""
        if self._excluded.get(device_id) is not None:
            raise Forbidden(f"device {device_id} is excluded; DELETE /excluded-devices/{device_id}")
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"unknown device: {device_id}")
        if device.source == Source.SMARTCAR:
            self._check_smartcar_budget(spec)
        # A user's pause outlives a change of timer (issue 19): one more read, on a rare call.
        existing = self._services.get(device_id)
        by_user = existing is not None and existing.paused_by_user
        job_name = self._scheduler.upsert(device_id, timer=spec.timer, delta=spec.delta)
        expired = self._state.auth().status == "auth_required" and device.source == Source.GOOGLE
        paused = by_user or expired
        if paused:
            # Google refused our credentials (the job waits until new ones are uploaded), or
            # the user paused it.
            self._scheduler.pause(device_id)
        service = Service(
            id=device_id,
            name=device.name,
            timer=spec.timer,
            delta=spec.delta,
            job_name=job_name,
            paused=paused,
            paused_by_user=by_user,
            silent_hours=spec.silent_hours,
        )
        try:
            self._services.create(service)
        except Conflict:
            self._services.put(service)
            return service, False
        self._record_count()
        return service, True

    def _check_smartcar_budget(self, spec: ServiceSpec) -> None:
        """A 400 naming the most frequent schedule that fits when `spec` would spend more than
        SMARTCAR_MONTHLY_CALLS of the vehicle's Smartcar calls a month."""
        budget = self._smartcar_monthly_calls
        calls = calls_a_month(spec.timer, spec.delta)
        if calls <= budget:
            return
        fitting = smallest_fitting_timer(spec.delta, budget)
        advice = (
            f"the shortest timer that fits is {fitting} s (with delta {spec.delta})"
            if fitting is not None
            else "no timer up to a day fits: raise SMARTCAR_MONTHLY_CALLS"
        )
        raise BadRequest(
            f"timer: every {spec.timer} s ± {spec.delta} s would make up to {calls} Smartcar "
            f"calls a month for this vehicle, over SMARTCAR_MONTHLY_CALLS ({budget}); {advice}"
        )

    def fitting_spec(self, source: Source, spec: ServiceSpec) -> ServiceSpec:
        """`spec`, its timer lengthened for Smartcar until it fits the call budget."""
        if source != Source.SMARTCAR or calls_a_month(spec.timer, spec.delta) <= (
            self._smartcar_monthly_calls
        ):
            return spec
        fitting = smallest_fitting_timer(spec.delta, self._smartcar_monthly_calls)
        return spec.model_copy(update={"timer": fitting or 86_400})

    def pause(self, device_id: str) -> ServiceView:
        """The user pauses the device's service: its job stops until the user resumes it, new
        Google credentials or not (`resume_source` leaves it alone)."""
        service = self.get(device_id)
        try:
            self._scheduler.pause(device_id)
        except NotFound:
            logger.warning("no scheduler job to pause", extra={"device_id": device_id})
        paused = service.model_copy(update={"paused": True, "paused_by_user": True})
        self._services.put(paused)
        return self.view(paused)

    def resume(self, device_id: str) -> ServiceView:
        """The user resumes the device's service. A Google device whose credentials expired
        stays paused (by the expiry now, not the user) until new ones are uploaded: resuming
        it would only run into Google's refusal again."""
        service = self.get(device_id)
        device = self._devices.get(device_id)
        expired = (
            device is not None
            and device.source == Source.GOOGLE
            and self._state.auth().status == "auth_required"
        )
        if not expired:
            try:
                self._scheduler.resume(device_id)
            except NotFound:
                self._scheduler.upsert(device_id, timer=service.timer, delta=service.delta)
        resumed = service.model_copy(update={"paused": expired, "paused_by_user": False})
        self._services.put(resumed)
        return self.view(resumed)

    def delete(self, device_id: str) -> bool:
        """Delete the device's service and its job; False if it had none."""
        self._scheduler.delete(device_id)
        deleted = self._services.delete(device_id)
        if deleted:
            self._record_count()
        return deleted

    def _record_count(self) -> None:
        """Count the services (one aggregation) and record the number where `/health` reads it,
        so that `/health` costs one document read; counted after the change rather than
        incremented, a count that went wrong mends itself with the next change."""
        self._state.record_service_count(self._services.count())

    # --- a vendor's services at once --------------------------------------------------------

    def of_source(self, source: Source, where: Callable[[Device], bool] | None = None) -> list[str]:
        """Ids of the sync services whose device comes from `source` (and passes `where`: one
        Google account's devices, ADR 0004)."""
        ids = {
            d.id for d in self._devices.list() if d.source == source and (where is None or where(d))
        }
        return [s.id for s in self._services.list() if s.id in ids]

    def pause_source(self, source: Source, where: Callable[[Device], bool] | None = None) -> int:
        """Pause the job of every service of `source` (scheduler job, `Service.paused`)."""
        paused = 0
        for service_id in self.of_source(source, where):
            service = self._services.get(service_id)
            if service is None or service.paused:
                continue
            try:
                self._scheduler.pause(service_id)
            except NotFound:
                logger.warning("no scheduler job to pause", extra={"device_id": service_id})
            self._services.put(service.model_copy(update={"paused": True}))
            paused += 1
        return paused

    def resume_source(self, source: Source, where: Callable[[Device], bool] | None = None) -> int:
        """Resume every paused service of `source`; a job that vanished is created again.
        What the user paused stays paused (issue 19): new credentials are not a user's word."""
        restarted = 0
        for service_id in self.of_source(source, where):
            service = self._services.get(service_id)
            if service is None or not service.paused or service.paused_by_user:
                continue
            try:
                self._scheduler.resume(service_id)
            except NotFound:
                self._scheduler.upsert(service_id, timer=service.timer, delta=service.delta)
            self._services.put(service.model_copy(update={"paused": False}))
            restarted += 1
        return restarted

    def auto_register(
        self, source: Source, spec: ServiceSpec, where: Callable[[Device], bool] | None = None
    ) -> list[str]:
        """Give every device of `source` without a service (and not excluded) one; returns the
        ids registered now and tells the notifier of each."""
        # Smartcar's call budget: an auto-registered vehicle is pulled no more often than fits.
        spec = self.fitting_spec(source, spec)
        excluded = {e.id for e in self._excluded.list()}
        served = {s.id for s in self._services.list()}
        registered = []
        for device in self._devices.list():
            if device.source != source or device.id in excluded or device.id in served:
                continue
            if where is not None and not where(device):
                continue
            try:
                _, created = self.upsert(device.id, spec)
            except (Forbidden, Conflict) as exc:
                # Excluded or registered meanwhile by a concurrent run or user.
                logger.info("not auto-registered: %s", exc.message, extra={"device_id": device.id})
                continue
            if created:
                registered.append(device.id)
                self._notifier.device_auto_registered(
                    device.name, device.id, spec.timer, spec.delta
                )
        return registered

    def retime(self, device_id: str, *, timer: int, delta: int) -> bool:
        """Run an active service's job every `timer` ± `delta` for now (smart tracking),
        leaving the stored service as the user set it; False if there is none or it is paused."""
        service = self._services.get(device_id)
        if service is None or service.paused:
            return False
        self._scheduler.upsert(device_id, timer=timer, delta=delta)
        return True

    def restore_timer(self, device_id: str) -> None:
        """Put the job back on the service's own timer (the user may have changed it)."""
        service = self._services.get(device_id)
        if service is not None:
            self._scheduler.upsert(device_id, timer=service.timer, delta=service.delta)

    # --- the exclusion list -----------------------------------------------------------------

    def excluded(self) -> list[ExcludedView]:
        excluded = self._excluded.list()
        unique_ids = self._devices.unique_ids([item.id for item in excluded])
        return [self._excluded_view(item, unique_ids[item.id]) for item in excluded]

    def excluded_view(self, excluded: ExcludedDevice) -> ExcludedView:
        return self._excluded_view(excluded, self._devices.unique_ids([excluded.id])[excluded.id])

    @staticmethod
    def _excluded_view(excluded: ExcludedDevice, unique_id: str) -> ExcludedView:
        return ExcludedView(id=unique_id, vendor_id=excluded.id, since=excluded.since)

    def exclude(self, device_id: str) -> tuple[ExcludedDevice, bool]:
        """Exclude the device (removing its service and job); returns it and whether it is new."""
        excluded = ExcludedDevice(id=device_id)
        try:
            self._excluded.create(excluded)
            created = True
        except Conflict:
            excluded = self._excluded.get(device_id) or excluded
            created = False
        self.delete(device_id)
        return excluded, created

    def include(self, device_id: str) -> None:
        if not self._excluded.delete(device_id):
            raise NotFound(f"device {device_id} is not excluded")


__all__ = ["ServiceSpec", "ServiceView", "Services"]
