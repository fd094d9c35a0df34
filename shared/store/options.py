"""The bounded retry and timeout every Firestore call of the bridge goes through.

`reads()` and `writes()` are the keyword arguments (`retry=`, `timeout=`) of each call: a
module under `shared/store/` passes them to every `get`, `stream`, `set`, `commit`...
(`tests/unit/test_layers.py` checks that nothing outside `shared/store/` imports Firestore).
"""

from __future__ import annotations

import functools
from typing import Any

# Seconds a Firestore call may take in all, transient failures (UNAVAILABLE, ...) retried
# inside it. The client's own defaults retry for 60 s (writes) to 300 s (reads, queries): a
# request would outlive its function (webhooks time out after 30 s) and end with no answer.
# A blip is still ridden out; an outage ends the request with a clear 503 (shared.web).
FIRESTORE_DEADLINE = 5.0
RETRY_INITIAL_DELAY = 0.1
RETRY_MAX_DELAY = 2.0


@functools.cache
def reads() -> dict[str, Any]:
    """`retry` and `timeout` of a read: what the client retries by default, bounded."""
    from google.api_core import exceptions, retry

    transient = retry.if_exception_type(
        exceptions.ServiceUnavailable,
        exceptions.ResourceExhausted,
        exceptions.InternalServerError,
        exceptions.DeadlineExceeded,
    )
    return _options(transient)


@functools.cache
def writes() -> dict[str, Any]:
    """`retry` and `timeout` of a write: only failures where the write did not run or may be
    repeated safely, as the client's defaults (a lost reply is dealt with by the caller)."""
    from google.api_core import exceptions, retry

    return _options(
        retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.ResourceExhausted)
    )


def _options(predicate: Any) -> dict[str, Any]:
    from google.api_core import retry

    policy = retry.Retry(
        predicate=predicate,
        initial=RETRY_INITIAL_DELAY,
        maximum=RETRY_MAX_DELAY,
        timeout=FIRESTORE_DEADLINE,
    )
    return {"retry": policy, "timeout": FIRESTORE_DEADLINE}
