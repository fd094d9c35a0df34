"""The API's OpenAPI 3.1 document: built from the route table below and the pydantic models.

`shared/openapi.json` is the checked-in result (`make openapi` rewrites it); the API serves
that file at `GET /openapi.json`. Tests fail when the file is stale, or when a route of the app
is missing from the document or the reverse.
"""

from __future__ import annotations

import functools
import json
import types
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared import __version__
from shared.models import Location, PushLogEntry
from shared.removal import DeviceRemoved
from shared.service_status import HealthReport, VersionInfo
from shared.services import DeviceView, ExcludedView, ServiceSpec, ServiceView
from shared.sources.google.account import CredentialsUploaded, TokenStatus
from shared.sources.google.accounts import AccountRemoved, AccountView
from shared.sources.google.credentials import AasTokenUpload, GoogleSecretsUpload
from shared.sources.google.places import PlaceDeleted, PlaceSpec, PlaceView, SemanticLocation
from shared.sources.google.ring import SoundAnswer
from shared.sources.smartcar import connect as smartcar_connect
from shared.sources.smartcar import views as smartcar_views
from shared.sources.tlink import views as tlink_views
from shared.status_report import StatusReport
from shared.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

DOCUMENT = Path(__file__).with_name("openapi.json")
# Routes open without the bearer token (the API's PUBLIC_ENDPOINTS).
PUBLIC_PATHS = frozenset({"/health", "/versions", "/smartcar/exchange", "/status"})
# Traccar's Find Hub commands (PROTOCOLS.md §2b): opened by the command key, not the API token.
COMMAND_PATHS = frozenset(
    f"/devices/{{unique_id}}/{command}"
    for command in ("position-single", "position-periodic", "position-stop")
)
COMMAND_KEY_MISSING = (
    "no command key stored: the error names the secret to set (traccar-command-key)"
)


class ErrorBody(BaseModel):
    error: str


class LocationResult(BaseModel):
    location: Location
    status: str
    message: str | None = None


class SavedLocation(BaseModel):
    status: str
    hash: str


class PushLogEntryShown(PushLogEntry):
    """A push-log entry as `GET /push-log` answers it: `id` and `device_id` name the device by
    its uniqueId in Traccar, `vendor_id` by the id the bridge stores it under."""

    vendor_id: str


class PushLogPage(BaseModel):
    entries: list[PushLogEntryShown]
    next_cursor: str | None


class Deleted(BaseModel):
    status: str
    id: str
    vendor_id: str


class SentStatus(BaseModel):
    status: str


DEVICE_ID = {"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the device's uniqueId in Traccar (`id` in GET /devices); the id the "
                            "bridge stores it under (`vendor_id`) works too; a uniqueId two "
                            "devices share is a 409 naming both"}  # fmt: skip


def _query(name: str, kind: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False,
            "schema": {"type": kind, **schema}, "description": description}  # fmt: skip


TLINK_USER = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "TLINK userId (the push's deviceUserid)"}  # fmt: skip
TLINK_DEVICE = {"name": "device_id", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "TLINK deviceId"}  # fmt: skip
TLINK_TIME = "inclusive bound: 'yyyy-MM-dd HH:mm:ss' in TLINK_TIME_ZONE, or ISO 8601"
# A listing's page (issue 13: bounded reads): the body stays what it was, the next page's
# address comes in a Link header.
PAGE_PARAMETERS = [
    _query("limit", "integer", "items per page", minimum=1, maximum=MAX_PAGE_SIZE,
           default=DEFAULT_PAGE_SIZE),
    _query("cursor", "string", "where the next page starts: take it from the Link header"),
]  # fmt: skip
LINK_HEADER = {
    "Link": {
        "description": 'the next page, `<same path and query with cursor>; rel="next"` '
        "(relative URL); absent on the last page",
        "schema": {"type": "string"},
    }
}
PAGED_PATHS = frozenset({"/locations", "/push-log", "/devices"})
API_AUTH_MISSING = (
    "the API's bearer token is not configured (SECRETS_BACKEND=secret_manager and the "
    "api-token secret has no version)"
)
UNIQUE_ID = {"name": "unique_id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the device's unique id in Traccar (the id the bridge pushes "
                            "with)"}  # fmt: skip
PLACE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "the place name as Google reports it (\"Home\", a room)"}  # fmt: skip
GOOGLE_ACCOUNT = _query(
    "account", "string",
    "the Google account's username; optional while at most one account is stored",
)  # fmt: skip
USERNAME = {"name": "username", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "the account's username (secrets.json `username`)"}  # fmt: skip
SOUND_ANSWERS: dict[int, tuple[str, Any]] = {
    200: ("Nova's answer: accepted, or refused with its reason", SoundAnswer),
    400: ("not a Google device (the error names its source)", ErrorBody),
    404: ("unknown device", ErrorBody),
    502: ("Google's token service failed", ErrorBody),
    503: ("Google credentials missing or expired, or Nova unavailable", ErrorBody),
}
SMARTCAR_VEHICLE_ID = {"name": "vehicle_id", "in": "path", "required": True,
                       "schema": {"type": "string"},
                       "description": "Smartcar vehicleId"}  # fmt: skip

# (method, path, summary, body model, {status: (description, model or list[model])}, params)
ROUTES: list[tuple[str, str, str, Any, dict[int, tuple[str, Any]], list[dict[str, Any]]]] = [
    ("get", "/health",
     "Liveness, Google credentials state and the number of sync services (with the bearer "
     "token, the reason too)", None,
     {200: ("ok", HealthReport),
      503: ("auth_required: Google credentials expired; misconfigured: the API's bearer token "
            "is not configured (the reason names the api-token secret)", HealthReport)}, []),
    ("get", "/versions", "Version and build time", None, {200: ("ok", VersionInfo)}, []),
    ("get", "/openapi.json", "This document", None, {200: ("the document", None)}, []),
    ("get", "/status",
     "The status page (HTML, public: it holds no data and reads /status.json with the token)",
     None, {200: ("the page (text/html)", None)}, []),
    ("get", "/status.json",
     "What the status page shows: devices, outbox, credentials, Traccar, recent failures "
     "(one round of bounded reads; `reads` says how many)", None,
     {200: ("ok", StatusReport)}, []),
    ("get", "/services", "Sync services with their last run", None,
     {200: ("ok", list[ServiceView])}, []),
    ("get", "/devices/{device_id}/services", "One device's sync service", None,
     {200: ("ok", ServiceView), 404: ("no service", ErrorBody)}, [DEVICE_ID]),
    ("put", "/devices/{device_id}/services", "Create or update a sync service and its job",
     ServiceSpec,
     {201: ("created", ServiceView), 200: ("updated", ServiceView),
      403: ("excluded", ErrorBody),
      404: ("unknown device", ErrorBody)}, [DEVICE_ID]),
    ("post", "/devices/{device_id}/services/pause",
     "Pause a sync service (the user's pause: new Google credentials do not resume it)", None,
     {200: ("paused", ServiceView), 404: ("no service", ErrorBody)}, [DEVICE_ID]),
    ("post", "/devices/{device_id}/services/resume",
     "Resume a service the user paused (a Google one stays paused while the credentials are "
     "expired)", None,
     {200: ("resumed", ServiceView), 404: ("no service", ErrorBody)}, [DEVICE_ID]),
    ("delete", "/devices/{device_id}/services", "Delete a sync service and its job", None,
     {200: ("deleted", Deleted), 404: ("no service", ErrorBody)}, [DEVICE_ID]),
    # --- Traccar's "Send command" (Find Hub sender): empty answers, the work afterwards ---
    ("post", "/devices/{unique_id}/position-single",
     "Traccar's locate now: one sync of the device runs now, after the answer (empty body): "
     "its sync job's, or a one-shot job's when it has no sync service",
     None,
     {202: ("the run is requested; the position arrives with it", None),
      404: ("no device pushes with this unique id", ErrorBody),
      409: ("the device is excluded from syncing", ErrorBody)}, [UNIQUE_ID]),
    ("post", "/devices/{unique_id}/position-periodic",
     "Traccar's periodic positions: create or update the device's sync service (empty body)",
     None,
     {200: ("the service syncs every `interval` seconds", None),
      400: ("bad interval", ErrorBody),
      404: ("no device pushes with this unique id", ErrorBody)},
     [UNIQUE_ID, _query("interval", "integer",
                        "seconds between syncs (Traccar's frequency; absent from Traccar 6.8: "
                        "the auto-registration timer)", minimum=60, maximum=86_400)]),
    ("post", "/devices/{unique_id}/position-stop",
     "Traccar's stop: remove the device's sync service, if any (empty body)", None,
     {200: ("no sync service any more", None),
      404: ("no device pushes with this unique id", ErrorBody)}, [UNIQUE_ID]),
    ("get", "/excluded-devices", "Devices kept out of auto-registration", None,
     {200: ("ok", list[ExcludedView])}, []),
    ("put", "/excluded-devices/{device_id}", "Exclude a device (removes its service)", None,
     {201: ("excluded", ExcludedView), 200: ("already excluded", ExcludedView)},
     [DEVICE_ID]),
    ("delete", "/excluded-devices/{device_id}", "Stop excluding a device", None,
     {200: ("deleted", Deleted), 404: ("not excluded", ErrorBody)}, [DEVICE_ID]),
    ("get", "/locations", "Newest location per device, or the inputs not yet delivered", None,
     {200: ("ok", list[Location]), 400: ("bad filter", ErrorBody)},
     [{"name": "filter", "in": "query", "required": False, "schema": {"type": "string"},
       "description": "JSON array of locations; answers those not delivered yet (one page)"},
      *PAGE_PARAMETERS]),
    ("post", "/locations", "Mark a location delivered", Location,
     {201: ("saved", SavedLocation),
      400: ("bad location, or dated more than MAX_FUTURE_SKEW ahead of the clock", ErrorBody)},
     []),
    ("put", "/traccar/devices/{device_id}/locations",
     "Run the pipeline now, or push the location in the body with ?single", Location,
     {200: ("per-location results", list[LocationResult]),
      400: ("?single: bad location, or dated more than MAX_FUTURE_SKEW ahead of the clock",
            ErrorBody),
      404: ("unknown device", ErrorBody),
      429: ("a run of this device is in progress", ErrorBody)},
     [DEVICE_ID, {"name": "single", "in": "query", "required": False,
                  "allowEmptyValue": True, "schema": {"type": "string"}}]),
    ("get", "/push-log", "Push attempts, newest first", None,
     {200: ("a page", PushLogPage), 400: ("bad query", ErrorBody)},
     [{"name": "device_id", "in": "query", "required": False, "schema": {"type": "string"},
       "description": "only this device: its uniqueId in Traccar or its vendor_id"},
      *PAGE_PARAMETERS]),
    # --- Google Find My Device ---
    ("get", "/devices",
     "Devices of every source by stored id (the Google list is refreshed before the first "
     "page); each one's `id` is its uniqueId in Traccar, `vendor_id` the id stored", None,
     {200: ("ok", list[DeviceView]), 400: ("bad query", ErrorBody)}, PAGE_PARAMETERS),
    ("delete", "/devices/{device_id}",
     "Remove a device: its service and job, delivery state, outbox, readings and views; with "
     "?traccar=true the Traccar device; a Smartcar vehicle is disconnected at Smartcar. The "
     "answer says whether it comes back by itself (a Google device, unless excluded)", None,
     {200: ("removed", DeviceRemoved), 400: ("bad query", ErrorBody),
      404: ("unknown device", ErrorBody),
      429: ("a run of the device is pushing now: nothing removed, ask again", ErrorBody),
      502: ("Traccar or Smartcar failed; nothing was removed but the service", ErrorBody),
      503: ("Traccar's REST API or the Smartcar management token not configured (the error "
            "names what to set)", ErrorBody)},
     [DEVICE_ID, _query("traccar", "boolean", "delete the Traccar device too", default=False)]),
    ("get", "/devices/{device_id}/locations",
     "Fresh locations of one device (a Google tracker is located now; nothing is pushed; "
     "reports naming a place without coordinates come as `place` entries without lat/lon)",
     None,
     {200: ("oldest first, or with ?last the newest position",
            list[Location | SemanticLocation]),
      404: ("unknown device, or ?last and no location", ErrorBody),
      429: ("another Google locate is running", ErrorBody),
      503: ("Google credentials missing or expired", ErrorBody),
      504: ("no answer from Google in time", ErrorBody)},
     [DEVICE_ID, {"name": "last", "in": "query", "required": False, "allowEmptyValue": True,
                  "schema": {"type": "string"}, "description": "only the newest location"}]),
    ("post", "/devices/{device_id}/sound",
     "Ring a Google tracker: Nova's startSound (the answer says whether Google took it)", None,
     SOUND_ANSWERS, [DEVICE_ID]),
    ("delete", "/devices/{device_id}/sound", "Stop a Google tracker's sound (Nova's stopSound)",
     None, SOUND_ANSWERS, [DEVICE_ID]),
    ("get", "/places",
     "Place names Google's semantic reports carried (with the devices and the last time) and "
     "the coordinates given to them", None, {200: ("by name", list[PlaceView])}, []),
    ("put", "/places/{name}",
     "Give a place name coordinates: its semantic reports reach Traccar there, with the "
     "attribute `place` (accuracy default 30 m)", PlaceSpec,
     {201: ("mapped", PlaceView), 200: ("updated", PlaceView),
      400: ("bad body or name (the error names the field)", ErrorBody)}, [PLACE_NAME]),
    ("delete", "/places/{name}", "Remove a place's coordinates (its reports stop reaching Traccar)",
     None,
     {200: ("deleted", PlaceDeleted), 400: ("bad name", ErrorBody),
      404: ("the name has no coordinates", ErrorBody)}, [PLACE_NAME]),
    ("put", "/auth/secrets",
     "Store Google's secrets.json under its `username` (a new username adds an account, the "
     "same one replaces its credentials), clear that account's auth_required, resume its paused "
     "Google sync jobs",
     GoogleSecretsUpload,
     {200: ("stored", CredentialsUploaded), 400: ("a key missing or malformed", ErrorBody)}, []),
    ("put", "/auth/aas-token",
     "Replace only the stored AAS token of an account, resume its paused jobs", AasTokenUpload,
     {200: ("stored", CredentialsUploaded),
      400: ("malformed body, or several accounts and no `account`", ErrorBody),
      404: ("unknown account", ErrorBody),
      409: ("no secrets.json stored yet", ErrorBody)}, [GOOGLE_ACCOUNT]),
    ("post", "/auth/token-status",
     "Presence and age of an account's Google tokens and the FCM installation expiry (no token "
     "value)", None,
     {200: ("ok", TokenStatus), 400: ("several accounts and no `account`", ErrorBody),
      404: ("unknown account", ErrorBody)}, [GOOGLE_ACCOUNT]),
    ("get", "/auth/accounts",
     "The Google accounts with their state (auth, credentials stored, devices, open alerts; "
     "never a secret)", None, {200: ("the first account first", list[AccountView])}, []),
    ("delete", "/auth/accounts/{username}",
     "Remove a Google account: its devices' sync services and jobs, its credentials (the "
     "secret's versions disabled), its token cache, FCM lease and state. The devices stay listed",
     None, {200: ("removed", AccountRemoved), 404: ("unknown account", ErrorBody)},
     [USERNAME]),
    # --- Smartcar ---
    ("get", "/smartcar/vehicles", "Smartcar vehicles seen by webhooks or connected", None,
     {200: ("ok", list[smartcar_views.VehicleView])}, []),
    ("get", "/smartcar/vehicles/{vehicle_id}/latest-signals",
     "A Smartcar vehicle's latest value of each signal", None,
     {200: ("ok", smartcar_views.LatestSignals), 404: ("unknown vehicle", ErrorBody)},
     [SMARTCAR_VEHICLE_ID]),
    ("get", "/smartcar/connect",
     "Start Smartcar Connect: 302 to Smartcar's authorize URL with a single-use state", None,
     {302: ("redirect to Smartcar Connect (the URL also in the body)",
            smartcar_connect.ConnectStart),
      503: ("Smartcar client id, secret or redirect URI not configured (the error names the "
            "setting or secret to provide)", ErrorBody)}, []),
    ("get", "/smartcar/exchange",
     "Smartcar Connect's redirect: swaps the code for tokens and records the vehicles "
     "(public: the single-use state guards it)", None,
     {200: ("connected", smartcar_connect.Connected),
      400: ("missing, unknown, used or expired state; denied; refused code", ErrorBody),
      502: ("Smartcar failed", ErrorBody),
      503: ("Smartcar client id, secret or redirect URI not configured (the error names the "
            "setting or secret to provide)", ErrorBody)},
     [{"name": "code", "in": "query", "required": False, "schema": {"type": "string"}},
      {"name": "state", "in": "query", "required": True, "schema": {"type": "string"}},
      {"name": "error", "in": "query", "required": False, "schema": {"type": "string"}},
      {"name": "error_description", "in": "query", "required": False,
       "schema": {"type": "string"}}]),
    # --- TLINK ---
    ("get", "/tlink/users/{user_id}/devices",
     "A TLINK user's devices with their sensors' latest values and recent history", None,
     {200: ("a page of devices", tlink_views.TlinkUserDevicesPage), 400: ("bad query", ErrorBody)},
     [TLINK_USER, _query("deviceId", "integer", "only this device"),
      _query("startTime", "string", TLINK_TIME), _query("endTime", "string", TLINK_TIME),
      _query("page", "integer", "page of devices, from 1", default=1),
      _query("pageSize", "integer", "devices per page (at most 100)",
             default=tlink_views.DEFAULT_PAGE_SIZE),
      _query("historyLimit", "integer", "readings per sensor (0..100)",
             default=tlink_views.DEFAULT_LIST_HISTORY)]),
    ("get", "/tlink/users/{user_id}/devices/{device_id}/latest",
     "A TLINK device's latest value per sensor", None,
     {200: ("the device", tlink_views.TlinkDeviceLatestView),
      404: ("unknown device, or not this user's", ErrorBody)}, [TLINK_USER, TLINK_DEVICE]),
    ("get", "/tlink/users/{user_id}/devices/{device_id}/history",
     "A TLINK device's readings per sensor, newest first, one page", None,
     {200: ("the device, one page of history per sensor", tlink_views.TlinkDeviceHistoryPage),
      400: ("bad query", ErrorBody),
      404: ("unknown device or sensor, or not this user's", ErrorBody)},
     [TLINK_USER, TLINK_DEVICE, _query("sensorId", "integer", "only this sensor"),
      _query("startTime", "string", TLINK_TIME), _query("endTime", "string", TLINK_TIME),
      _query("page", "integer", "page of each sensor's history, from 1", default=1),
      _query("historyLimit", "integer", "readings per sensor and page (1..1000)",
             default=tlink_views.DEFAULT_HISTORY_LIMIT)]),
    ("post", "/notify/test", "Send a test email", None,
     {200: ("sent", SentStatus), 409: ("notifications disabled", ErrorBody),
      502: ("the send failed", ErrorBody)}, []),
]  # fmt: skip


# Links from the listings to the routes taking their ids (issue 12): schemathesis' stateful
# phase follows them, so its cases reach real devices and vehicles, not only the 404 wall.
# (source method, source path) -> [(target method, target path, path parameter)]
LINKS: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("get", "/devices"): [
        ("get", "/devices/{device_id}/services", "device_id"),
        ("put", "/devices/{device_id}/services", "device_id"),
        ("delete", "/devices/{device_id}/services", "device_id"),
        ("post", "/devices/{device_id}/services/pause", "device_id"),
        ("post", "/devices/{device_id}/services/resume", "device_id"),
        ("get", "/devices/{device_id}/locations", "device_id"),
        ("put", "/excluded-devices/{device_id}", "device_id"),
        ("delete", "/excluded-devices/{device_id}", "device_id"),
        ("put", "/traccar/devices/{device_id}/locations", "device_id"),
        ("post", "/devices/{device_id}/sound", "device_id"),
        ("delete", "/devices/{device_id}/sound", "device_id"),
    ],
    ("get", "/smartcar/vehicles"): [
        ("get", "/smartcar/vehicles/{vehicle_id}/latest-signals", "vehicle_id"),
    ],
}


def operation_id(method: str, path: str) -> str:
    """`get /devices/{device_id}/services` -> `get_devices_device_id_services`."""
    words = "".join(c if c.isalnum() else " " for c in f"{method} {path}").split()
    return "_".join(words)


def _links(method: str, path: str) -> dict[str, Any]:
    return {
        operation_id(target_method, target): {
            "operationId": operation_id(target_method, target),
            "parameters": {parameter: "$response.body#/0/id"},
        }
        for target_method, target, parameter in LINKS.get((method, path), [])
    }


def _schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    if isinstance(model, types.UnionType):
        return {"anyOf": [_schema(member, components) for member in model.__args__]}
    if getattr(model, "__origin__", None) is list:
        return {"type": "array", "items": _schema(model.__args__[0], components)}
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, answers, parameters in ROUTES:
        operation: dict[str, Any] = {
            "operationId": operation_id(method, path),
            "summary": summary,
            "responses": {},
        }
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = {
                "required": method != "put" or body is not Location,
                "content": {"application/json": {"schema": _schema(body, components)}},
            }
        for status, (description, model) in answers.items():
            response: dict[str, Any] = {"description": description}
            if model is not None:
                response["content"] = {"application/json": {"schema": _schema(model, components)}}
            operation["responses"][str(status)] = response
        if method == "get" and path in PAGED_PATHS:
            operation["responses"]["200"]["headers"] = LINK_HEADER
        if (method, path) in LINKS:
            operation["responses"]["200"]["links"] = _links(method, path)
        if path in COMMAND_PATHS:
            error = {"application/json": {"schema": _schema(ErrorBody, components)}}
            responses = operation["responses"]
            responses["401"] = {"description": "missing or wrong command key", "content": error}
            responses["503"] = {"description": COMMAND_KEY_MISSING, "content": error}
            operation["security"] = [{"commandKey": []}]
        elif path not in PUBLIC_PATHS:
            error = {"application/json": {"schema": _schema(ErrorBody, components)}}
            responses = operation["responses"]
            responses["401"] = {"description": "missing or wrong bearer token", "content": error}
            if "503" in responses:
                responses["503"]["description"] += "; or " + API_AUTH_MISSING
            else:
                responses["503"] = {"description": API_AUTH_MISSING, "content": error}
        else:
            operation["security"] = []
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "traccar-bridge API", "version": __version__},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                # The secret traccar-command-key, which Traccar sends from the device's
                # `command.findHub.key` attribute.
                "commandKey": {"type": "http", "scheme": "bearer"},
            },
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The checked-in document, read once per instance."""
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def main() -> None:
    """`python -m shared.openapi`: rewrite `shared/openapi.json` from the route table."""
    DOCUMENT.write_text(json.dumps(build_document(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
