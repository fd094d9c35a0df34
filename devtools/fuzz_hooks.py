"""Schemathesis hooks of `devtools.fuzz` (loaded through SCHEMATHESIS_HOOKS): one more check.

`json_errors`: every 4xx and 5xx is JSON `{"error": "<message>"}`, and never shared.web's
catch-all "internal error" (an unhandled exception); schemathesis' own `not_a_server_error`
checks the status against what the document lists (`devtools.fuzz.config`).
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

CATCH_ALL = "internal error"  # shared.web's answer to an unhandled exception


@schemathesis.check
def json_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    content_type = response.headers.get("Content-Type") or response.headers.get("content-type")
    if isinstance(content_type, list):
        content_type = content_type[0]
    where = f"{response.status_code}: {response.content[:300]!r}"
    assert (content_type or "").startswith("application/json"), f"not JSON: {where}"
    error = json.loads(response.content).get("error")
    assert isinstance(error, str) and error.strip(), f"no error message: {where}"
    assert error != CATCH_ALL, f"unhandled exception: {where}"
    return None
