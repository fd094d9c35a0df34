"""Refreshes the source device lists (`refresh_devices` entry point), run hourly.

`POST /` → `{"sources": [<one report per source>], "devices": <devices stored>}`.
`POST /?sweep=only` (the sweep job, every minute) delivers every due outbox: what webhooks
handed off to a busy device that no lease holder delivered, and every outbox whose backoff has
ended (`Sync.sweep_due_outboxes`, ADR 0002), and nothing else:
`{"swept": [<device ids run>]}`; one Firestore query when nothing is due. The Google
report says what was refreshed, found new, auto-registered and notified, or why Google was not
called at all (no credentials stored, or `auth_required`); the Smartcar one how many refresh
tokens near their end were renewed; then one each for TLINK's and Smartcar's devices
(`shared.device_refresh`: listed, new ones mailed about, auto-registered). `alerts` names
the operations alerts the run opened and ended (`shared.alerts`); `command_attributes` what
the pass giving existing Traccar devices the Find Hub sender's attributes did
(`shared.command_provisioning`).
"""

from __future__ import annotations

import flask
import functions_framework

from shared.errors import BadRequest
from shared.logs import configure_logging
from shared.models import REFRESH_DEVICES_LIFETIME, utc_now
from shared.runtime import freeze_loaded_objects, get_runtime
from shared.web import create_app, dispatch

configure_logging()
app = create_app(__name__)


@app.post("/")
def refresh() -> flask.Response:
    # When the function is killed: the sweep starts no run that would not end before it.
    deadline = utc_now() + REFRESH_DEVICES_LIFETIME
    runtime = get_runtime()
    if sweep_only(flask.request):
        # The every-minute job (issue 16): every due outbox, nothing else.
        return flask.jsonify(swept=runtime.sync.sweep_due_outboxes(deadline=deadline))
    reports = [
        *runtime.google_accounts.refresh(),  # one report per Google account (ADR 0004)
        runtime.smartcar.renewal.renew_expiring(),
        # TLINK's and Smartcar's devices: listed, mailed about, auto-registered; each vendor
        # skipped when its pulls are not configured, its failure its own report's.
        *(vendor.refresh() for vendor in runtime.vendor_refreshes),
    ]
    # Every due outbox: deliveries handed off to a busy device that no lease holder delivered,
    # positions Traccar refused whose backoff has ended.
    swept = runtime.sync.sweep_due_outboxes(deadline=deadline)
    # Silent devices and vendors, and a Traccar outage that ended (issue 20).
    alerts = runtime.alerts.evaluate()
    # Existing Traccar devices get the Find Hub sender's current attributes (issue 15).
    commands = runtime.command_provisioning.run()
    return flask.jsonify(
        sources=[report.model_dump(mode="json") for report in reports],
        devices=runtime.store.devices.count(),
        swept=swept,
        alerts={"opened": alerts.opened, "ended": alerts.ended},
        command_attributes=commands.model_dump(mode="json"),
    )


def sweep_only(request: flask.Request) -> bool:
    """`?sweep=only`: the sweep job's request; any other value of `sweep` is a 400."""
    value = request.args.get("sweep")
    if value is None:
        return False
    if value != "only":
        raise BadRequest(f"sweep: {value[:40]!r} is not accepted; the only value is 'only'")
    return True


@functions_framework.http
def refresh_devices(request: flask.Request) -> flask.Response:
    return dispatch(app, request)


freeze_loaded_objects()  # last: the master forks the worker once this module is loaded
