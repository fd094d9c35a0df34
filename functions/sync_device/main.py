"""Runs the pipeline for one device (`sync_device` entry point), called by its scheduler job.

`POST {"device_id": ..., "jitter_seconds"?: n, "once"?: true}` (`once`: a "locate now" one-shot
job's run, which deletes that job after the run unless it is retried: `Sync.scheduled_sync`) →
`{fetched, new, pushed, failed, outbox, skipped}` (`skipped`: reports the source could not use).
429 with Retry-After while another run of the device holds its lease (Cloud Scheduler retries).
"""

from __future__ import annotations

import flask
import functions_framework
from pydantic import Field

from shared.logs import configure_logging
from shared.models import MAX_JITTER_SECONDS, Model
from shared.runtime import freeze_loaded_objects, get_runtime
from shared.web import create_app, dispatch, parse_json

configure_logging()
app = create_app(__name__)


class SyncRequest(Model):
    device_id: str = Field(min_length=1)
    jitter_seconds: int = Field(0, ge=0, le=MAX_JITTER_SECONDS)
    # A "locate now" one-shot job's run (shared/scheduler.py `run_once`).
    once: bool = False


@app.post("/")
def run_sync() -> flask.Response:
    body = parse_json(flask.request, SyncRequest)
    report = get_runtime().sync.scheduled_sync(
        body.device_id, jitter_seconds=body.jitter_seconds, once=body.once
    )
    # `error` only when the run's bookkeeping failed (issue 12): the answer is as before.
    return flask.jsonify(report.result.model_dump(exclude_none=True))


@functions_framework.http
def sync_device(request: flask.Request) -> flask.Response:
    return dispatch(app, request)


freeze_loaded_objects()  # last: the master forks the worker once this module is loaded
