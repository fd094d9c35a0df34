"""The REST API (`api` entry point): thin routes over the library; JSON in, JSON out.

The routes and their shapes are those of seed 000 (see SPEC.md), documented in
`shared/openapi.json` and served at `GET /openapi.json`.
"""

from __future__ import annotations

import flask
import functions_framework
from pydantic import BaseModel, Field, TypeAdapter

from shared import service_status, services, sync
from shared.errors import BridgeError, Conflict, NotFound
from shared.logs import configure_logging
from shared.models import Location
from shared.notify import Notifier
from shared.openapi import openapi_document
from shared.pipeline import RunReport
from shared.runtime import get_runtime
from shared.web import (
    check_bearer,
    create_app,
    dispatch,
    parse_json,
    parse_json_text,
    parse_query,
)

configure_logging()
app = create_app(__name__)

# Liveness, build information and the API's description stay open: uptime checks and
# client generators need no token.
PUBLIC_ENDPOINTS = frozenset({"health", "versions", "openapi"})
LOCATIONS = TypeAdapter(list[Location])


class PushLogQuery(BaseModel):
    device_id: str | None = Field(None, min_length=1)
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, min_length=1)


class LocationsQuery(BaseModel):
    filter: str | None = None


class NotifyFailed(BridgeError):
    status = 502


def _json(value: object, status: int = 200) -> tuple[flask.Response, int]:
    return flask.jsonify(value), status


def _location_reports(report: RunReport) -> list[dict[str, object]]:
    answers = []
    for item in report.locations:
        answer: dict[str, object] = {
            "location": item.location.model_dump(mode="json", exclude_none=True),
            "status": item.status,
        }
        if item.message:
            answer["message"] = item.message
        answers.append(answer)
    return answers


@app.before_request
def authenticate() -> None:
    if flask.request.endpoint not in PUBLIC_ENDPOINTS:
        check_bearer(flask.request, get_runtime().settings.api_token)


@app.get("/health")
def health() -> tuple[flask.Response, int]:
    report = service_status.health(get_runtime().store)
    return _json(report.model_dump(exclude_none=True), 200 if report.status == "ok" else 503)


@app.get("/versions")
def versions() -> tuple[flask.Response, int]:
    return _json(service_status.version_info().model_dump())


@app.get("/openapi.json")
def openapi() -> tuple[flask.Response, int]:
    return _json(openapi_document())


# --- sync services -------------------------------------------------------------------------


@app.get("/services")
def list_services() -> tuple[flask.Response, int]:
    return _json([v.model_dump(mode="json") for v in services.list_services(get_runtime())])


@app.get("/devices/<device_id>/services")
def get_service(device_id: str) -> tuple[flask.Response, int]:
    runtime = get_runtime()
    service = services.get_service(runtime, device_id)
    return _json(services.view(runtime, service).model_dump(mode="json"))


@app.put("/devices/<device_id>/services")
def put_service(device_id: str) -> tuple[flask.Response, int]:
    spec = parse_json(flask.request, services.ServiceSpec)
    service, created = services.upsert_service(get_runtime(), device_id, spec)
    return _json(service.model_dump(mode="json"), 201 if created else 200)


@app.delete("/devices/<device_id>/services")
def delete_service(device_id: str) -> tuple[flask.Response, int]:
    if not services.delete_service(get_runtime(), device_id):
        raise NotFound(f"no sync service for device {device_id}")
    return _json({"status": "deleted", "id": device_id})


# --- excluded devices ----------------------------------------------------------------------


@app.get("/excluded-devices")
def list_excluded() -> tuple[flask.Response, int]:
    return _json([e.model_dump(mode="json") for e in services.list_excluded(get_runtime())])


@app.put("/excluded-devices/<device_id>")
def exclude_device(device_id: str) -> tuple[flask.Response, int]:
    excluded, created = services.exclude_device(get_runtime(), device_id)
    return _json(excluded.model_dump(mode="json"), 201 if created else 200)


@app.delete("/excluded-devices/<device_id>")
def include_device(device_id: str) -> tuple[flask.Response, int]:
    services.include_device(get_runtime(), device_id)
    return _json({"status": "deleted", "id": device_id})


# --- locations -----------------------------------------------------------------------------


@app.get("/locations")
def get_locations() -> tuple[flask.Response, int]:
    query = parse_query(flask.request, LocationsQuery)
    runtime = get_runtime()
    if query.filter is not None:
        candidates = parse_json_text(query.filter, LOCATIONS, "filter")
        found = sync.undelivered(runtime, candidates)
    else:
        found = sync.latest_locations(runtime)
    return _json([location.model_dump(mode="json", exclude_none=True) for location in found])


@app.post("/locations")
def post_location() -> tuple[flask.Response, int]:
    location = parse_json(flask.request, Location)
    fingerprint = sync.mark_delivered(get_runtime(), location)
    return _json({"status": "saved", "hash": fingerprint}, 201)


@app.put("/traccar/devices/<device_id>/locations")
def push_locations(device_id: str) -> tuple[flask.Response, int]:
    runtime = get_runtime()
    if "single" in flask.request.args:
        location = parse_json(flask.request, Location)
        report = sync.push_single(runtime, device_id, location)
    else:
        report = sync.sync_device(runtime, device_id, force=True)
    return _json(_location_reports(report))


@app.get("/push-log")
def push_log() -> tuple[flask.Response, int]:
    query = parse_query(flask.request, PushLogQuery)
    entries, next_cursor = get_runtime().store.delivery.push_log(
        device_id=query.device_id, limit=query.limit, start_after=query.cursor
    )
    return _json(
        {"entries": [e.model_dump(mode="json") for e in entries], "next_cursor": next_cursor}
    )


# --- Google Find My Device ----------------------------------------------------------------


# --- Smartcar ------------------------------------------------------------------------------


# --- TLINK ---------------------------------------------------------------------------------


# --- notifications -------------------------------------------------------------------------


@app.post("/notify/test")
def notify_test() -> tuple[flask.Response, int]:
    result = Notifier.from_settings(get_runtime().settings).test()
    if result.status == "disabled":
        raise Conflict("notifications are disabled: set NOTIFY_SMTP_HOST and NOTIFY_EMAIL_TO")
    if result.status == "failed":
        raise NotifyFailed(f"the test email was not sent: {result.error}")
    return _json({"status": "sent"})


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
