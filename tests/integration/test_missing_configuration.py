"""Missing configuration is a JSON 503 naming what to set, on every route that needs it (issue 12).

The functions run in-process through functions-framework's app, on the Firestore emulator,
with a configuration that lacks the Smartcar client secret and management token and any TLINK
receiver protection: each route that needs one of them answers 503 with a message naming the
setting or secret, never a 500 "internal error"; the OpenAPI document lists those 503s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from flask.testing import FlaskClient

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.runtime import get_runtime
from tests.conftest import PROJECT

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "missing-config-api-token"
VERIFY = {"eventType": "VERIFY", "data": {"challenge": "x"}}


@pytest.fixture
def clients(
    emulator: Emulator, firestore_client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, FlaskClient]]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": TOKEN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
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


@pytest.mark.parametrize(
    ("function", "method", "target", "named"),
    [
        ("api", "GET", "/smartcar/connect", "smartcar-client-secret"),
        ("webhooks", "POST", "/smartcar", "smartcar-management-token"),
        ("webhooks", "POST", "/tlink", "TLINK_REQUIRE_PATH_TOKEN"),
        ("webhooks", "POST", "/tlink/some-token", "tlink-path-token"),
    ],
)
def test_a_route_missing_its_configuration_answers_a_json_503_naming_what_to_set(
    function: str, method: str, target: str, named: str, clients: dict[str, FlaskClient]
) -> None:
    response = clients[function].open(
        target,
        method=method,
        json=VERIFY if method == "POST" else None,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert response.status_code == 503, response.data
    assert response.content_type.startswith("application/json")
    assert named in response.get_json()["error"]


def test_the_openapi_document_lists_the_503s_of_missing_configuration() -> None:
    document = json.loads((ROOT / "shared" / "openapi.json").read_text())
    for path in ("/smartcar/connect", "/smartcar/exchange"):
        [operation] = document["paths"][path].values()
        assert "not configured" in operation["responses"]["503"]["description"]
        assert "500" not in operation["responses"]
