"""Receives vendor webhooks (`webhooks` entry point): Smartcar and TLINK deliveries."""

from __future__ import annotations

import flask
import functions_framework

from shared.logs import configure_logging
from shared.web import create_app, dispatch

configure_logging()
app = create_app(__name__)


@app.get("/health")
def health() -> flask.Response:
    return flask.jsonify(status="ok")


@functions_framework.http
def webhooks(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
