"""Runs the pipeline for one device (`sync_device` entry point), called by its scheduler job."""

from __future__ import annotations

import flask
import functions_framework
from pydantic import BaseModel, Field

from shared.errors import BridgeError, NotFound
from shared.logs import configure_logging
from shared.runtime import get_runtime
from shared.web import create_app, dispatch, parse_json

configure_logging()
app = create_app(__name__)


class SyncRequest(BaseModel):
    device_id: str = Field(min_length=1)
    jitter_seconds: int = Field(0, ge=0, le=3_600)


class SourceNotImplemented(BridgeError):
    status = 501


@app.post("/")
def sync() -> flask.Response:
    body = parse_json(flask.request, SyncRequest)
    service = get_runtime().store.services.get(body.device_id)
    if service is None:
        raise NotFound(f"no sync service for device {body.device_id}")
    # The pipeline and the sources arrive with the pipeline issue; until then say so plainly.
    raise SourceNotImplemented(f"no source can fetch device {body.device_id} yet")


@functions_framework.http
def sync_device(request: flask.Request) -> flask.Response:
    return dispatch(app, request)
