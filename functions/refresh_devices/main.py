"""Refreshes the source device lists (`refresh_devices` entry point), run hourly."""

from __future__ import annotations

import flask
import functions_framework

from shared.logs import configure_logging
from shared.runtime import get_runtime
from shared.web import create_app, dispatch

configure_logging()
app = create_app(__name__)


@app.post("/")
def refresh() -> flask.Response:
    store = get_runtime().store
    # Sources register their refresh with the Google source issue; the count is real already.
    return flask.jsonify(sources=[], devices=store.devices.count())


@functions_framework.http
def refresh_devices(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
