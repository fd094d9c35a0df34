"""The cold-start floor: functions-framework and google-cloud-firestore imported, nothing else.

Served exactly like the real functions (`python -m functions_framework --source=... --target=
floor`); its time to a first trivial answer and its memory are what SPEC.md calls the floor.
"""

from __future__ import annotations

import flask
import functions_framework
from google.cloud import firestore  # noqa: F401 - the import is the point: it is the floor


@functions_framework.http
def floor(request: flask.Request) -> str:
    return "ok"
