"""From Smartcar signals to what Traccar is sent: units converted, failures skipped, never guessed.

`read_signals` reads the signals of one delivery into a `Reading`:

    location-preciselocation       → position (latitude, longitude), heading → bearing
    odometer-traveleddistance      → attribute `odometer` in METRES (Traccar's own unit for it)
    tractionbattery-stateofcharge  → `Location.battery` (0..100) and attribute `stateOfCharge`
    tractionbattery-range          → attribute `range` in km
    charge-ischarging              → attribute `charge` (bool)
    motion-currentspeed            → `Location.speed` in knots (OsmAnd's unit)
    charge-voltage                 → attribute `power` in volts (Traccar's key and unit)
    closure-islocked               → attribute `lock` (bool, true: locked)
    closure-doors                  → attribute `door` (bool, true: a door is open)
    internalcombustionengine-fuellevel        → attribute `fuelLevel` in percent
    internalcombustionengine-amountremaining  → attribute `fuel` in litres
    any other signal               → its numeric and boolean fields as attributes (`pass_through`)

Traccar's keys (`Position.java`, PROTOCOLS.md §1) are used where the signal means the same thing
in Traccar's unit; the signal codes and bodies are Smartcar's signal schema
(https://smartcar.com/docs/api-reference/signals/schema). A value in another unit (fuel in
gallons) keeps the code and names its unit (`pass_through`).

Every numeric or boolean signal reaches Traccar (PROTOCOLS.md §3: what Traccar's own decoder
gets right), under Traccar's key where one exists, else under the signal's code; a body carrying
a `unit` this module does not convert names it in the key (`charge-amperage-amperes`), so a
value is never read in a unit it is not in.

Distances in miles and speeds in mph are converted; a body without a unit is read in Smartcar's
default metric units; an explicit unit this module does not know is skipped (logged), never
taken for another. A signal without body (`status.error`) is skipped; so is a body that does not
hold what its code promises. Nothing here invents coordinates: `to_location` gives a position
only from the delivery's own location signal or from a last known one the caller passes (also
when the delivery's location is older than that one: out of order, it is not sent back).

One delivery is one position (`to_location`), timed at the delivery (`meta.deliveredAt`), as
Traccar's own decoder does: a parked, charging car repeats its location with the same
`oemUpdatedAt` and a new state of charge every time, and each of those readings must reach
Traccar. A position whose location is not new is sent `valid=false`; the delivery's `eventId`
is part of its fingerprint (`Location.delivery`), so two deliveries never collapse into one.

What a delivery may claim is bounded before it is read (issue 13): `split_ahead` sets aside the
signals measured more than `MAX_FUTURE_SKEW` after the clock (stored, such a signal would stay
"the latest" of its code, and its position the vehicle's newest, until that date), and
`split_over_cap` the codes a vehicle does not have yet once it holds
`SMARTCAR_MAX_SIGNALS_PER_VEHICLE` (its record is one Firestore document: 1 MiB at most).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.firestore_limits import name_problem
from shared.models import AttributeValue, Location, Source, too_far_ahead
from shared.sources.smartcar.payloads import Signal

logger = logging.getLogger(__name__)

LOCATION = "location-preciselocation"
ODOMETER = "odometer-traveleddistance"
STATE_OF_CHARGE = "tractionbattery-stateofcharge"
RANGE = "tractionbattery-range"
IS_CHARGING = "charge-ischarging"
SPEED = "motion-currentspeed"
VOLTAGE = "charge-voltage"
IS_LOCKED = "closure-islocked"
DOORS = "closure-doors"
FUEL_LEVEL = "internalcombustionengine-fuellevel"
FUEL_AMOUNT = "internalcombustionengine-amountremaining"

METRES_PER_KM = 1000.0
KM_PER_MILE = 1.609344
KPH_PER_KNOT = 1.852

_KILOMETRES = {"km", "kilometers", "kilometres", "kilometer", "kilometre"}
_MILES = {"mi", "miles", "mile"}
_KPH = {"kph", "km/h", "kmh", "kilometers_per_hour", "kilometres_per_hour"}
_MPH = {"mph", "miles_per_hour"}
_VOLTS = {"v", "volt", "volts"}
_PERCENT = {"percent", "%"}
_LITRES = {"l", "liter", "liters", "litre", "litres"}
_NO_UNIT: set[str] = set()
# Traccar's attribute key for a signal's `value` carried as-is, and the units it may come in
# (none: only without a unit): Position.KEY_POWER (volts), KEY_LOCK (bool), KEY_FUEL_LEVEL
# (percent), KEY_FUEL (litres).
TRACCAR_KEYS = {
    VOLTAGE: ("power", _VOLTS),
    IS_LOCKED: ("lock", _NO_UNIT),
    FUEL_LEVEL: ("fuelLevel", _PERCENT),
    FUEL_AMOUNT: ("fuel", _LITRES),
}
# Traccar's KEY_DOOR: whether a door is open (`closure-doors` lists each door's `isOpen`).
DOOR = "door"
# The attribute Traccar's OsmAnd decoder reads as the position's validity (shared/traccar.py
# passes a bool of that name through).
VALID = "valid"

# Where a position without a location signal of its own comes from (`Location.loc_status`).
LAST_KNOWN = "last_known"


@dataclass
class Reading:
    """What one delivery's signals say, in the units Traccar wants."""

    lat: float | None = None
    lon: float | None = None
    located_at: int | None = None  # epoch seconds of the location signal
    bearing: float | None = None
    speed: float | None = None  # knots
    battery: float | None = None  # percent
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "code: why", for logs and the record

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None


def _number(body: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = body.get(key)
        # bool is an int to Python, never a measurement here.
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _unit(body: dict[str, Any]) -> str | None:
    unit = body.get("unit")
    return unit.strip().lower() if isinstance(unit, str) else None


def distance_km(body: dict[str, Any]) -> float | None:
    """A distance body (`unit` kilometers|miles, `value`) in km; None when unusable."""
    value = _number(body, "value")
    unit = _unit(body)
    if value is None:
        return None
    if unit is None or unit in _KILOMETRES:
        return value
    if unit in _MILES:
        return value * KM_PER_MILE
    return None


def speed_knots(body: dict[str, Any]) -> float | None:
    """A speed body (`unit` kph|mph, `value`) in knots; None when unusable."""
    value = _number(body, "value")
    unit = _unit(body)
    if value is None or value < 0:
        return None
    if unit is None or unit in _KPH:
        return value / KPH_PER_KNOT
    if unit in _MPH:
        return value * KM_PER_MILE / KPH_PER_KNOT
    return None


def _percent(body: dict[str, Any]) -> float | None:
    value = _number(body, "value", "percentage")
    return value if value is not None and 0 <= value <= 100 else None


def _read_location(reading: Reading, signal: Signal, body: dict[str, Any]) -> bool:
    lat, lon = _number(body, "latitude"), _number(body, "longitude")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return False
    reading.lat, reading.lon = lat, lon
    reading.located_at = signal.measured_at()
    heading = _number(body, "heading")
    reading.bearing = heading % 360 if heading is not None else None
    return True


def _read(reading: Reading, signal: Signal, body: dict[str, Any]) -> bool:
    """Read one signal with a body into `reading`; False when its body is unusable."""
    code = signal.code
    if code == LOCATION:
        return _read_location(reading, signal, body)
    if code == ODOMETER:
        km = distance_km(body)
        if km is None:
            return False
        reading.attributes["odometer"] = round(km * METRES_PER_KM, 1)
    elif code == STATE_OF_CHARGE:
        percent = _percent(body)
        if percent is None:
            return False
        reading.battery = percent
        reading.attributes["stateOfCharge"] = percent
    elif code == RANGE:
        km = distance_km(body)
        if km is None:
            return False
        reading.attributes["range"] = round(km, 3)
    elif code == IS_CHARGING:
        value = body.get("value")
        if not isinstance(value, bool):
            return False
        reading.attributes["charge"] = value
    elif code == SPEED:
        knots = speed_knots(body)
        if knots is None:
            return False
        reading.speed = knots
    elif code == DOORS:
        # The door list as Traccar's one flag, and the body's scalar fields as they are.
        door = _any_door_open(body)
        if door is not None:
            reading.attributes[DOOR] = door
        return pass_through(reading.attributes, code, body) or door is not None
    else:
        return pass_through(reading.attributes, code, body)
    return True


def _any_door_open(body: dict[str, Any]) -> bool | None:
    """Whether any door of a `closure-doors` body (`values: [{row, column, isOpen}]`) is open;
    None when the body holds no door with a boolean `isOpen`."""
    values = body.get("values")
    if not isinstance(values, list):
        return None
    states = [
        door["isOpen"]
        for door in values
        if isinstance(door, dict) and isinstance(door.get("isOpen"), bool)
    ]
    return any(states) if states else None


def _key_part(text: str) -> str:
    return "_".join(text.strip().lower().split())


def pass_through(attributes: dict[str, AttributeValue], code: str, body: dict[str, Any]) -> bool:
    """A signal this module does not convert, as attributes: `value` under Traccar's key for the
    code (when its unit is Traccar's) or the code itself, any other numeric or boolean field
    under `<code>-<field>`; a unit, when the body names one, ends the key (`-<unit>`), so a
    reader never mistakes amperes for volts. False when the body holds no such field."""
    unit = _unit(body)
    suffix = f"-{_key_part(unit)}" if unit else ""
    found = False
    for name, value in body.items():
        if name == "unit" or not isinstance(value, bool | int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        traccar = TRACCAR_KEYS.get(code)
        if name == "value" and traccar is not None and (unit is None or unit in traccar[1]):
            key = traccar[0]
        elif name == "value":
            key = code + suffix
        else:
            key = f"{code}-{_key_part(name)}{suffix}"
        key = key[:256]
        if name_problem(key) is not None:
            continue  # a body's odd field name: Firestore could not store the position
        attributes[key] = value
        found = True
    return found


def read_signals(signals: list[Signal]) -> Reading:
    """The delivery's signals read oldest first, so the newest value of a code wins."""
    reading = Reading()
    ordered = sorted(signals, key=lambda signal: signal.measured_at() or 0)
    for signal in ordered:
        if signal.body is None:
            reading.skipped.append(f"{signal.code}: {signal.failure()}")
        elif not _read(reading, signal, signal.body) and signal.code in READ_CODES:
            reading.skipped.append(f"{signal.code}: unusable body")
    return reading


def split_ahead(
    signals: list[Signal], *, now: datetime, skew: float
) -> tuple[list[Signal], list[str]]:
    """The signals measured at most `skew` seconds after `now`, and "code: why" for the others."""
    kept, skipped = [], []
    for signal in signals:
        measured = signal.measured_at()
        if measured is not None and too_far_ahead(measured, now=now, skew=skew):
            ahead = measured - int(now.timestamp())
            skipped.append(f"{signal.code}: measured {ahead} s ahead of the clock")
        else:
            kept.append(signal)
    return kept, skipped


# The codes this module reads: never refused by the cap, so a vehicle filled with other codes
# still keeps its position and the readings Traccar is sent.
READ_CODES = frozenset({LOCATION, ODOMETER, STATE_OF_CHARGE, RANGE, IS_CHARGING, SPEED})


def split_over_cap(
    known: Collection[str], signals: list[Signal], *, cap: int
) -> tuple[list[Signal], list[str]]:
    """The signals a vehicle already holding the codes `known` may store, and the codes refused:
    a new code is taken while the vehicle holds fewer than `cap` codes; known codes (and those
    this module reads) always are."""
    codes = set(known)
    kept, refused = [], []
    for signal in signals:
        if signal.code in codes or signal.code in READ_CODES or len(codes) < cap:
            codes.add(signal.code)
            kept.append(signal)
        elif signal.code not in refused:
            refused.append(signal.code)
    return kept, refused


def to_location(
    vehicle_id: str,
    reading: Reading,
    *,
    delivered_at: int,
    last_known: tuple[float, float] | None,
    last_located_at: int | None = None,
    delivery: str | None = None,
) -> Location | None:
    """The one position of a delivery, or None when there is no place to put it at.

    Timed `delivered_at` (the delivery's `meta.deliveredAt`), at the delivery's own location or,
    without one, at the vehicle's last known position (`loc_status` "last_known"); without a last
    known position either: None. The location is not new, and the position is sent
    `valid=false`, when it is the last known one or its `oemUpdatedAt` is not after the stored
    location's (`last_located_at`). A location measured *before* the stored one (deliveries
    come out of order, PROTOCOLS.md §3) is not sent at all: the position goes to the last known
    place, as without a location, since Traccar makes the newest-timed position the device's
    current one and the car would jump back to where it was. `delivery` (the event id) makes
    its fingerprint its own.
    """
    stale = (
        reading.located
        and last_known is not None
        and reading.located_at is not None
        and last_located_at is not None
        and reading.located_at < last_located_at
    )
    if reading.located and not stale:
        lat, lon = reading.lat, reading.lon
        status, bearing = None, reading.bearing
        new = (
            reading.located_at is None
            or last_located_at is None
            or reading.located_at > last_located_at
        )
    elif last_known is not None:
        # The heading came with the delivery's own (older or missing) location: not sent.
        (lat, lon), status, bearing, new = last_known, LAST_KNOWN, None, False
    else:
        return None
    attributes = dict(reading.attributes)
    if not new:
        attributes[VALID] = False
    try:
        return Location(
            id=vehicle_id,
            lat=lat,
            lon=lon,
            timestamp=delivered_at,
            speed=reading.speed,
            bearing=bearing,
            battery=reading.battery,
            loc_status=status,
            source=Source.SMARTCAR,
            attributes=attributes,
            delivery=delivery,
        )
    except ValidationError as exc:
        # A time out of Location's range (before 1970, after 2038): nothing sensible to push.
        logger.warning(
            "Smartcar position not pushed: %s",
            exc.errors()[0]["msg"],
            extra={"vehicle_id": vehicle_id},
        )
        return None
