"""TLINK's payloads (vendor field names kept) and the bridge's TLINK documents in Firestore.

Vendor models (PROTOCOLS.md §4): `PushBody` / `PushSensor` (the "device data update"
notification), `ApiDevice` / `ApiSensor` / `SensorDataPage` (`getDeviceSensorDatas`) and
`TokenAnswer` (`/oauth/token`). TLINK sends numbers as strings and strings as numbers
depending on the field and the firmware: `VendorText` accepts both and keeps the text.
TLINK's timestamps are naive ("yyyy-MM-dd HH:mm:ss", `times` "HH:MM:SS"): they stay naive here
and become UTC in `shared.sources.tlink.ingest`, where the zone is known.

Firestore documents: `TlinkDevice` (`tlink_devices/<deviceId>`: binding, name, position from
the pull API, latest value per sensor), `TlinkReading`
(`tlink_readings/<deviceId>_<sensorId>_<epoch>`, the id being the deduplication key),
`TlinkEvent` (`webhook_events/tlink-<sha256 of body>`) and `CachedToken` (`state/tlink_token`).
"""

from __future__ import annotations

import math
from datetime import datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shared.store.tlink import CachedToken, SensorState, TlinkDevice, TlinkEvent, TlinkReading

MAX_SENSORS_PER_PUSH = 400  # one push is one Firestore batch; far more than a device carries
TLINK_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SENSOR_TIME_FORMAT = "%H:%M:%S"


def _text(value: Any) -> Any:
    """Numbers TLINK sends unquoted are kept as the text they would have been."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return value


def _optional_float(value: Any) -> Any:
    """An empty coordinate ("" or missing) is unknown, not an error."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _naive_time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), TLINK_TIME_FORMAT)
        except ValueError:
            raise ValueError("expected a time as 'yyyy-MM-dd HH:mm:ss'") from None
    raise ValueError("expected a time as 'yyyy-MM-dd HH:mm:ss'")


def _optional_naive_time(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value  # epoch milliseconds: an absolute time, converted by `ingest`
    return _naive_time(value)


def _sensor_time(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), SENSOR_TIME_FORMAT).time()
        except ValueError:
            raise ValueError("expected a time of day as 'HH:MM:SS'") from None
    raise ValueError("expected a time of day as 'HH:MM:SS'")


VendorText = Annotated[str | None, BeforeValidator(_text)]
VendorCoordinate = Annotated[float | None, BeforeValidator(_optional_float)]
NaiveTime = Annotated[datetime, BeforeValidator(_naive_time)]
SensorTime = Annotated[time | None, BeforeValidator(_sensor_time)]


# --- Push ----------------------------------------------------------------------------------


class PushSensor(BaseModel):
    """One entry of `sensorsDates`."""

    model_config = ConfigDict(extra="ignore")

    sensorsId: int = Field(ge=0)
    sensorsTypeId: int | None = None
    value: VendorText = None
    # A location sensor's fix, when a push carries it as the pull API does (PROTOCOLS.md §4).
    lat: VendorCoordinate = None
    lng: VendorCoordinate = None
    reVal: VendorText = None
    isAlarm: VendorText = None
    isLine: VendorText = None
    times: SensorTime = None
    switcher: VendorText = None
    isAbnormal: VendorText = None
    isHeartbeat: VendorText = None


class PushBody(BaseModel):
    """TLINK's "device data update" notification."""

    model_config = ConfigDict(extra="ignore")

    flag: VendorText = None
    deviceId: int = Field(ge=0)
    deviceUserid: VendorText = None
    parentUserId: VendorText = None
    time: NaiveTime
    rawData: VendorText = None
    sensorsDates: list[PushSensor] = Field(default_factory=list, max_length=MAX_SENSORS_PER_PUSH)


# --- Pull API ------------------------------------------------------------------------------


class ApiSensor(BaseModel):
    """One entry of a device's `sensorsList` in `getDeviceSensorDatas`."""

    model_config = ConfigDict(extra="ignore")

    id: int = Field(ge=0)
    sensorName: VendorText = None
    sensorTypeId: int | None = None
    value: VendorText = None
    unit: VendorText = None
    # A location sensor's fix (`sensorTypeId` 3): its own lat/lng, not `value` (TLINK's sample).
    lat: VendorCoordinate = None
    lng: VendorCoordinate = None
    isAlarms: VendorText = None  # the pull's alarm flag (a push's is `isAlarm`)
    isAlarm: VendorText = None  # tolerated: what a push calls it
    switcher: VendorText = None  # a switch's state (types 2 and 5)
    isLine: VendorText = None
    # "yyyy-MM-dd HH:mm:ss" in TLINK's zone (naive datetime), or epoch milliseconds (int).
    updateDate: Annotated[datetime | int | None, BeforeValidator(_optional_naive_time)] = None


class ApiDevice(BaseModel):
    """One entry of `dataList` in `getDeviceSensorDatas`."""

    model_config = ConfigDict(extra="ignore")

    id: int = Field(ge=0)
    deviceName: VendorText = None
    lat: VendorCoordinate = None
    lng: VendorCoordinate = None
    isLine: VendorText = None
    sensorsList: list[ApiSensor] = Field(default_factory=list)


class SensorDataPage(BaseModel):
    """The answer of `getDeviceSensorDatas`: one page of a user's devices."""

    model_config = ConfigDict(extra="ignore")

    flag: VendorText = None
    msg: VendorText = None
    dataList: list[ApiDevice] = Field(default_factory=list)
    currPage: int | None = None
    pages: int = Field(1, ge=0)


class TokenAnswer(BaseModel):
    """The answer of `/oauth/token` (password or refresh_token grant)."""

    model_config = ConfigDict(extra="ignore")

    access_token: str = Field(min_length=1)
    expires_in: int = Field(ge=1)
    refresh_token: str | None = None
    token_type: str | None = None


class Credentials(BaseModel):
    """The `tlink-credentials` secret (JSON)."""

    model_config = ConfigDict(extra="ignore")

    clientId: str = Field(min_length=1)
    clientSecret: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)
    # The account whose devices are pulled when a device has no binding yet (no push seen).
    userId: VendorText = None


# --- Firestore documents: in `shared.store.tlink`, named here too -------------------------

__all__ = ["CachedToken", "SensorState", "TlinkDevice", "TlinkEvent", "TlinkReading"]
