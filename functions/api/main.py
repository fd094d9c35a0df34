"""The REST API (`api` entry point): thin routes over the library; JSON in, JSON out.

The routes and their shapes are those of seed 000 (see SPEC.md), documented in
`shared/openapi.json` and served at `GET /openapi.json`. Each vendor's modules, the OpenAPI
table (which names all their models), the services, sync and notification modules are imported
by the routes that use them: a cold instance answering `/health` loads the settings, the store
and the models it reads, nothing else (SPEC.md: cold start).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import flask
import functions_framework
from pydantic import Field

from shared import service_status
from shared.errors import BridgeError, Conflict, NotFound
from shared.firestore_limits import MAX_INTEGER
from shared.logs import configure_logging
from shared.models import Location, Model
from shared.runtime import freeze_loaded_objects, get_runtime
from shared.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from shared.web import (
    API_AUTH_NOT_CONFIGURED,
    bearer_matches,
    check_bearer,
    create_app,
    dispatch,
    next_link,
    parse_json,
    parse_json_text,
    parse_query,
)

if TYPE_CHECKING:
    from pydantic import BaseModel, TypeAdapter

    from shared.pipeline import RunReport

configure_logging()
app = create_app(__name__)

# Liveness and build information stay open (SPEC.md: every route but `/health` and `/versions`
# needs the token): uptime checks need no token, and neither shows stored data (`/health`
# without the token: its status and counts only). The API's description is the token holder's
# (`shared/openapi.json` is in the repository for everyone else). Smartcar Connect's return
# leg is opened by a browser, which cannot send the token: its single-use `state` guards it
# (shared/sources/smartcar/connect.py); it stays open when the API token is missing too, since
# that state, not the token, is what protects it.
# The status page and its assets (`static`) hold no data (issue 19): the browser asks for the
# token and reads the JSON routes with it.
PUBLIC_ENDPOINTS = frozenset({"health", "versions", "smartcar_exchange", "status_page", "static"})
# Traccar's Find Hub commands (PROTOCOLS.md §2b) carry the command key, not the API token: the
# key is written into Traccar's device attributes, which every user seeing the device can read,
# so it opens these three routes and nothing else, and the API token never opens them.
COMMAND_ENDPOINTS = frozenset({"command_single", "command_periodic", "command_stop"})
# Routes whose `<device_id>` is the vendor's own number (TLINK's), not a device of the bridge.
VENDOR_ID_ENDPOINTS = frozenset({"tlink_device_latest", "tlink_device_history"})


@functools.cache
def _locations_adapter() -> TypeAdapter[list[Location]]:
    """The validator of `GET /locations?filter=`, built by the first request that needs it."""
    from pydantic import TypeAdapter

    return TypeAdapter(list[Location])


class PageQuery(Model):
    """`limit` and `cursor` of a listing: every listing reads a bounded page (issue 13)."""

    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, min_length=1)


class PushLogQuery(PageQuery):
    device_id: str | None = Field(None, min_length=1)


class LocationsQuery(PageQuery):
    filter: str | None = None


# Only the function's own scripts and styles; map tiles from OpenStreetMap's tile server.
STATUS_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: https://tile.openstreetmap.org; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


class NotifyFailed(BridgeError):
    status = 502


def _json(value: object, status: int = 200) -> tuple[flask.Response, int]:
    return flask.jsonify(value), status


def _paged(value: object, next_cursor: str | None) -> tuple[flask.Response, int]:
    """A page as the body (arrays stay arrays: existing scripts read them) and the next one's
    address in a `Link` header, as GitHub's API does."""
    response = flask.jsonify(value)
    if next_cursor is not None:
        response.headers["Link"] = next_link(flask.request, next_cursor)
    return response, 200


def _named_as_in_traccar(
    item: BaseModel, unique_ids: Mapping[str, str], **extra: object
) -> dict[str, Any]:
    """`item` as an answer shows it: a device id it carries (`id`, `device_id`) replaced by the
    uniqueId Traccar shows (issue 18: one id per device everywhere); `extra` added."""
    shown = item.model_dump(mode="json", exclude_none=True)
    for key in ("id", "device_id"):
        if isinstance(shown.get(key), str) and shown[key] in unique_ids:
            shown[key] = unique_ids[shown[key]]
    return {**shown, **extra}


def _of_this_device(item: BaseModel) -> dict[str, Any]:
    """`item` of the device the route names, under the uniqueId Traccar shows for it."""
    stored_id = flask.request.view_args["device_id"] if flask.request.view_args else ""
    return _named_as_in_traccar(item, {stored_id: flask.g.device_unique_id})


def _location_reports(report: RunReport) -> list[dict[str, object]]:
    answers = []
    for item in report.locations:
        answer: dict[str, object] = {
            "location": _of_this_device(item.location),
            "status": item.status,
        }
        if item.message:
            answer["message"] = item.message
        answers.append(answer)
    return answers


class PeriodicQuery(Model):
    """`position-periodic`'s `interval` (Traccar's `frequency`, seconds); Traccar 6.8 sends
    none. The bounds are a sync service's."""

    interval: int | None = Field(None, ge=60, le=86_400)


@app.before_request
def authenticate() -> None:
    if flask.request.endpoint in COMMAND_ENDPOINTS:
        scheme, _, presented = flask.request.headers.get("Authorization", "").partition(" ")
        bearer = presented.strip() if scheme.lower() == "bearer" else None
        get_runtime().commands.authorize(bearer)
    elif flask.request.endpoint not in PUBLIC_ENDPOINTS:
        settings = get_runtime().settings
        check_bearer(
            flask.request,
            settings.api_token,
            required=settings.api_token_required,
            rotated=get_runtime().api_token_versions,
        )


@app.before_request
def resolve_device_id() -> None:
    """Every route naming a device takes the uniqueId Traccar shows for it, and the id the
    bridge stores it under still works (issue 18: Smartcar's `smartcar-<id>`, a mapped one).
    Runs after `authenticate` (before_request functions run in the order registered): a
    refused caller costs no read. One read; one query more only when no device is stored so."""
    args = flask.request.view_args
    if args and "device_id" in args and flask.request.endpoint not in VENDOR_ID_ENDPOINTS:
        given = args["device_id"]
        device = get_runtime().store.devices.resolve(given)
        flask.g.device_id_given = given
        # What an answer names the device: its uniqueId in Traccar, else what was given.
        flask.g.device_unique_id = device.traccar_unique_id if device is not None else given
        args["device_id"] = device.id if device is not None else given


@app.get("/health")
def health() -> tuple[flask.Response, int]:
    runtime = get_runtime()
    token = runtime.settings.api_token
    missing = token is None and runtime.settings.api_token_required
    report = service_status.health(
        runtime.store, misconfigured=API_AUTH_NOT_CONFIGURED if missing else None
    )
    # No token configured (local development): everything is open, details included.
    if token is not None and not bearer_matches(
        flask.request, token, rotated=runtime.api_token_versions
    ):
        report = report.public()
    # Anything but `ok` is a 503, as for expired credentials: an uptime check alerts on it.
    return _json(report.model_dump(exclude_none=True), 200 if report.status == "ok" else 503)


@app.get("/versions")
def versions() -> tuple[flask.Response, int]:
    return _json(service_status.version_info().model_dump())


@app.get("/openapi.json")
def openapi() -> tuple[flask.Response, int]:
    # Cold start: the OpenAPI table names every vendor's models; only this route needs it.
    from shared.openapi import openapi_document

    return _json(openapi_document())


# --- the status page (issue 19) -------------------------------------------------------------


# The page's assets (functions/api/static/) under /status/: functions-framework's own app
# answers /static/... before ours does. Same endpoint as Flask's static route: public, and
# left out of the OpenAPI document like it.
app.add_url_rule("/status/<path:filename>", endpoint="static")


@app.get("/status")
def status_page() -> flask.Response:
    """The page alone (functions/api/static/): it fetches `/status.json` with the token."""
    response = app.send_static_file("status.html")
    # A page that asks for a token must not run inside someone else's frame.
    response.headers["Content-Security-Policy"] = STATUS_PAGE_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-cache"
    return response


@app.get("/status.json")
def status_json() -> tuple[flask.Response, int]:
    # Cold start: the report's models load with the page's first request, never for /health.
    from shared import status_report

    return _json(status_report.build(get_runtime().store).model_dump(mode="json"))


# --- sync services -------------------------------------------------------------------------


@app.get("/services")
def list_services() -> tuple[flask.Response, int]:
    return _json([v.model_dump(mode="json") for v in get_runtime().services.views()])


@app.get("/devices/<device_id>/services")
def get_service(device_id: str) -> tuple[flask.Response, int]:
    runtime = get_runtime()
    service = runtime.services.get(device_id)
    return _json(runtime.services.view(service).model_dump(mode="json"))


@app.put("/devices/<device_id>/services")
def put_service(device_id: str) -> tuple[flask.Response, int]:
    # Route-local: shared.services builds two pydantic models on import (4 ms measured with
    # `python -X importtime`), which a cold `/health` must not pay.
    from shared.services import ServiceSpec

    spec = parse_json(flask.request, ServiceSpec)
    services = get_runtime().services
    service, created = services.upsert(device_id, spec)
    return _json(services.view(service).model_dump(mode="json"), 201 if created else 200)


@app.post("/devices/<device_id>/services/pause")
def pause_service(device_id: str) -> tuple[flask.Response, int]:
    """A user's pause: uploading Google credentials does not resume it (issue 19)."""
    return _json(get_runtime().services.pause(device_id).model_dump(mode="json"))


@app.post("/devices/<device_id>/services/resume")
def resume_service(device_id: str) -> tuple[flask.Response, int]:
    return _json(get_runtime().services.resume(device_id).model_dump(mode="json"))


@app.delete("/devices/<device_id>/services")
def delete_service(device_id: str) -> tuple[flask.Response, int]:
    if not get_runtime().services.delete(device_id):
        raise NotFound(f"no sync service for device {flask.g.device_id_given}")
    return _json({"status": "deleted", "id": flask.g.device_unique_id, "vendor_id": device_id})


# --- Traccar's commands (Find Hub sender, PROTOCOLS.md §2b) --------------------------------
# Traccar waits about 5 s and only reads the status: an empty answer at once, the work after.


@app.post("/devices/<unique_id>/position-single")
def command_single(unique_id: str) -> tuple[str, int]:
    get_runtime().commands.locate_now(unique_id)
    return "", 202


@app.post("/devices/<unique_id>/position-periodic")
def command_periodic(unique_id: str) -> tuple[str, int]:
    query = parse_query(flask.request, PeriodicQuery)
    get_runtime().commands.periodic(unique_id, query.interval)
    return "", 200


@app.post("/devices/<unique_id>/position-stop")
def command_stop(unique_id: str) -> tuple[str, int]:
    get_runtime().commands.stop(unique_id)
    return "", 200


# --- excluded devices ----------------------------------------------------------------------


@app.get("/excluded-devices")
def list_excluded() -> tuple[flask.Response, int]:
    return _json([e.model_dump(mode="json") for e in get_runtime().services.excluded()])


@app.put("/excluded-devices/<device_id>")
def exclude_device(device_id: str) -> tuple[flask.Response, int]:
    services = get_runtime().services
    excluded, created = services.exclude(device_id)
    return _json(services.excluded_view(excluded).model_dump(mode="json"), 201 if created else 200)


@app.delete("/excluded-devices/<device_id>")
def include_device(device_id: str) -> tuple[flask.Response, int]:
    get_runtime().services.include(device_id)
    return _json({"status": "deleted", "id": flask.g.device_unique_id, "vendor_id": device_id})


# --- locations -----------------------------------------------------------------------------


@app.get("/locations")
def get_locations() -> tuple[flask.Response, int]:
    query = parse_query(flask.request, LocationsQuery)
    runtime = get_runtime()
    if query.filter is not None:
        # The caller's own list, answered in one piece: limit and cursor page stored data.
        candidates = parse_json_text(query.filter, _locations_adapter(), "filter")
        page = Page(runtime.sync.undelivered(candidates), None)
    else:
        page = runtime.sync.latest_locations(limit=query.limit, cursor=query.cursor)
        unique_ids = runtime.store.devices.unique_ids([location.id for location in page.items])
        return _paged([_named_as_in_traccar(x, unique_ids) for x in page.items], page.next_cursor)
    found = [location.model_dump(mode="json", exclude_none=True) for location in page.items]
    return _paged(found, page.next_cursor)


@app.post("/locations")
def post_location() -> tuple[flask.Response, int]:
    location = parse_json(flask.request, Location)
    fingerprint = get_runtime().sync.mark_delivered(location)
    return _json({"status": "saved", "hash": fingerprint}, 201)


@app.put("/traccar/devices/<device_id>/locations")
def push_locations(device_id: str) -> tuple[flask.Response, int]:
    runtime = get_runtime()
    if "single" in flask.request.args:
        location = parse_json(flask.request, Location)
        if location.id == flask.g.device_id_given:
            # The body names the device as the path does (its uniqueId in Traccar, say).
            location = location.model_copy(update={"id": device_id})
        report = runtime.sync.push_single(device_id, location)
    else:
        report = runtime.sync.sync_device(device_id, force=True)
    return _json(_location_reports(report))


@app.get("/push-log")
def push_log() -> tuple[flask.Response, int]:
    query = parse_query(flask.request, PushLogQuery)
    store = get_runtime().store
    # The entries carry the stored id; the caller may name the device as Traccar does.
    device_id = store.devices.stored_id(query.device_id) if query.device_id else None
    entries, next_cursor = store.delivery.push_log(
        device_id=device_id, limit=query.limit, start_after=query.cursor
    )
    unique_ids = store.devices.unique_ids([entry.device_id for entry in entries])
    shown = [_named_as_in_traccar(e, unique_ids, vendor_id=e.device_id) for e in entries]
    # The push log has always answered a page object; the Link header comes on top of it.
    return _paged({"entries": shown, "next_cursor": next_cursor}, next_cursor)


# --- Google Find My Device ----------------------------------------------------------------


@app.get("/devices")
def list_devices() -> tuple[flask.Response, int]:
    query = parse_query(flask.request, PageQuery)
    runtime = get_runtime()
    if query.cursor is None:
        # Every Google account's list, once per listing, not once per page.
        runtime.google_accounts.refresh_for_listing()
    page = runtime.store.devices.page(limit=query.limit, cursor=query.cursor)
    views = runtime.services.device_views(page.items)  # with each one's last run and error
    return _paged([view.model_dump(mode="json") for view in views], page.next_cursor)


class RemoveQuery(Model):
    """`DELETE /devices/<id>?traccar=true` deletes the Traccar device too."""

    traccar: bool = False


@app.delete("/devices/<device_id>")
def remove_device(device_id: str) -> tuple[flask.Response, int]:
    """Everything the bridge keeps about the device (shared/removal.py, issue 20)."""
    query = parse_query(flask.request, RemoveQuery)
    removed = get_runtime().removal.remove(device_id, traccar=query.traccar)
    return _json(removed.model_dump(mode="json", exclude_none=True))


@app.get("/devices/<device_id>/locations")
def device_locations(device_id: str) -> tuple[flask.Response, int]:
    found = get_runtime().google_accounts.for_device(device_id).fresh_locations(device_id)
    if "last" in flask.request.args:
        # The newest position: a place without coordinates is no location to show on a map.
        positions = [item for item in found if isinstance(item, Location)]
        if not positions:
            raise NotFound(f"no location for device {flask.g.device_id_given}")
        return _json(_of_this_device(positions[-1]))
    return _json([_of_this_device(item) for item in found])


@app.post("/devices/<device_id>/sound")
def start_sound(device_id: str) -> tuple[flask.Response, int]:
    """Ring a Google tracker (issue 17): the answer says whether Nova took the request."""
    answer = get_runtime().google_accounts.for_device(device_id).ringer.sound(device_id, start=True)
    return _json(answer.model_dump(mode="json", exclude_none=True))


@app.delete("/devices/<device_id>/sound")
def stop_sound(device_id: str) -> tuple[flask.Response, int]:
    stack = get_runtime().google_accounts.for_device(device_id)
    answer = stack.ringer.sound(device_id, start=False)
    return _json(answer.model_dump(mode="json", exclude_none=True))


# --- named places (issue 17): Google's semantic reports ------------------------------------


@app.get("/places")
def list_places() -> tuple[flask.Response, int]:
    return _json([view.model_dump(mode="json") for view in get_runtime().google.places.views()])


@app.put("/places/<name>")
def put_place(name: str) -> tuple[flask.Response, int]:
    # Cold start: the Google modules load with the first Google request, never for /health.
    from shared.sources.google.places import PlaceSpec

    spec = parse_json(flask.request, PlaceSpec)
    view, created = get_runtime().google.places.put(name, spec)
    return _json(view.model_dump(mode="json"), 201 if created else 200)


@app.delete("/places/<name>")
def delete_place(name: str) -> tuple[flask.Response, int]:
    get_runtime().google.places.delete(name)
    return _json({"status": "deleted", "name": name})


@app.put("/auth/secrets")
def put_google_secrets() -> tuple[flask.Response, int]:
    # Cold start: the Google modules (gpsoauth, the protobufs) load with the first Google
    # request, never for /health (tests/integration/test_cold_start.py).
    from shared.sources.google import credentials as google_credentials

    # Filed under its username: a new one adds an account (ADR 0004).
    upload = parse_json(flask.request, google_credentials.GoogleSecretsUpload)
    return _json(get_runtime().google_accounts.upload(upload).model_dump())


class AccountQuery(Model):
    """`?account=<username>`: which Google account (optional while there is at most one)."""

    account: str | None = Field(None, min_length=1, max_length=320)


@app.put("/auth/aas-token")
def put_google_aas_token() -> tuple[flask.Response, int]:
    # Cold start: as above.
    from shared.sources.google import credentials as google_credentials

    query = parse_query(flask.request, AccountQuery)
    body = parse_json(flask.request, google_credentials.AasTokenUpload)
    answer = get_runtime().google_accounts.replace_aas_token(query.account, body.aas_token)
    return _json(answer.model_dump())


@app.post("/auth/token-status")
def google_token_status() -> tuple[flask.Response, int]:
    query = parse_query(flask.request, AccountQuery)
    status = get_runtime().google_accounts.resolve(query.account).account.token_status()
    return _json(status.model_dump(mode="json"))


@app.get("/auth/accounts")
def google_accounts() -> tuple[flask.Response, int]:
    views = get_runtime().google_accounts.views()
    return _json([view.model_dump(mode="json") for view in views])


@app.delete("/auth/accounts/<username>")
def delete_google_account(username: str) -> tuple[flask.Response, int]:
    """The account, its devices' services and jobs, its credentials and documents."""
    return _json(get_runtime().google_accounts.remove(username).model_dump(mode="json"))


# --- Smartcar ------------------------------------------------------------------------------


@app.get("/smartcar/vehicles")
def smartcar_vehicles() -> tuple[flask.Response, int]:
    vehicles = get_runtime().smartcar.views.vehicles()
    return _json([vehicle.model_dump(mode="json") for vehicle in vehicles])


@app.get("/smartcar/vehicles/<vehicle_id>/latest-signals")
def smartcar_latest_signals(vehicle_id: str) -> tuple[flask.Response, int]:
    signals = get_runtime().smartcar.views.latest_signals(vehicle_id)
    return _json(signals.model_dump(mode="json"))


@app.get("/smartcar/connect")
def smartcar_connect() -> tuple[flask.Response, int]:
    """302 to Smartcar Connect; the URL in the body too (shared/sources/smartcar/connect.py)."""
    started = get_runtime().smartcar.connect.start()
    response = flask.jsonify(started.model_dump(mode="json"))
    response.headers["Location"] = started.authorize_url
    response.headers["Cache-Control"] = "no-store"
    return response, 302


@app.get("/smartcar/exchange")
def smartcar_exchange() -> tuple[flask.Response, int]:
    """Where Smartcar Connect sends the browser back: public, guarded by the single-use state."""
    # Cold start: the Smartcar modules load with the first Smartcar request, never for /health.
    from shared.sources.smartcar.connect import ExchangeQuery

    query = parse_query(flask.request, ExchangeQuery)
    connected = get_runtime().smartcar.connect.exchange(query)
    return _json(connected.model_dump(mode="json"))


# --- TLINK ---------------------------------------------------------------------------------


def _tlink_device(device_id: str) -> int:
    # ASCII digits only: str.isdigit() also takes "¹", which int() refuses (a 500 found by
    # `make fuzz`); an id past Firestore's 64-bit integers cannot be stored either.
    if not (device_id.isascii() and device_id.isdigit()) or int(device_id) > MAX_INTEGER:
        raise NotFound(f"unknown TLINK device: {device_id}")
    return int(device_id)


@app.get("/tlink/users/<user_id>/devices")
def tlink_user_devices(user_id: str) -> tuple[flask.Response, int]:
    # Cold start: the TLINK modules load with the first TLINK request, never for /health.
    from shared.sources.tlink import views as tlink_views

    query = parse_query(flask.request, tlink_views.DevicesQuery)
    page = get_runtime().tlink.views.user_devices(user_id, query)
    return _json(page.model_dump(mode="json"))


@app.get("/tlink/users/<user_id>/devices/<device_id>/latest")
def tlink_device_latest(user_id: str, device_id: str) -> tuple[flask.Response, int]:
    view = get_runtime().tlink.views.latest(user_id, _tlink_device(device_id))
    return _json(view.model_dump(mode="json"))


@app.get("/tlink/users/<user_id>/devices/<device_id>/history")
def tlink_device_history(user_id: str, device_id: str) -> tuple[flask.Response, int]:
    # Cold start: as above.
    from shared.sources.tlink import views as tlink_views

    query = parse_query(flask.request, tlink_views.HistoryQuery)
    view = get_runtime().tlink.views.history(user_id, _tlink_device(device_id), query)
    return _json(view.model_dump(mode="json"))


# --- notifications -------------------------------------------------------------------------


@app.post("/notify/test")
def notify_test() -> tuple[flask.Response, int]:
    result = get_runtime().notifier.test()
    if result.status == "disabled":
        raise Conflict("notifications are disabled: set NOTIFY_SMTP_HOST and NOTIFY_EMAIL_TO")
    if result.status == "failed":
        raise NotifyFailed(f"the test email was not sent: {result.error}")
    return _json({"status": "sent"})


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    return dispatch(app, request)


freeze_loaded_objects()  # last: the master forks the worker once this module is loaded
