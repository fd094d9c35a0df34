"""Receives vendor webhooks (`webhooks` entry point): Smartcar and TLINK deliveries.

Every receiver checks the delivery's signature on the raw body before any work, deduplicates
it (a retried delivery never makes a second position) and feeds the pipeline.
"""

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


# --- Smartcar ------------------------------------------------------------------------------


# --- TLINK ---------------------------------------------------------------------------------


@functions_framework.http
def webhooks(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
