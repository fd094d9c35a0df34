"""Sync services and the exclusion list: each service is a Firestore document plus a job.

The scheduler job is written before the document and deleted before it, so a failure halfway
leaves at worst a job syncing a device that still exists, never a service without its job.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.errors import Conflict, Forbidden, NotFound
from shared.models import (
    MAX_JITTER_SECONDS,
    DeviceState,
    ExcludedDevice,
    Model,
    Service,
    SyncResult,
)
from shared.runtime import Runtime


class ServiceSpec(Model):
    """Body of `PUT /devices/<id>/services`: sync every `timer` ± `delta` seconds."""

    timer: int = Field(ge=60, le=86_400)
    delta: int = Field(0, ge=0, le=MAX_JITTER_SECONDS)


class ServiceView(Model):
    """A service as the API shows it, with its device's last run."""

    id: str
    name: str
    timer: int
    delta: int
    job_name: str | None
    paused: bool
    last_sync: datetime | None
    last_result: SyncResult | None


def _view(service: Service, state: DeviceState | None) -> ServiceView:
    return ServiceView(
        **service.model_dump(include={"id", "name", "timer", "delta", "job_name", "paused"}),
        last_sync=state.last_sync if state else None,
        last_result=state.last_result if state else None,
    )


def view(runtime: Runtime, service: Service) -> ServiceView:
    return _view(service, runtime.store.delivery.state(service.id))


def list_services(runtime: Runtime) -> list[ServiceView]:
    states = {state.id: state for state in runtime.store.delivery.states()}
    return [_view(service, states.get(service.id)) for service in runtime.store.services.list()]


def get_service(runtime: Runtime, device_id: str) -> Service:
    service = runtime.store.services.get(device_id)
    if service is None:
        raise NotFound(f"no sync service for device {device_id}")
    return service


def upsert_service(runtime: Runtime, device_id: str, spec: ServiceSpec) -> tuple[Service, bool]:
    """Create or update the device's service and its job; returns it and whether it is new."""
    store = runtime.store
    if store.excluded_devices.get(device_id) is not None:
        raise Forbidden(f"device {device_id} is excluded; DELETE /excluded-devices/{device_id}")
    device = store.devices.get(device_id)
    if device is None:
        raise NotFound(f"unknown device: {device_id}")
    job_name = runtime.scheduler.upsert(device_id, timer=spec.timer, delta=spec.delta)
    paused = store.state.auth().status == "auth_required" and device.source == "google"
    if paused:
        # Google refused our credentials: the job waits until new ones are uploaded.
        runtime.scheduler.pause(device_id)
    service = Service(
        id=device_id,
        name=device.name,
        timer=spec.timer,
        delta=spec.delta,
        job_name=job_name,
        paused=paused,
    )
    try:
        store.services.create(service)
    except Conflict:
        store.services.put(service)
        return service, False
    return service, True


def delete_service(runtime: Runtime, device_id: str) -> bool:
    """Delete the device's service and its job; False if it had none."""
    runtime.scheduler.delete(device_id)
    return runtime.store.services.delete(device_id)


def list_excluded(runtime: Runtime) -> list[ExcludedDevice]:
    return runtime.store.excluded_devices.list()


def exclude_device(runtime: Runtime, device_id: str) -> tuple[ExcludedDevice, bool]:
    """Exclude the device (removing its service and job); returns it and whether it is new."""
    excluded = ExcludedDevice(id=device_id)
    try:
        runtime.store.excluded_devices.create(excluded)
        created = True
    except Conflict:
        excluded = runtime.store.excluded_devices.get(device_id) or excluded
        created = False
    delete_service(runtime, device_id)
    return excluded, created


def include_device(runtime: Runtime, device_id: str) -> None:
    if not runtime.store.excluded_devices.delete(device_id):
        raise NotFound(f"device {device_id} is not excluded")
