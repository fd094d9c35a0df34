"""Refreshes the source device lists (`refresh_devices` entry point), run hourly.

`POST /` → `{"sources": [<one report per source>], "devices": <devices stored>}`. The Google
report says what was refreshed, found new, auto-registered and notified, or why Google was not
called at all (no credentials stored, or `auth_required`); the Smartcar one how many refresh
tokens near their end were renewed. `alerts` names the operations alerts the run opened and
ended (`shared.alerts`).
"""

from __future__ import annotations

import flask
import functions_framework

from shared.logs import configure_logging
from shared.runtime import freeze_loaded_objects, get_runtime
from shared.web import create_app, dispatch

configure_logging()
app = create_app(__name__)


@app.post("/")
def refresh() -> flask.Response:
    runtime = get_runtime()
    reports = [
        runtime.google.refresh.refresh(),
        runtime.smartcar.renewal.renew_expiring(),
    ]
    # Webhook deliveries handed off to a busy device that no lease holder delivered.
    swept = runtime.sync.sweep_handoffs()
    # Silent devices and vendors, and a Traccar outage that ended (issue 20).
    alerts = runtime.alerts.evaluate()
    return flask.jsonify(
        sources=[report.model_dump(mode="json") for report in reports],
        devices=runtime.store.devices.count(),
        swept=swept,
        alerts={"opened": alerts.opened, "ended": alerts.ended},
    )


@functions_framework.http
def refresh_devices(request: flask.Request) -> flask.Response:
    return dispatch(app, request)


freeze_loaded_objects()  # last: the master forks the worker once this module is loaded
