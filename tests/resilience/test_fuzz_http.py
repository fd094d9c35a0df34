"""Fuzzing the HTTP edge: whatever a caller sends, the answer is JSON and never an unplanned 5xx.

Every operation of the API's OpenAPI document (`shared/openapi.json`) and the webhook routes
(Smartcar, TLINK) gets hypothesis-generated path parameters, query strings, headers and bodies:
random bytes, random JSON, JSON objects built from the documented fields (or, for webhooks, the
conformance samples with fields dropped or replaced), with and without the bearer token, with
Smartcar's signature right or wrong. Schemathesis then generates cases from the document
itself. The functions run in-process through functions-framework's app, on the Firestore
emulator and an OsmAnd test server; every vendor URL points at a closed local port.

What every answer must be: a 4xx is JSON `{"error": "<message>"}`; a 5xx only where the
document lists it for the operation, also JSON with a message, and never the catch-all
"internal error" (an unhandled exception).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import functions_framework
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools import fuzz
from devtools.emulator import Emulator
from shared.config import get_settings
from shared.models import Device, Source
from shared.runtime import get_runtime
from shared.secrets import LocalSecretStore
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
DOCUMENT = json.loads((ROOT / "shared" / "openapi.json").read_text())
TOKEN = "fuzz-api-token-3c1d9e27"
SMARTCAR_TOKEN = "fuzz-smartcar-management-token"
SMARTCAR_SAMPLE = json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())
TLINK_SAMPLES = [
    json.loads((DATA / name).read_text())
    for name in ("tlink_push.json", "tlink_push_location.json")
]
CATCH_ALL = "internal error"  # shared.web's answer to an unhandled exception
EXAMPLES_PER_ROUTE = 12
SCHEMATHESIS_EXAMPLES = 5  # per operation and phase in `make test`; `make fuzz` runs 300
SCHEMATHESIS_TIMEOUT = 240  # seconds: a hang is a failure, not a stuck build
# Derandomized: `make test` sends the same cases every run (a red build is reproducible, never
# flaky); explore with other seeds by hand (`--hypothesis-seed=N` with derandomize off).
# No "explain" phase: it hides the failing values behind a summary.
PHASES = [Phase.explicit, Phase.generate, Phase.shrink]
FUZZ = settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
    phases=PHASES,
)

OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]
WEBHOOKS = [
    ("GET", "/health"),
    ("POST", "/smartcar"),
    ("POST", "/tlink"),
    ("POST", "/tlink/{token}"),
]


def closed_port() -> int:
    """A local port nothing listens on: a vendor there refuses every connection at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def clients(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FlaskClient]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(workdir / "secrets"),
        "API_TOKEN": TOKEN,
        "GOOGLE_AUTH_URL": dead + "/auth",
        "GOOGLE_NOVA_URL": dead + "/nova",
        "GOOGLE_MCS_HOST": "127.0.0.1",
        "GOOGLE_MCS_PORT": dead.rsplit(":", 1)[1],
        "FCM_TIMEOUT": "5",
        "TLINK_API_URL": dead,
        "TLINK_ALLOW_UNAUTHENTICATED": "true",  # the parser is what is fuzzed
        "SMARTCAR_API_ORIGIN": dead,
        "SMARTCAR_AUTH_ORIGIN": dead + "/oauth/token",
        "SMARTCAR_CONNECT_ORIGIN": dead,
        "SMARTCAR_MANAGEMENT_ORIGIN": dead,
    }
    LocalSecretStore(workdir / "secrets").add_version("smartcar-management-token", SMARTCAR_TOKEN)
    with OsmAndServer() as osmand, pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)  # no stray .env
        for name, value in {**env, "TRACCAR_SERVER_URL": osmand.url}.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        get_runtime.cache_clear()
        yield {
            name: functions_framework.create_app(
                name, str(ROOT / "functions" / name / "main.py")
            ).test_client()
            for name in ("api", "webhooks")
        }
        get_settings.cache_clear()
        get_runtime.cache_clear()


# --- what every answer must be -------------------------------------------------------------------


def check_answer(status: int, body: bytes, content_type: str, allowed_5xx: set[int]) -> None:
    where = f"{status}: {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), where
        error = json.loads(body).get("error")
        assert isinstance(error, str) and error.strip(), where
    if status >= 500:
        assert status in allowed_5xx, f"undocumented {where}"
        assert error != CATCH_ALL, f"unhandled exception: {where}"


def documented_5xx(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"] if code.startswith("5")}


# --- generators ----------------------------------------------------------------------------------

# Names Firestore refuses (https://firebase.google.com/docs/firestore/quotas): reserved,
# empty, over 1500 bytes, not UTF-8 (issue 12: `__main__` failed a commit after the push).
firestore_odd_names = st.sampled_from(["__main__", "__x__", "", "n" * 1600, "\ud800", "a.b"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=24),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | firestore_odd_names, children, max_size=4)
    ),
    max_leaves=10,
)
odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", ".", "..", "__x__", "a" * 1600, "%00", "abc123", "'; --", "\u202e", "0", "a\nb"]
    ),
)


def body_keys(operation: dict[str, Any]) -> list[str]:
    """The top-level fields the operation's documented body has (one `$ref` resolved)."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT["components"]["schemas"][name]
    return sorted(schema.get("properties", {})) or ["id"]


def shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), json_values, max_size=6)


def mutated(sample: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`sample` with each top-level field kept, dropped or replaced by something random."""
    choices = {
        key: st.one_of(st.just(value), st.just(...), json_values) for key, value in sample.items()
    }
    return st.fixed_dictionaries(choices).map(
        lambda fields: {key: value for key, value in fields.items() if value is not ...}
    )


def raw_bodies(objects: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=120),
        json_values.map(lambda value: json.dumps(value).encode()),
        objects.map(lambda value: json.dumps(value).encode()),
    )


content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", None]
)


def url(path: str, values: dict[str, str], query: dict[str, str] | str) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    text = query if isinstance(query, str) else urlencode(query)
    return f"{path}?{text}" if text else path


def queries(names: list[str]) -> st.SearchStrategy[dict[str, str] | str]:
    declared = st.dictionaries(
        st.sampled_from(names or ["x"]) | st.text(max_size=6), odd_text, max_size=4
    )
    return st.one_of(declared, st.text(max_size=30).map(lambda text: quote(text, safe="=&")))


# --- hypothesis: every API operation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_api_answers_json_and_no_unplanned_5xx_whatever_it_is_sent(
    method: str, path: str, operation: dict[str, Any], clients: dict[str, FlaskClient]
) -> None:
    parameters = operation.get("parameters", [])
    path_names = [p["name"] for p in parameters if p["in"] == "path"]
    query_names = [p["name"] for p in parameters if p["in"] == "query"]

    @FUZZ
    @given(
        values=st.fixed_dictionaries({name: odd_text for name in path_names}),
        query=queries(query_names),
        body=raw_bodies(shaped(body_keys(operation))),
        content_type=content_types,
        authorised=st.booleans() | st.just(True),
    )
    def fuzz(
        values: dict[str, str],
        query: dict[str, str] | str,
        body: bytes,
        content_type: str | None,
        authorised: bool,
    ) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"} if authorised else {}
        if content_type:
            headers["Content-Type"] = content_type
        response = clients["api"].open(
            url(path, values, query), method=method, data=body, headers=headers
        )
        check_answer(
            response.status_code,
            response.data,
            response.content_type or "",
            documented_5xx(operation),
        )

    fuzz()


# --- hypothesis: the webhooks --------------------------------------------------------------------


def smartcar_signature(raw: bytes) -> str:
    return hmac.new(SMARTCAR_TOKEN.encode(), raw, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("method", "path"), WEBHOOKS, ids=[f"{m} {p}" for m, p in WEBHOOKS])
def test_webhooks_answer_json_and_never_a_5xx_whatever_they_are_sent(
    method: str, path: str, clients: dict[str, FlaskClient]
) -> None:
    samples = [SMARTCAR_SAMPLE] if "smartcar" in path else TLINK_SAMPLES

    @FUZZ
    @given(
        token=odd_text,
        query=queries([]),
        body=raw_bodies(st.sampled_from(samples).flatmap(mutated)),
        content_type=content_types,
        signature=st.sampled_from(["right", "wrong", "none"]),
        other_method=st.sampled_from([method, method, "GET", "PUT", "DELETE"]),
    )
    def fuzz(
        token: str,
        query: dict[str, str] | str,
        body: bytes,
        content_type: str | None,
        signature: str,
        other_method: str,
    ) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        if signature != "none":
            value = smartcar_signature(body) if signature == "right" else "0" * 64
            headers["SC-Signature"] = value
        response = clients["webhooks"].open(
            url(path, {"token": token}, query), method=other_method, data=body, headers=headers
        )
        # Retry-later answers (503 while the vehicle's lease is held, Firestore down) are
        # planned; nothing else in 5xx is.
        check_answer(response.status_code, response.data, response.content_type or "", set())

    fuzz()


# --- schemathesis against the OpenAPI document ---------------------------------------------------


@pytest.fixture(scope="module")
def api_url(clients: dict[str, FlaskClient]) -> Iterator[str]:
    """The `api` function on a real local socket, as `make run` serves it."""
    from werkzeug.serving import make_server

    # A device for the stateful phase's links to reach (GET /devices -> its routes).
    get_runtime().store.devices.put(
        Device(id="fuzz-device", source=Source.GOOGLE, traccar_unique_id="fuzz-device")
    )
    server = make_server("127.0.0.1", 0, clients["api"].application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_schemathesis_every_phase_on_every_operation_finds_no_unplanned_5xx(api_url: str) -> None:
    """What `make fuzz` runs against `make run` (devtools/fuzz.py), with a small count: the
    examples, coverage, fuzzing and stateful phases (links from the listings to the routes
    taking their ids), `not_a_server_error` against the document's 5xx, JSON error bodies."""
    result = fuzz.run(
        url=api_url, token=TOKEN, max_examples=SCHEMATHESIS_EXAMPLES, timeout=SCHEMATHESIS_TIMEOUT
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert phase in result.stdout, summary
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
    assert selected is not None and len(set(selected.groups())) == 1, summary
    assert int(selected.group(1)) == len(OPERATIONS), summary


# --- what the fuzzing found, kept as fixed examples ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "body", "status"),
    [
        # An attribute named "" cannot be a Firestore field: it failed the run's final write
        # after the push (500, the device's lease left held). Now refused up front.
        (
            "POST",
            "/locations",
            {**{"id": "x", "lat": 1, "lon": 1, "timestamp": 1}, "attributes": {"": 1}},
            400,
        ),
        (
            "PUT",
            "/traccar/devices/x/locations?single",
            {**{"id": "x", "lat": 1, "lon": 1, "timestamp": 1}, "attributes": {"": "v"}},
            400,
        ),
        # A filter value beyond Firestore's 1500 bytes was refused by the server (500).
        ("GET", "/push-log?device_id=" + "a" * 1600, None, 400),
        # The same through the TLINK views' user filter.
        ("GET", "/tlink/users/" + "u" * 1600 + "/devices", None, 400),
        # functions-framework's own router answered these with an HTML page.
        ("GET", "/robots.txt", None, 404),
        ("GET", "/favicon.ico", None, 404),
        ("GET", "/devices/a%0Ab/locations", None, 404),
    ],
)
def test_inputs_the_fuzzing_found_get_a_json_4xx(
    method: str, target: str, body: Any, status: int, clients: dict[str, FlaskClient]
) -> None:
    framework_paths = ("/robots.txt", "/favicon.ico", "/devices/a%0Ab/locations")
    for name in ("api", "webhooks") if target in framework_paths else ("api",):
        response = clients[name].open(
            target, method=method, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == status, response.data
        check_answer(response.status_code, response.data, response.content_type or "", set())
