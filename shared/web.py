"""The HTTP edge shared by the four functions: routing, JSON errors, body parsing, bearer auth.

Each `functions/<name>/main.py` builds its Flask app with `create_app`, declares thin routes,
and hands the functions-framework request to `dispatch`. One error handler maps every
exception to a JSON `{"error": ...}` with the right status: a caller never sees an HTML page
or a stack trace, and the log gets the traceback (secrets masked) for a 500.
"""

from __future__ import annotations

import hmac
import io
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from shared.errors import BadRequest, BridgeError, NotConfigured, RetryLater, Unauthorized
from shared.firestore_limits import check_document

if TYPE_CHECKING:
    from pydantic import SecretStr, TypeAdapter

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_BODY_BYTES = 1024 * 1024  # webhooks' vendors send far less; anything larger is a 413
UNAVAILABLE_MESSAGE = (
    "Google Cloud (Firestore, Secret Manager or Cloud Scheduler) did not answer in time; "
    "retry later"
)
UNAVAILABLE_RETRY_AFTER = 30  # seconds


def json_error(message: str, status: int) -> flask.Response:
    response = flask.jsonify(error=message)
    response.status_code = status
    return response


def _bridge_error(exc: BridgeError) -> flask.Response:
    response = json_error(exc.message, exc.status)
    if isinstance(exc, RetryLater):
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.status >= 500:
        logger.error(exc.message, extra={"status": exc.status})
    return response


def _http_error(exc: HTTPException) -> flask.Response:
    messages = {
        404: "no such route",
        405: "method not allowed",
        413: f"body larger than {MAX_BODY_BYTES} bytes",
    }
    return json_error(messages.get(exc.code or 500, exc.name), exc.code or 500)


def _unexpected_error(exc: Exception) -> flask.Response:
    if _google_unavailable(exc):
        # Still failing when the store's retries ran out (shared.store.FIRESTORE_DEADLINE):
        # a 503 tells the caller (Cloud Scheduler, a vendor's webhook) to retry later.
        logger.exception("a Google Cloud service did not answer")
        response = json_error(UNAVAILABLE_MESSAGE, 503)
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response
    logger.exception("unhandled error")
    return json_error("internal error", 500)


def _google_unavailable(exc: Exception) -> bool:
    """A Google API call that found its service unreachable or too slow, retries included."""
    if "google.api_core.exceptions" not in sys.modules:
        return False  # no Google client was used: the error cannot be one of theirs
    from google.api_core import exceptions

    unavailable = (
        exceptions.RetryError,
        exceptions.ServiceUnavailable,
        exceptions.DeadlineExceeded,
    )
    return isinstance(exc, unavailable)


class LazyBuilderRule(Rule):
    """A route whose URL builder (what `url_for` runs) is compiled when first used.

    Werkzeug compiles two Python functions per route as the route is declared; the API's
    thirty routes spent about 10 ms of every cold start on them (SPEC.md: cold start), and the
    bridge answers JSON without building URLs from its routes. Matching is unchanged.
    """

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compiled: list[Callable[..., tuple[str, str]]] = []

        def build(rule: Rule, **values: Any) -> tuple[str, str]:
            if not compiled:
                compiled.append(Rule._compile_builder(rule, append_unknown))
            return compiled[0](rule, **values)

        return build


def create_app(name: str) -> flask.Flask:
    app = flask.Flask(name)
    app.url_rule_class = LazyBuilderRule
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_error_handler(BridgeError, _bridge_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    if flask.has_app_context():
        # functions-framework imports main.py inside its own Flask app's context. That app
        # answers before ours for what its router refuses (/robots.txt, /favicon.ico, a path
        # holding a newline), with an HTML page: make those JSON too.
        flask.current_app.register_error_handler(HTTPException, _http_error)
    return app


def dispatch(app: flask.Flask, request: flask.Request) -> flask.Response:
    """Route a functions-framework request through `app` (routing, errors, limits).

    functions-framework reads the body again once we answer, so `app` gets a buffered copy
    rather than the stream; a body declared too large is not read at all (`app` answers 413).
    """
    environ = dict(request.environ)
    too_large = (request.content_length or 0) > MAX_BODY_BYTES
    environ["wsgi.input"] = io.BytesIO(b"" if too_large else request.get_data(cache=True))
    with app.request_context(environ):
        return app.full_dispatch_request()


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


def parse_json(request: flask.Request, model: type[M]) -> M:
    """The request's JSON body as `model`, or `BadRequest` naming what is wrong."""
    if not request.is_json:
        raise BadRequest("expected a JSON body (Content-Type: application/json)")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("body is not valid JSON")
    # What Firestore would refuse in the documents made of it (issue 12): a 400 now, not a
    # failed commit after a push.
    check_document(data, "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None


def parse_query(request: flask.Request, model: type[M]) -> M:
    """The query string as `model` (last value of a repeated key), or `BadRequest`."""
    query = request.args.to_dict()
    check_document(query, "query")
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None


def parse_json_text(text: str, adapter: TypeAdapter[T], what: str) -> T:
    """JSON carried in a string (e.g. a query parameter) as `adapter`'s type."""
    import contextlib
    import json

    # Not JSON: the adapter below says so, naming `what`.
    with contextlib.suppress(ValueError, RecursionError):
        check_document(json.loads(text), what)
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        raise BadRequest(f"{what}: {describe_validation_error(exc)}") from None


API_AUTH_NOT_CONFIGURED = (
    "the API has no bearer token: add a version to the Secret Manager secret `api-token` "
    "(Terraform gives it to the api function as API_TOKEN; new instances read it as they "
    "start, `make deploy` replaces the running ones)"
)


# The secret Terraform hands the api function as API_TOKEN; its versions decide a rotation.
API_TOKEN_SECRET = "api-token"  # noqa: S105 - a secret's name

# The values of a rotated secret (`API_TOKEN_SECRET`, the Traccar command key) still accepted
# (`CachedSecrets.accepted`); the argument asks for a fresh listing (a presented value matched
# none).
RotatedTokens = Callable[[bool], list[str]]


def check_bearer(
    request: flask.Request,
    token: SecretStr | None,
    *,
    required: bool,
    rotated: RotatedTokens | None = None,
) -> None:
    """Require `Authorization: Bearer <token>` (constant-time comparison).

    Without a token: `NotConfigured` (503, naming the secret) when one is `required`, so a
    deployment whose secret did not arrive fails closed; otherwise (local development) open.
    """
    if token is None:
        if required:
            raise NotConfigured(API_AUTH_NOT_CONFIGURED)
        return
    if not bearer_matches(request, token, rotated=rotated):
        raise Unauthorized("missing or wrong bearer token")


def bearer_matches(
    request: flask.Request, token: SecretStr, *, rotated: RotatedTokens | None = None
) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (constant-time).

    With `rotated`, the stored versions decide (issue 20, rotation): an instance keeps the
    `API_TOKEN` it started with, so after a rotation it would refuse the new token and accept
    the old one forever. The newest version works at once and the previous one for the grace;
    `token` counts only while no version is listed (local development, or the backend down).
    """
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    candidate = presented.strip().encode()
    if rotated is not None:
        try:
            matched = matches_rotated(candidate, rotated)
        except Exception as exc:
            if not (_google_unavailable(exc) or isinstance(exc, OSError)):
                raise
            logger.warning("API token versions not readable; using API_TOKEN: %s", exc)
            matched = None
        if matched is not None:
            return matched
    return hmac.compare_digest(candidate, token.get_secret_value().encode())


def matches_rotated(candidate: bytes, rotated: RotatedTokens) -> bool | None:
    """Whether `candidate` is one of a rotated secret's accepted values (the API token's, the
    Traccar command key's): the cached listing first and, when it matched none, a fresh one
    (the cache limits how often), so a new version works at once. None when no version is
    stored: the caller decides what that means."""
    for fresh in (False, True):
        accepted = [value.strip() for value in rotated(fresh) if value.strip()]
        if not accepted:
            return None
        if matches_any(candidate, accepted):
            return True
    return False


def matches_any(candidate: bytes, accepted: list[str]) -> bool:
    """Whether `candidate` is one of the `accepted` secret values (a rotated secret's versions):
    each compared in constant time, and every one compared, so which one matched is not timed."""
    found = False
    for value in accepted:
        found |= hmac.compare_digest(candidate, value.encode())
    return found


def next_link(request: flask.Request, cursor: str) -> str:
    """A `Link` header value for the next page: this request's path and query (the last value
    of each key, as `parse_query` read them) with `cursor` set; relative, so it holds behind
    whatever host and prefix the caller used (RFC 8288 resolves it against the request)."""
    from urllib.parse import quote, urlencode

    query = {**request.args.to_dict(), "cursor": cursor}
    return f'<{quote(request.path)}?{urlencode(query)}>; rel="next"'
