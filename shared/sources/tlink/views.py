"""The API's TLINK views (seed 002): a user's devices, a device's latest values, its history.

    GET /tlink/users/<userId>/devices                     ?deviceId&startTime&endTime
                                                          &page&pageSize&historyLimit
    GET /tlink/users/<userId>/devices/<deviceId>/latest
    GET /tlink/users/<userId>/devices/<deviceId>/history  ?sensorId&startTime&endTime
                                                          &page&historyLimit

Names are the seed's (and TLINK's) camelCase. `startTime`/`endTime` are "yyyy-MM-dd HH:mm:ss"
in TLINK's zone, as TLINK writes them, or ISO 8601 with an offset; both bounds are inclusive.
`historyLimit` caps each sensor's history; `page` pages through it (TLINK's `currPage` of
`getSensorHistroy`), newest first, each sensor saying whether older readings remain
(`hasMore`). Answers give times in UTC (ISO 8601).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field

from shared.errors import BadRequest, NotFound
from shared.firestore_limits import MAX_INTEGER
from shared.models import Model
from shared.sources.tlink.ingest import bridge_id
from shared.sources.tlink.models import (
    TLINK_TIME_FORMAT,
    SensorState,
    TlinkDevice,
    TlinkReading,
)
from shared.store.tlink import TlinkRepository

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
DEFAULT_LIST_HISTORY = 10
MAX_LIST_HISTORY = 100
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 1_000
# Firestore bills the readings an offset skips: deeper than this, narrow the time range.
MAX_HISTORY_DEPTH = 10_000
HISTORY_WORKERS = 8  # concurrent history queries of one answer


# --- Queries -------------------------------------------------------------------------------


# Firestore stores integers as 64-bit: a larger id in a query filter fails the query (a 500
# found by `make fuzz`), so it is a 400 here.
MAX_ID = MAX_INTEGER


class DevicesQuery(Model):
    model_config = ConfigDict(extra="forbid")

    deviceId: int | None = Field(None, ge=0, le=MAX_ID)
    startTime: str | None = None
    endTime: str | None = None
    page: int = Field(1, ge=1, le=10_000)
    pageSize: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    historyLimit: int = Field(DEFAULT_LIST_HISTORY, ge=0, le=MAX_LIST_HISTORY)


class HistoryQuery(Model):
    model_config = ConfigDict(extra="forbid")

    sensorId: int | None = Field(None, ge=0, le=MAX_ID)
    startTime: str | None = None
    endTime: str | None = None
    page: int = Field(1, ge=1, le=10_000)
    historyLimit: int = Field(DEFAULT_HISTORY_LIMIT, ge=1, le=MAX_HISTORY_LIMIT)


# --- Answers -------------------------------------------------------------------------------


class TlinkReadingView(Model):
    time: datetime
    value: str | None
    reVal: str | None = None
    isAlarm: str | None = None
    switcher: str | None = None  # a switch's state (types 2 and 5): its value may be empty


class TlinkSensorLatestView(Model):
    sensorId: int
    sensorTypeId: int | None
    sensorName: str | None
    unit: str | None
    isLine: str | None
    latest: TlinkReadingView | None


class TlinkSensorHistoryView(TlinkSensorLatestView):
    history: list[TlinkReadingView]
    hasMore: bool


class TlinkDeviceSummary(Model):
    deviceId: int
    deviceName: str
    userId: str | None
    parentUserId: str | None
    traccarUniqueId: str
    lat: float | None
    lng: float | None
    lastPush: datetime | None
    lastPull: datetime | None


class TlinkDeviceLatestView(TlinkDeviceSummary):
    sensors: list[TlinkSensorLatestView]


class TlinkDeviceHistoryView(TlinkDeviceSummary):
    sensors: list[TlinkSensorHistoryView]


class TlinkDeviceHistoryPage(TlinkDeviceHistoryView):
    page: int
    historyLimit: int


class TlinkUserDevicesPage(Model):
    userId: str
    page: int
    pageSize: int
    total: int
    pages: int
    devices: list[TlinkDeviceHistoryView]


# --- Building them -------------------------------------------------------------------------


def parse_time(text: str | None, zone: ZoneInfo, name: str) -> datetime | None:
    """A query's time bound: TLINK's "yyyy-MM-dd HH:mm:ss" (TLINK's zone) or ISO 8601."""
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.strptime(text.strip(), TLINK_TIME_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise BadRequest(
                f"{name}: expected 'yyyy-MM-dd HH:mm:ss' (TLINK_TIME_ZONE) or ISO 8601, "
                f"got {text[:40]!r}"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _range(start: str | None, end: str | None, zone: ZoneInfo) -> tuple[datetime | None, ...]:
    first, last = parse_time(start, zone, "startTime"), parse_time(end, zone, "endTime")
    if first is not None and last is not None and first > last:
        raise BadRequest("startTime is after endTime")
    return first, last


def _summary(device: TlinkDevice) -> dict[str, object]:
    return {
        "deviceId": device.device_id,
        "deviceName": device.name,
        "userId": device.user_id,
        "parentUserId": device.parent_user_id,
        "traccarUniqueId": bridge_id(device.device_id),
        "lat": device.lat,
        "lng": device.lng,
        "lastPush": device.last_push,
        "lastPull": device.last_pull,
    }


def _sensor(state: SensorState) -> dict[str, object]:
    latest = None
    if state.time is not None:
        latest = TlinkReadingView(
            time=state.time,
            value=state.value,
            reVal=state.re_val,
            isAlarm=state.is_alarm,
            switcher=state.switcher,
        )
    return {
        "sensorId": state.sensor_id,
        "sensorTypeId": state.type_id,
        "sensorName": state.name,
        "unit": state.unit,
        "isLine": state.is_line,
        "latest": latest,
    }


def _reading(reading: TlinkReading) -> TlinkReadingView:
    return TlinkReadingView(
        time=reading.time,
        value=reading.value,
        reVal=reading.re_val,
        isAlarm=reading.is_alarm,
        switcher=reading.switcher,
    )


def _sensors(device: TlinkDevice, sensor_id: int | None = None) -> list[SensorState]:
    states = sorted(device.sensors.values(), key=lambda state: state.sensor_id)
    return [state for state in states if sensor_id is None or state.sensor_id == sensor_id]


class TlinkViews:
    def __init__(self, repository: TlinkRepository, zone: ZoneInfo) -> None:
        self._repository = repository
        self._zone = zone

    def _bound_device(self, user_id: str, device_id: int) -> TlinkDevice:
        device = self._repository.device(device_id)
        if device is None:
            raise NotFound(f"unknown TLINK device: {device_id}")
        if device.user_id != user_id:
            raise NotFound(f"TLINK device {device_id} is not bound to user {user_id}")
        return device

    def _histories(
        self,
        devices: list[TlinkDevice],
        *,
        sensor_id: int | None,
        start: datetime | None,
        end: datetime | None,
        page: int,
        limit: int,
    ) -> list[TlinkDeviceHistoryView]:
        """Each device's sensors with one page of history, the queries run side by side."""
        jobs = [(device, state) for device in devices for state in _sensors(device, sensor_id)]

        def one(job: tuple[TlinkDevice, SensorState]) -> list[TlinkReading]:
            if limit == 0:
                return []
            device, state = job
            return self._repository.history(
                device.device_id,
                state.sensor_id,
                start=start,
                end=end,
                offset=(page - 1) * limit,
                limit=limit + 1,
            )

        with ThreadPoolExecutor(max_workers=HISTORY_WORKERS) as pool:
            keys = [(device.id, state.sensor_id) for device, state in jobs]
            found = dict(zip(keys, pool.map(one, jobs), strict=True))
        views = []
        for device in devices:
            sensors = []
            for state in _sensors(device, sensor_id):
                readings = found[(device.id, state.sensor_id)]
                sensors.append(
                    TlinkSensorHistoryView(
                        **_sensor(state),
                        history=[_reading(reading) for reading in readings[:limit]],
                        hasMore=len(readings) > limit,
                    )
                )
            views.append(TlinkDeviceHistoryView(**_summary(device), sensors=sensors))
        return views

    def user_devices(self, user_id: str, query: DevicesQuery) -> TlinkUserDevicesPage:
        start, end = _range(query.startTime, query.endTime, self._zone)
        total = self._repository.count_user_devices(user_id, query.deviceId)
        devices = self._repository.user_devices(
            user_id,
            device_id=query.deviceId,
            offset=(query.page - 1) * query.pageSize,
            limit=query.pageSize,
        )
        return TlinkUserDevicesPage(
            userId=user_id,
            page=query.page,
            pageSize=query.pageSize,
            total=total,
            pages=math.ceil(total / query.pageSize),
            devices=self._histories(
                devices, sensor_id=None, start=start, end=end, page=1, limit=query.historyLimit
            ),
        )

    def latest(self, user_id: str, device_id: int) -> TlinkDeviceLatestView:
        device = self._bound_device(user_id, device_id)
        sensors = [TlinkSensorLatestView(**_sensor(state)) for state in _sensors(device)]
        return TlinkDeviceLatestView(**_summary(device), sensors=sensors)

    def history(self, user_id: str, device_id: int, query: HistoryQuery) -> TlinkDeviceHistoryPage:
        if query.page * query.historyLimit > MAX_HISTORY_DEPTH:
            raise BadRequest(
                f"page * historyLimit may not exceed {MAX_HISTORY_DEPTH}: narrow the time range "
                "with startTime/endTime instead"
            )
        start, end = _range(query.startTime, query.endTime, self._zone)
        device = self._bound_device(user_id, device_id)
        if query.sensorId is not None and str(query.sensorId) not in device.sensors:
            raise NotFound(f"TLINK device {device_id} has no sensor {query.sensorId}")
        [view] = self._histories(
            [device],
            sensor_id=query.sensorId,
            start=start,
            end=end,
            page=query.page,
            limit=query.historyLimit,
        )
        return TlinkDeviceHistoryPage(
            **view.model_dump(), page=query.page, historyLimit=query.historyLimit
        )
