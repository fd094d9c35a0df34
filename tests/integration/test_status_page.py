"""The status page (issue 19) through the API: the public page and its assets, the JSON it
reads, its cost in Firestore reads, and the user's pause kept apart from the expiry's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.models import AuthState, Source
from shared.runtime import get_runtime
from shared.status_report import RECENT_PUSHES
from tests.fakes import status_seed
from tests.integration.test_api import AUTH, api_env, start_api  # noqa: F401 - a fixture

STATIC = Path(__file__).resolve().parents[2] / "functions" / "api" / "static"
PAGE_BUDGET = 250 * 1024  # issue 19: the page and its assets, without the map tiles
ASSETS = ["status.js", "status.css", "leaflet/leaflet.js", "leaflet/leaflet.css"]
DAILY_FREE_READS = 50_000  # Firestore's free tier
# A tab left alone: one load, then a refresh a minute until 15 minutes without interaction.
LOADS_PER_IDLE_DAY = 1 + 15


@pytest.fixture
def api(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:  # noqa: F811
    return start_api(monkeypatch, api_env)


def test_the_page_and_its_assets_are_public_and_hold_no_data(api: FlaskClient) -> None:
    page = api.get("/status")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    total = len(page.data)
    for asset in ASSETS:
        answer = api.get(f"/status/{asset}")
        assert answer.status_code == 200, asset
        total += len(answer.data)
    assert total < PAGE_BUDGET, total
    assert api.get("/status.json").status_code == 401  # the data stays behind the token


def test_a_missing_asset_is_a_json_404(api: FlaskClient) -> None:
    answer = api.get("/status/nothing.js")
    assert answer.status_code == 404 and answer.is_json


def test_status_json_shows_devices_outbox_errors_and_positions(
    api: FlaskClient, firestore_client: Any
) -> None:
    status_seed.seed(firestore_client)
    report = api.get("/status.json", headers=AUTH).get_json()
    devices = {d["id"]: d for d in report["devices"]}

    assert set(devices) == {d[0] for d in status_seed.DEVICES}
    wallet = devices[status_seed.FAILING]
    assert wallet["last_result"]["error"] == status_seed.FAILING_ERROR
    assert wallet["outbox"] == 2 and wallet["oldest_waiting_error"] == status_seed.OUTBOX_ERROR
    assert devices["van"]["parked"] == 1
    assert devices[status_seed.EXCLUDED]["excluded"] is True
    assert devices["keys"]["last_position"]["accuracy"] == 12.0
    assert devices["keys"]["next_sync"] is not None
    assert report["google"]["status"] == "ok"
    assert report["traccar"]["osmand"] == "reachable"  # the newest attempt got HTTP 200
    assert [f["error"] for f in report["failures"]] == ["connection refused"]


@pytest.mark.parametrize(("devices", "most"), [(10, 62), (100, 422)])
def test_a_page_load_costs_bounded_reads(
    api: FlaskClient, firestore_client: Any, devices: int, most: int
) -> None:
    """The figures of bench/RESULTS.md: 3 reads per device, 2 singletons, the push log's
    newest entries, one more per device with positions waiting."""
    status_seed.seed(firestore_client, extra_devices=devices - len(status_seed.DEVICES))
    report = api.get("/status.json", headers=AUTH).get_json()

    waiting = sum(1 for d in report["devices"] if d["outbox"])
    excluded = 1  # that device has no service either: one read fewer
    push_log = 2  # the seed's; a busy bridge's push log costs RECENT_PUSHES
    first_account = 1  # its Google devices record no account: the first one's name (ADR 0004)
    assert report["reads"] == (
        3 * devices - excluded + excluded + 1 + push_log + waiting + first_account
    )
    assert 3 * devices + 2 + RECENT_PUSHES + devices <= most
    if devices == 10:
        assert most * LOADS_PER_IDLE_DAY < DAILY_FREE_READS // 10


def test_a_user_pause_survives_new_credentials(api: FlaskClient, firestore_client: Any) -> None:
    status_seed.seed(firestore_client)
    paused = api.post("/devices/keys/services/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.get_json()["paused_by_user"] is True

    services = get_runtime().services
    services.pause_source(Source.GOOGLE)  # Google refused the credentials
    get_runtime().store.state.put("auth", AuthState(status="ok"))
    assert services.resume_source(Source.GOOGLE) == 1  # new ones came: the wallet only

    store = get_runtime().store
    assert store.services.get("keys").paused is True  # type: ignore[union-attr]
    assert store.services.get("wallet").paused is False  # type: ignore[union-attr]
    resumed = api.post("/devices/keys/services/resume", headers=AUTH).get_json()
    assert (resumed["paused"], resumed["paused_by_user"]) == (False, False)


def test_resuming_during_expired_credentials_leaves_the_expiry_pause(
    api: FlaskClient, firestore_client: Any
) -> None:
    status_seed.seed(firestore_client)
    api.post("/devices/keys/services/pause", headers=AUTH)
    get_runtime().store.state.put("auth", AuthState(status="auth_required", reason="expired"))

    resumed = api.post("/devices/keys/services/resume", headers=AUTH).get_json()
    assert (resumed["paused"], resumed["paused_by_user"]) == (True, False)
    assert get_runtime().services.resume_source(Source.GOOGLE) >= 1  # credentials came back
    assert get_runtime().store.services.get("keys").paused is False  # type: ignore[union-attr]


def test_a_user_pause_outlives_a_new_timer(api: FlaskClient, firestore_client: Any) -> None:
    status_seed.seed(firestore_client)
    api.post("/devices/keys/services/pause", headers=AUTH)
    updated = api.put("/devices/keys/services", json={"timer": 900}, headers=AUTH).get_json()
    assert (updated["paused"], updated["paused_by_user"]) == (True, True)


def test_pausing_a_device_without_a_service_is_a_json_404(api: FlaskClient) -> None:
    for action in ("pause", "resume"):
        answer = api.post(f"/devices/nothing/services/{action}", headers=AUTH)
        assert answer.status_code == 404 and answer.is_json
