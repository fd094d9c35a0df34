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


@app.post("/smartcar")
def smartcar_delivery() -> flask.Response:
    """Smartcar's VERIFY and signed deliveries (shared/sources/smartcar/webhook.py)."""
    from shared.runtime import get_runtime
    from shared.sources.smartcar import webhook as smartcar_webhook

    runtime = get_runtime()
    answer = runtime.smartcar.webhook.receive(
        flask.request.get_data(cache=True),
        flask.request.headers.get(smartcar_webhook.SIGNATURE_HEADER),
    )
    runtime.webhook_arrivals.seen("smartcar")  # accepted: the silence alert's clock restarts
    return flask.jsonify(answer.body)


# --- TLINK ---------------------------------------------------------------------------------


@app.post("/tlink")
@app.post("/tlink/<token>")
def tlink_push(token: str | None = None) -> flask.Response:
    """TLINK's device data update (docs/tlink.md); `<token>` when TLINK_REQUIRE_PATH_TOKEN."""
    from shared.runtime import get_runtime
    from shared.sources.tlink import webhook as tlink_webhook

    runtime = get_runtime()
    answer = runtime.tlink.webhook.receive(
        flask.request.get_data(cache=True),
        signature_header=flask.request.headers.get(tlink_webhook.SIGNATURE_HEADER),
        path_token=token,
    )
    runtime.webhook_arrivals.seen("tlink")  # accepted: the silence alert's clock restarts
    return flask.jsonify(answer.body())


@functions_framework.http
def webhooks(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
