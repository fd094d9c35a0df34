"""One ingestion for pushes and pulls: TLINK data → stored readings → a Location when placed.

A push (`PushBody`) or a device of the pull API (`ApiDevice`) becomes a `DeviceReport`; then
`Ingestion.apply` stores it in one batch (see `shared.store.tlink`) and answers the
`Location` to send to Traccar, or None when the device's position is unknown. A push is
`Ingestion.prepare`d on what its receiver read, and committed by the receiver (with the lease
when there is a position to push).

Times. TLINK's timestamps are naive wall-clock times of TLINK's zone (`TLINK_TIME_ZONE`,
Asia/Shanghai by default). A push gives the packet's date and time (`time`) and each sensor's
time of day (`times`): a reading's time is that time of day on the day, among the packet's day
and the days before and after it, that puts it closest to the packet's time (a reading taken at
23:59:58 in a packet sent at 00:00:03 belongs to the day before). Without `times`, the packet's
time. Everything is stored in UTC.

Position (PROTOCOLS.md §4). A location sensor (`sensorsTypeId` 3) places the device at that
reading's time: in a pull, its fix is in the sensor's own `lat`/`lng` (TLINK's sample; the
bridge stores it as the reading's value, "lat,lng"); in a push, `lat`/`lng` when present, else a
value "lat,lng" in decimal degrees. "0,0" and "" mean "no fix". Any other encoding loses that one
position, never the push: guessing would put the device in the wrong place, so the position is
skipped (logged, and named in the push's event, `TlinkEvent.skipped`) while every reading is
stored. The pull API's device `lat`/`lng` is the pin set in TLINK's console, not a fix: a report
without a fix of its own goes to Traccar at the pin only with `valid=false`, carrying its
readings. Without either, readings are stored and no Location is made.

Attributes. Each sensor value of the report (but the location sensor) under the sensor's name as
the pull API gave it, else `sensor_<id>`; numeric text becomes a number; a switch without a
`value` is read from its `switcher`. A name that is one of Traccar's own keys (`status`,
`alarm`, `battery`, `fuel`...: `shared.traccar.TRACCAR_ATTRIBUTE_KEYS`) is a label somebody
chose in TLINK's console, in a unit and with a meaning Traccar cannot know: it gets the sensor's
id (`status_11922`) so that Traccar never reads it as its own.

Alarms. The pull's alarm flag is `isAlarms` (a push's `isAlarm`). Every position sent while a
sensor of the device is in alarm by its latest reading carries Traccar's `alarm=general`
(Position.ALARM_GENERAL), also a push that carries only other sensors. Traccar raises one
alarm event when the alarm appears, not one per position: its `AlarmEventHandler` drops the
alarms the device's last position already carried while `event.ignoreDuplicateAlerts` is on,
its default (traccar/traccar `handler/events/AlarmEventHandler.java` lines 44-52,
`config/Keys.java` lines 508-514, default `true`; tests/fakes/osmand.py imitates it). That is
why the flag follows the device's state rather than the report: a position without it, then
one with it again, would be a second event for one alarm. Nothing is kept across pushes for
this: each position carries its own flag, so a position waiting in the outbox or retried keeps
it. (One that reaches Traccar after a newer position raises no event there whatever it carries:
`BasePositionEventHandler.java` lines 30-35.)

What a report may claim (issue 13). Nobody outside decides what the bridge keeps:
- a reading dated more than `max_future_skew` seconds ahead is skipped (logged), the rest
  stored: one reading dated 2037 would otherwise become the device's newest position and hide
  every genuine one after it;
- a device keeps at most `max_sensors` sensors: a new sensor past the cap is skipped (logged,
  one notification per device), known sensors still update;
- a push for a device not recorded yet is skipped (logged, nothing stored) once `max_devices`
  devices are recorded; a pull is the vendor's own word and is not capped;
- a push never changes the user a recorded device is bound to: only a pull made for a user
  that returns the device does. A push's `deviceUserid` binds a new device only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from shared.errors import BadRequest
from shared.firestore_limits import attribute_name
from shared.firestore_limits import text as storable_text
from shared.models import AttributeValue, Device, Location, Source, too_far_ahead, utc_now
from shared.sources.tlink.models import (
    ApiDevice,
    ApiSensor,
    PushBody,
    SensorState,
    TlinkDevice,
    TlinkEvent,
    TlinkReading,
)
from shared.store import Writes
from shared.store.tlink import Loaded, TlinkRepository
from shared.traccar import TRACCAR_ATTRIBUTE_KEYS

if TYPE_CHECKING:
    from shared.notify import Notifier

logger = logging.getLogger(__name__)

LOCATION_SENSOR_TYPE = 3
# Traccar's OsmAnd `valid` (shared/traccar.py passes a bool of that name through).
VALID = "valid"
# Traccar's alarm attribute and its generic value (Position.KEY_ALARM, ALARM_GENERAL); TLINK's
# alarm flag is "1" when a sensor's value crossed the alarm set in its console.
ALARM = "alarm"
ALARM_GENERAL = "general"
ALARM_ON = "1"
UNIQUE_ID_PREFIX = "tlink-"
MAX_EPOCH = 2_147_483_647  # Location.timestamp's bound
LOGGED_SENSOR_IDS = 20  # a skipped reading's log line names this many sensors at most
_LAT_LNG = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)\s*")
_INTEGER = re.compile(r"[+-]?\d{1,18}")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


def bridge_id(device_id: int) -> str:
    """The bridge's id of a TLINK device, also its Traccar uniqueId: `tlink-<deviceId>`."""
    return f"{UNIQUE_ID_PREFIX}{device_id}"


def tlink_device_id(device: Device) -> int:
    """The TLINK deviceId of a bridge device (`tlink-2864` → 2864)."""
    number = device.id.removeprefix(UNIQUE_ID_PREFIX)
    if device.id == number or not number.isdigit():
        raise BadRequest(f"{device.id} is not a TLINK device id (tlink-<deviceId>)")
    return int(number)


# --- Times and values ----------------------------------------------------------------------


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time of `zone` as an aware UTC datetime."""
    moment = local.replace(tzinfo=zone).astimezone(UTC)
    if not 0 <= moment.timestamp() < MAX_EPOCH:
        raise ValueError(f"{local:%Y-%m-%d %H:%M:%S} is out of range (1970..2038)")
    return moment


def reading_time(packet: datetime, times: time | None, zone: ZoneInfo) -> datetime:
    """A sensor's time (UTC) from the packet's naive time and the sensor's time of day."""
    if times is None:
        return to_utc(packet, zone)
    candidates = [
        datetime.combine(packet.date() + timedelta(days=shift), times) for shift in (-1, 0, 1)
    ]
    return to_utc(min(candidates, key=lambda candidate: abs(candidate - packet)), zone)


def api_time(value: datetime | int | None, zone: ZoneInfo) -> datetime | None:
    """`updateDate` of the pull API: naive time of TLINK's zone, or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_utc(value, zone)
    moment = datetime.fromtimestamp(value / 1000, UTC)
    if not 0 <= moment.timestamp() < MAX_EPOCH:
        raise ValueError(f"{value} ms is out of range (1970..2038)")
    return moment


def parse_lat_lng(text: str | None) -> tuple[float, float] | None:
    """A location sensor's "lat,lng"; None for no fix ("" or "0,0"); ValueError otherwise."""
    if text is None or not text.strip():
        return None
    match = _LAT_LNG.fullmatch(text)
    if match is None:
        raise ValueError('expected "lat,lng" in decimal degrees')
    lat, lng = float(match[1]), float(match[2])
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValueError("latitude must be within ±90 and longitude within ±180")
    return None if lat == lng == 0 else (lat, lng)


def attribute_value(text: str) -> AttributeValue:
    """Numeric text as a number (int when integral as written), anything else as sent."""
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    if _DECIMAL.fullmatch(stripped):
        number = float(stripped)
        if math.isfinite(number):
            return number
    return text


# --- Reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    sensor_id: int
    time: datetime | None  # UTC; None: the API gave no time (names and units still count)
    type_id: int | None = None
    value: str | None = None
    re_val: str | None = None
    is_alarm: str | None = None
    is_line: str | None = None
    name: str | None = None
    unit: str | None = None
    switcher: str | None = None


@dataclass(frozen=True)
class Position:
    lat: float
    lng: float
    time: datetime


@dataclass(frozen=True)
class DeviceReport:
    """What one push, or one device of a pull, says about a device."""

    device_id: int
    origin: Literal["push", "api"]
    time: datetime | None  # the packet's time (push), the newest reading's (api)
    readings: tuple[Reading, ...] = ()
    user_id: str | None = None
    parent_user_id: str | None = None
    name: str | None = None
    position: Position | None = None  # from a location sensor
    api_lat_lng: tuple[float, float] | None = None  # the pull API's lat/lng (api only)
    skipped: tuple[str, ...] = ()  # "sensorsDates.<i> (sensorsId <id>): why", for the event


def located_value(
    sensor_lat: float | None, sensor_lng: float | None, value: str | None
) -> str | None:
    """A location sensor's value as "lat,lng" from its own `lat`/`lng` fields when it has them
    (the pull API's form, PROTOCOLS.md §4), else its `value` as sent."""
    if sensor_lat is None or sensor_lng is None:
        return value
    return f"{sensor_lat!r},{sensor_lng!r}"


def report_from_push(body: PushBody, zone: ZoneInfo) -> DeviceReport:
    """A push as a report; `BadRequest` naming the sensor for an unusable time or position."""
    try:
        packet_time = to_utc(body.time, zone)
    except ValueError as exc:
        raise BadRequest(f"time: {exc}") from None
    readings = []
    position = None
    skipped: list[str] = []
    for index, sensor in enumerate(body.sensorsDates):
        where = f"sensorsDates.{index} (sensorsId {sensor.sensorsId})"
        try:
            moment = reading_time(body.time, sensor.times, zone)
        except ValueError as exc:
            raise BadRequest(f"{where}: times: {exc}") from None
        value = sensor.value
        if sensor.sensorsTypeId == LOCATION_SENSOR_TYPE:
            value = located_value(sensor.lat, sensor.lng, sensor.value)
            try:
                lat_lng = parse_lat_lng(value)
            except ValueError as exc:
                # The encoding is undocumented (PROTOCOLS.md §4): this one position is lost,
                # said so in the log and the push's event; the push's readings are kept.
                shown = (value or "")[:40]
                skipped.append(
                    f'{where}: position skipped: a location sensor\'s value must be "lat,lng" '
                    f"in decimal degrees ({exc}); got {shown!r}"
                )
                logger.warning(
                    "TLINK location sensor of an unknown encoding: its position is skipped, "
                    "the push's readings are stored",
                    extra={"tlink_device_id": body.deviceId, "sensor_id": sensor.sensorsId},
                )
                lat_lng = None
            if lat_lng is not None and (position is None or moment >= position.time):
                position = Position(lat_lng[0], lat_lng[1], moment)
        readings.append(
            Reading(
                sensor_id=sensor.sensorsId,
                time=moment,
                type_id=sensor.sensorsTypeId,
                value=value,
                re_val=sensor.reVal,
                is_alarm=sensor.isAlarm,
                is_line=sensor.isLine,
                switcher=sensor.switcher,
            )
        )
    return DeviceReport(
        device_id=body.deviceId,
        origin="push",
        time=packet_time,
        readings=tuple(readings),
        user_id=body.deviceUserid,
        parent_user_id=body.parentUserId,
        position=position,
        skipped=tuple(skipped),
    )


def newest_fix(device_id: int, readings: Sequence[Reading]) -> Position | None:
    """The newest "lat,lng" fix among `readings`' location sensors; others are ignored (a push's
    were refused before, a pull's are logged here)."""
    position = None
    for reading in readings:
        if reading.type_id != LOCATION_SENSOR_TYPE or reading.time is None:
            continue
        try:
            lat_lng = parse_lat_lng(reading.value)
        except ValueError:
            logger.warning(
                'TLINK location sensor value is not "lat,lng"; ignored',
                extra={"tlink_device_id": device_id, "sensor_id": reading.sensor_id},
            )
            continue
        if lat_lng is not None and (position is None or reading.time >= position.time):
            position = Position(lat_lng[0], lat_lng[1], reading.time)
    return position


def _api_reading(device_id: int, sensor: ApiSensor, zone: ZoneInfo) -> Reading:
    try:
        moment = api_time(sensor.updateDate, zone)
    except ValueError as exc:
        logger.warning(
            "TLINK sensor time unusable; its value is not recorded",
            extra={"tlink_device_id": device_id, "sensor_id": sensor.id, "reason": str(exc)},
        )
        moment = None
    value = sensor.value
    if sensor.sensorTypeId == LOCATION_SENSOR_TYPE:
        value = located_value(sensor.lat, sensor.lng, sensor.value)
    return Reading(
        sensor_id=sensor.id,
        time=moment,
        type_id=sensor.sensorTypeId,
        value=value,
        is_alarm=sensor.isAlarms if sensor.isAlarms is not None else sensor.isAlarm,
        is_line=sensor.isLine,
        name=sensor.sensorName,
        unit=sensor.unit,
        switcher=sensor.switcher,
    )


def _api_position(device: ApiDevice) -> tuple[float, float] | None:
    if device.lat is None or device.lng is None or device.lat == device.lng == 0:
        return None
    if not (-90 <= device.lat <= 90 and -180 <= device.lng <= 180):
        logger.warning("TLINK device position out of range", extra={"tlink_device_id": device.id})
        return None
    return device.lat, device.lng


def report_from_api(device: ApiDevice, user_id: str | None, zone: ZoneInfo) -> DeviceReport:
    """A device of `getDeviceSensorDatas` as a report; never raises for odd sensor values."""
    readings = tuple(_api_reading(device.id, sensor, zone) for sensor in device.sensorsList)
    return DeviceReport(
        device_id=device.id,
        origin="api",
        time=_newest_time(readings),
        readings=readings,
        user_id=user_id,
        name=device.deviceName,
        position=newest_fix(device.id, readings),
        api_lat_lng=_api_position(device),
    )


def _newest_time(readings: Sequence[Reading]) -> datetime | None:
    times = [reading.time for reading in readings if reading.time is not None]
    return max(times) if times else None


# --- Storing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    device: Device
    location: Location | None
    stored_readings: int


@dataclass(frozen=True)
class Prepared:
    """An ingestion computed on what was read, its writes not committed yet."""

    ingested: Ingested
    writes: Writes
    # The push names a new device past `max_devices`: nothing to write, nothing to push.
    skipped_device: bool = False
    # The device's sensor cap was first reached now: notify once the writes are committed.
    notify_sensor_cap: bool = False


def _nothing(batch: object) -> None:
    """The writes of a skipped push: none."""


def reading_id(device_id: int, sensor_id: int, moment: datetime) -> str:
    return f"{device_id}_{sensor_id}_{int(moment.timestamp())}"


def _merge_sensor(old: SensorState | None, reading: Reading) -> SensorState:
    """The sensor's latest state: the value moves only forward in time; names always update."""
    base = old or SensorState(sensor_id=reading.sensor_id)
    update: dict[str, object] = {}
    if reading.type_id is not None:
        update["type_id"] = reading.type_id
    if reading.name:
        update["name"] = reading.name
    if reading.unit:
        update["unit"] = reading.unit
    if reading.time is not None and (base.time is None or reading.time >= base.time):
        update.update(
            value=reading.value,
            re_val=reading.re_val,
            is_alarm=reading.is_alarm,
            is_line=reading.is_line,
            switcher=reading.switcher,
            time=reading.time,
        )
    return base.model_copy(update=update)


def in_alarm(sensors: Mapping[str, SensorState]) -> bool:
    """Whether a sensor of the device (a location sensor aside) is in alarm by its latest
    reading."""
    return any(
        state.type_id != LOCATION_SENSOR_TYPE and (state.is_alarm or "").strip() == ALARM_ON
        for state in sensors.values()
    )


def attributes(report: DeviceReport, sensors: dict[str, SensorState]) -> dict[str, AttributeValue]:
    """The report's sensor values keyed by sensor name (else `sensor_<id>`), numbers as numbers;
    Traccar's `alarm=general` while a sensor of the device is in alarm (`sensors`, its latest
    states: see "Alarms" in the module docstring)."""
    found: dict[str, AttributeValue] = {}
    for reading in sorted(report.readings, key=lambda item: item.sensor_id):
        # A switch may carry its state in `switcher` only (PROTOCOLS.md §4).
        value = reading.value if reading.value not in (None, "") else reading.switcher
        if reading.type_id == LOCATION_SENSOR_TYPE or value is None:
            continue
        state = sensors.get(str(reading.sensor_id))
        name = ((state.name if state else None) or "").strip() or f"sensor_{reading.sensor_id}"
        # A name Firestore could not store in the position (`__x__`, too long, broken UTF-8)
        # is renamed: it failed the run's final commit after the push (issue 12).
        name = attribute_name(name)
        # Two sensors of one name: the second is told apart by its id; so is a name that is
        # Traccar's own key, whose meaning and unit Traccar would assume.
        if name in found or name in TRACCAR_ATTRIBUTE_KEYS or name == VALID:
            name = attribute_name(f"{name}_{reading.sensor_id}")
        found[name] = attribute_value(storable_text(value))
    if in_alarm(sensors):
        found[ALARM] = ALARM_GENERAL
    return found


class Ingestion:
    def __init__(
        self,
        repository: TlinkRepository,
        *,
        retention: timedelta,
        max_future_skew: float,
        max_sensors: int,
        max_devices: int,
        notifier: Callable[[], Notifier],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        self._retention = retention
        self._max_future_skew = max_future_skew
        self._max_sensors = max_sensors
        self._max_devices = max_devices
        # A callable: the notifier's module loads when a mail is due, not on every ingestion.
        self._notifier = notifier
        self._clock = clock

    def apply(self, report: DeviceReport) -> Ingested:
        """Store `report` in one batch; the Location to push, if any (a pull's ingestion)."""
        loaded = self._repository.load(report.device_id, bridge_id(report.device_id))
        prepared = self.prepare(report, loaded)
        self._repository.commit(prepared.writes)
        self.committed(prepared)
        return prepared.ingested

    def committed(self, prepared: Prepared) -> None:
        """What follows a prepared ingestion's commit: the sensor cap's one notification (after
        the commit, so a failed one is retried with its push and notifies then)."""
        if prepared.notify_sensor_cap:
            device_id = tlink_device_id(prepared.ingested.device)
            self._notifier().tlink_sensor_cap(device_id, self._max_sensors)

    def prepare(
        self, report: DeviceReport, loaded: Loaded, *, event: TlinkEvent | None = None
    ) -> Prepared:
        """`report`'s ingestion on the documents `loaded` holds: the device, its Location if
        placed, and the writes (with `event`, for a push: pending when there is a position,
        done otherwise) for the caller to commit."""
        now = self._clock()
        bridge = loaded.bridge
        if loaded.device is None and report.origin == "push" and self._devices_full():
            return self._skipped(report, bridge, now)
        document = loaded.device or TlinkDevice(
            id=str(report.device_id), device_id=report.device_id
        )

        update: dict[str, object] = {}
        user_id = document.user_id
        if report.origin == "api" or loaded.device is None:
            # A pull answers for the user it was made for; a push binds a new device only.
            if report.user_id:
                update["user_id"] = user_id = report.user_id
            if report.parent_user_id:
                update["parent_user_id"] = report.parent_user_id
        elif report.user_id and report.user_id != document.user_id:
            logger.warning(
                "TLINK push names another user than the device's; the device stays bound to "
                "its user (only a pull for the new user rebinds it)",
                extra={
                    "tlink_device_id": report.device_id,
                    "user_id": document.user_id,
                    "pushed_user_id": report.user_id,
                },
            )
        if report.name:
            update["name"] = report.name
        if report.origin == "api":
            lat, lng = report.api_lat_lng or (None, None)
            update.update(lat=lat, lng=lng, last_pull=now)
        else:
            update["last_push"] = now

        sensors = dict(document.sensors)
        report, over_cap = self._admissible(report, sensors, now)
        if over_cap and document.sensor_cap_notified is None:
            update["sensor_cap_notified"] = now
        changed: set[str] = set()
        readings: dict[str, TlinkReading] = {}
        for reading in report.readings:
            key = str(reading.sensor_id)
            merged = _merge_sensor(sensors.get(key), reading)
            if merged != sensors.get(key):
                sensors[key] = merged
                changed.add(key)
            if reading.time is None:
                continue
            identifier = reading_id(report.device_id, reading.sensor_id, reading.time)
            readings[identifier] = TlinkReading(  # a repeated (sensor, time): the last one
                id=identifier,
                device_id=report.device_id,
                sensor_id=reading.sensor_id,
                type_id=reading.type_id,
                user_id=user_id,
                time=reading.time,
                value=reading.value,
                re_val=reading.re_val,
                is_alarm=reading.is_alarm,
                switcher=reading.switcher,
                origin=report.origin,
                expire_at=reading.time + self._retention,
            )
        update["sensors"] = sensors
        document = document.model_copy(update=update)

        device = self._bridge_device(report, document, bridge, now)
        location = self._location(device, report, document)
        if event is not None and location is not None:
            # Pending until the run that pushes the position commits its outcome.
            event = event.model_copy(update={"status": "pending"})
        writes = self._repository.writes(
            device=document,
            changed_sensors=changed,
            readings=readings.values(),
            bridge_device=device,
            bridge_exists=bridge is not None,
            event=event,
            event_read=loaded.event,
        )
        return Prepared(
            Ingested(device, location, len(readings)),
            writes,
            notify_sensor_cap="sensor_cap_notified" in update,
        )

    def _devices_full(self) -> bool:
        # Counted only for a device not recorded yet: a known device's push costs no query.
        return self._repository.count_devices() >= self._max_devices

    def _skipped(self, report: DeviceReport, bridge: Device | None, now: datetime) -> Prepared:
        logger.warning(
            "TLINK push of a new device skipped: %d devices are recorded already "
            "(RECEIVER_MAX_DEVICES); nothing stored",
            self._max_devices,
            extra={"tlink_device_id": report.device_id},
        )
        document = TlinkDevice(id=str(report.device_id), device_id=report.device_id)
        device = self._bridge_device(report, document, bridge, now)
        return Prepared(Ingested(device, None, 0), _nothing, skipped_device=True)

    def _bridge_device(
        self, report: DeviceReport, document: TlinkDevice, bridge: Device | None, now: datetime
    ) -> Device:
        device_key = bridge_id(report.device_id)
        name = document.name or (bridge.name if bridge else "") or f"TLINK {report.device_id}"
        return Device(
            id=device_key,
            source=Source.TLINK,
            name=name,
            traccar_unique_id=device_key,
            first_seen=bridge.first_seen if bridge else now,
            last_seen=now,
        )

    def _admissible(
        self, report: DeviceReport, sensors: dict[str, SensorState], now: datetime
    ) -> tuple[DeviceReport, bool]:
        """`report` without the readings it may not claim (dated too far ahead, a new sensor
        past the cap: both logged), and whether the sensor cap refused one."""
        kept: list[Reading] = []
        future: list[int] = []
        over_cap: list[int] = []
        known = set(sensors)
        for reading in report.readings:
            key = str(reading.sensor_id)
            if reading.time is not None and self._ahead(reading.time, now):
                future.append(reading.sensor_id)
                continue
            if key not in known:
                if len(known) >= self._max_sensors:
                    over_cap.append(reading.sensor_id)
                    continue
                known.add(key)
            kept.append(reading)
        packet_ahead = report.time is not None and self._ahead(report.time, now)
        if future or packet_ahead:
            logger.warning(
                "TLINK readings dated more than %g s ahead skipped (MAX_FUTURE_SKEW)",
                self._max_future_skew,
                extra={
                    "tlink_device_id": report.device_id,
                    "origin": report.origin,
                    "skipped": len(future),
                    "sensor_ids": future[:LOGGED_SENSOR_IDS],
                    "time": report.time.isoformat() if report.time else None,
                },
            )
        if over_cap:
            logger.warning(
                "TLINK sensors beyond the device's cap of %d skipped "
                "(TLINK_MAX_SENSORS_PER_DEVICE); its known sensors still update",
                self._max_sensors,
                extra={
                    "tlink_device_id": report.device_id,
                    "origin": report.origin,
                    "skipped": len(over_cap),
                    "sensor_ids": over_cap[:LOGGED_SENSOR_IDS],
                },
            )
        if len(kept) == len(report.readings) and not packet_ahead:
            return report, False
        # The position and the report's time come from what is kept only.
        moment = _newest_time(kept) if report.origin == "api" else report.time
        return dataclasses.replace(
            report,
            readings=tuple(kept),
            position=newest_fix(report.device_id, kept),
            time=None if moment is None or self._ahead(moment, now) else moment,
        ), bool(over_cap)

    def _ahead(self, moment: datetime, now: datetime) -> bool:
        return too_far_ahead(moment.timestamp(), now=now, skew=self._max_future_skew)

    def _location(
        self, device: Device, report: DeviceReport, document: TlinkDevice
    ) -> Location | None:
        found = attributes(report, document.sensors)
        if report.position is not None:
            lat, lng, moment = report.position.lat, report.position.lng, report.position.time
        elif document.lat is not None and document.lng is not None and report.time is not None:
            # The console's pin, not a fix (PROTOCOLS.md §4): the readings go there, marked so
            # Traccar never takes the pin for where the device was seen.
            lat, lng, moment = document.lat, document.lng, report.time
            found[VALID] = False
        else:
            return None
        return Location(
            id=device.id,
            lat=lat,
            lon=lng,
            timestamp=int(moment.timestamp()),
            source=Source.TLINK,
            attributes=found,
        )
