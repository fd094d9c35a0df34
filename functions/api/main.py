"""The REST API (`api` entry point): thin routes over the library; JSON in, JSON out."""

from __future__ import annotations

import flask
import functions_framework

from shared import service_status
from shared.logs import configure_logging
from shared.runtime import get_runtime
from shared.web import check_bearer, create_app, dispatch

configure_logging()
app = create_app(__name__)

# Liveness and build information stay open so that uptime checks need no token.
PUBLIC_ENDPOINTS = frozenset({"health", "versions"})


@app.before_request
def authenticate() -> None:
    if flask.request.endpoint not in PUBLIC_ENDPOINTS:
        check_bearer(flask.request, get_runtime().settings.api_token)


@app.get("/health")
def health() -> tuple[flask.Response, int]:
    report = service_status.health(get_runtime().store)
    return flask.jsonify(report.model_dump()), 200 if report.status == "ok" else 503


@app.get("/versions")
def versions() -> flask.Response:
    return flask.jsonify(service_status.version_info().model_dump())


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
