"""`SecretManagerStore` through the official Secret Manager client, against the gRPC fake.

The fake (`tests.fakes.secret_manager`) answers as the real service does: names carry the
project number, `versions/latest` is the newest version whatever its state, errors are the
real status codes. So these tests prove the adapter's reading of those answers, not a mock's.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flask
import pytest
from google.api_core.exceptions import FailedPrecondition
from google.cloud import secretmanager_v1
from pydantic import SecretStr

from shared.errors import Unauthorized
from shared.logs import REDACTED, JsonFormatter
from shared.runtime import Runtime
from shared.secrets import SecretManagerStore, SecretNotFound, SecretVersion, read_json
from shared.web import API_TOKEN_SECRET, bearer_matches
from tests.conftest import Clock, make_settings
from tests.fakes.secret_manager import FakeSecretManager

PROJECT = "traccar-bridge-test"
PROJECT_NUMBER = "314159265358"


@pytest.fixture
def secret_manager() -> Iterator[FakeSecretManager]:
    # Pages of two versions: listing more than two runs the client's pager over several pages.
    with FakeSecretManager(project_numbers={PROJECT: PROJECT_NUMBER}, page_size=2) as fake:
        yield fake


@pytest.fixture
def client(secret_manager: FakeSecretManager) -> secretmanager_v1.SecretManagerServiceClient:
    return secret_manager.client()


@pytest.fixture
def store(client: secretmanager_v1.SecretManagerServiceClient) -> SecretManagerStore:
    return SecretManagerStore(client, PROJECT)


def unique(label: str) -> str:
    """A value no other test registered for redaction (the registry is process-wide)."""
    return f"{label}-{uuid.uuid4().hex}"


def test_read_of_missing_secret_raises_secret_not_found(store: SecretManagerStore) -> None:
    with pytest.raises(SecretNotFound):
        store.read("never-written")


def test_add_version_creates_missing_secret_then_reads_back_latest(
    store: SecretManagerStore, secret_manager: FakeSecretManager
) -> None:
    assert store.add_version("google-token", "first value") == "1"
    assert store.read("google-token") == "first value"
    assert store.add_version("google-token", "second value") == "2"

    assert store.read("google-token") == "second value"
    assert secret_manager.calls[:3] == [
        ("AddSecretVersion", "NOT_FOUND"),
        ("CreateSecret", "OK"),
        ("AddSecretVersion", "OK"),
    ]
    assert secret_manager.calls.count(("CreateSecret", "OK")) == 1


def test_secret_created_by_a_concurrent_writer_is_used_not_an_error(
    store: SecretManagerStore,
    secret_manager: FakeSecretManager,
    client: secretmanager_v1.SecretManagerServiceClient,
) -> None:
    other_writer = SecretManagerStore(secret_manager.client(), PROJECT)
    # Between our NOT_FOUND and our CreateSecret, another instance creates the secret and
    # stores its own version: our CreateSecret then meets ALREADY_EXISTS.
    secret_manager.run_once_before(
        "CreateSecret", lambda: other_writer.add_version("shared-secret", "other value")
    )

    assert store.add_version("shared-secret", "our value") == "2"

    assert ("CreateSecret", "ALREADY_EXISTS") in secret_manager.calls
    assert store.read("shared-secret") == "our value"
    first = client.access_secret_version(
        name=f"projects/{PROJECT}/secrets/shared-secret/versions/1"
    )
    assert first.payload.data == b"other value"


def test_disable_versions_keeps_only_the_kept_version_readable(
    store: SecretManagerStore,
    secret_manager: FakeSecretManager,
    client: secretmanager_v1.SecretManagerServiceClient,
) -> None:
    for value in ("credential one", "credential two", "credential three", "credential four"):
        store.add_version("rotated", value)

    assert store.disable_versions("rotated", keep="4") == 3

    assert store.read("rotated") == "credential four"
    assert secret_manager.version_states(PROJECT, "rotated") == {
        "1": "DISABLED",
        "2": "DISABLED",
        "3": "DISABLED",
        "4": "ENABLED",
    }
    with pytest.raises(FailedPrecondition):
        client.access_secret_version(name=f"projects/{PROJECT}/secrets/rotated/versions/3")
    # Nothing left to disable: the enabled-only listing has just the kept version.
    assert store.disable_versions("rotated", keep="4") == 0


def test_read_falls_back_to_the_kept_version_when_newer_ones_are_disabled(
    store: SecretManagerStore,
) -> None:
    # Two rotations racing: one keeps version 2 after the other added version 3. The service's
    # `latest` is version 3 (disabled); the store must still return the enabled version 2.
    for value in ("credential one", "credential two", "credential three"):
        store.add_version("raced", value)

    assert store.disable_versions("raced", keep="2") == 2

    assert store.read("raced") == "credential two"


def test_read_after_all_versions_disabled_raises_secret_not_found(
    store: SecretManagerStore,
) -> None:
    store.add_version("revoked", "credential one")
    store.add_version("revoked", "credential two")

    assert store.disable_versions("revoked") == 2

    with pytest.raises(SecretNotFound):
        store.read("revoked")


def test_disable_versions_of_missing_secret_disables_nothing(store: SecretManagerStore) -> None:
    assert store.disable_versions("never-written", keep="1") == 0


def test_value_read_is_redacted_from_log_lines(
    store: SecretManagerStore, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    # Written by someone else (Terraform, the console), so only the read can register it.
    value = unique("refresh-token")
    client.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id="console-made",
        secret={"replication": {"automatic": {}}},
    )
    client.add_secret_version(
        parent=f"projects/{PROJECT}/secrets/console-made", payload={"data": value.encode()}
    )

    assert store.read("console-made") == value

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.secret_manager_store")
    logger.addHandler(handler)
    try:
        logger.warning("token rejected: %s", value, extra={"token": value})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert value not in line
    assert line.count(REDACTED) == 2


def test_json_secret_strings_are_redacted_once_read(
    store: SecretManagerStore, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    password = unique("password")
    client.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id="smartcar-app",
        secret={"replication": {"automatic": {}}},
    )
    client.add_secret_version(
        parent=f"projects/{PROJECT}/secrets/smartcar-app",
        payload={"data": f'{{"client_secret": "{password}"}}'.encode()},
    )

    assert read_json(store, "smartcar-app") == {"client_secret": password}

    record = logging.LogRecord("test", logging.INFO, __file__, 0, "got %s", (password,), None)
    assert password not in JsonFormatter().format(record)


# --- versions: what a rotation's grace is checked against (issue 20) ------------------------


def test_versions_lists_the_enabled_ones_newest_first_with_their_create_times(
    clock: Clock,
) -> None:
    clock.now = datetime(2026, 12, 1, tzinfo=UTC)
    with FakeSecretManager(
        project_numbers={PROJECT: PROJECT_NUMBER}, page_size=2, clock=clock
    ) as fake:
        store = SecretManagerStore(fake.client(), PROJECT)
        for value in ("one", "two", "three", "four", "five"):
            clock.advance(3600)
            store.add_version("listed", value)
        parent = f"projects/{PROJECT}/secrets/listed"
        fake.client().disable_secret_version(name=f"{parent}/versions/2")
        fake.client().destroy_secret_version(name=f"{parent}/versions/4")

        versions = store.versions("listed")

        assert versions == [
            SecretVersion(5, "five", datetime(2026, 12, 1, 5, tzinfo=UTC)),
            SecretVersion(3, "three", datetime(2026, 12, 1, 3, tzinfo=UTC)),
            SecretVersion(1, "one", datetime(2026, 12, 1, 1, tzinfo=UTC)),
        ]
        assert fake.version_states(PROJECT, "listed")["4"] == "DESTROYED"
        # One filtered listing over two pages (page size 2), one access per enabled version;
        # a disabled or destroyed version's payload is never asked for.
        assert fake.calls.count(("ListSecretVersions", "OK")) == 2
        assert fake.calls.count(("AccessSecretVersion", "OK")) == 3
        assert ("AccessSecretVersion", "FAILED_PRECONDITION") not in fake.calls


def test_versions_of_a_missing_secret_is_empty(store: SecretManagerStore) -> None:
    assert store.versions("never-written") == []


def test_a_version_disabled_between_listing_and_access_is_left_out(
    store: SecretManagerStore,
    secret_manager: FakeSecretManager,
    client: secretmanager_v1.SecretManagerServiceClient,
) -> None:
    store.add_version("racing", "old")
    store.add_version("racing", "new")
    # Listed enabled (newest first), then disabled by an operator before its payload is read.
    secret_manager.run_once_before(
        "AccessSecretVersion",
        lambda: client.disable_secret_version(name=f"projects/{PROJECT}/secrets/racing/versions/2"),
    )

    assert [version.value for version in store.versions("racing")] == ["old"]


def test_a_rotation_is_accepted_end_to_end_with_the_cloud_store(
    secret_manager: FakeSecretManager, tmp_path: Path, firestore_client: Any
) -> None:
    """Both rotated credentials the API function checks itself (the API token, the Traccar
    command key) through a Runtime on the Secret Manager backend: the new version works at
    once, the old one for ROTATION_GRACE_HOURS, then no more."""
    settings = make_settings(
        tmp_path,
        secrets_backend="secret_manager",
        api_token="old-api-token",
        rotation_grace_hours=24,
    )
    store = SecretManagerStore(secret_manager.client(), PROJECT)
    runtime = Runtime(settings, firestore_client=firestore_client, secrets=store)
    command_key = settings.traccar_command_key_secret
    for name, value in ((API_TOKEN_SECRET, "old-api-token"), (command_key, "old-command-key")):
        store.add_version(name, value)
        secret_manager.backdate(PROJECT, name, timedelta(hours=100))
    app = flask.Flask(__name__)

    def token_accepted(token: str) -> bool:
        with app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            return bearer_matches(
                flask.request, SecretStr("old-api-token"), rotated=runtime.api_token_versions
            )

    def key_accepted(key: str) -> bool:
        try:
            runtime.commands.authorize(key)
        except Unauthorized:
            return False
        return True

    assert token_accepted("old-api-token") and key_accepted("old-command-key")
    runtime.cached_secrets.min_reread = 0.0  # the new versions must work at once
    store.add_version(API_TOKEN_SECRET, "new-api-token")
    store.add_version(command_key, "new-command-key")
    assert token_accepted("new-api-token") and token_accepted("old-api-token")
    assert key_accepted("new-command-key") and key_accepted("old-command-key")
    assert not token_accepted("old-command-key") and not key_accepted("new-api-token")

    for name in (API_TOKEN_SECRET, command_key):
        secret_manager.backdate(PROJECT, name, timedelta(hours=25))
        runtime.cached_secrets.forget(name)
    assert token_accepted("new-api-token") and not token_accepted("old-api-token")
    assert key_accepted("new-command-key") and not key_accepted("old-command-key")
    # The old versions are still enabled: the grace, not an operator, ended them.
    assert secret_manager.version_states(PROJECT, command_key) == {"1": "ENABLED", "2": "ENABLED"}


def test_destroy_disabled_keeps_the_newest_disabled_versions(
    store: SecretManagerStore, secret_manager: FakeSecretManager
) -> None:
    # Secret Manager bills disabled versions until they are destroyed (shared/secrets.py).
    for number in range(1, 7):
        store.add_version("pruned", f"value {number}")
    store.disable_versions("pruned", keep="6")

    assert store.destroy_disabled("pruned", keep=2, limit=20) == 3

    assert secret_manager.version_states(PROJECT, "pruned") == {
        "1": "DESTROYED",
        "2": "DESTROYED",
        "3": "DESTROYED",
        "4": "DISABLED",
        "5": "DISABLED",
        "6": "ENABLED",
    }
    assert store.read("pruned") == "value 6"
    assert store.destroy_disabled("pruned", keep=2, limit=20) == 0  # destroyed ones not listed
    assert store.destroy_disabled("never-written", keep=2, limit=20) == 0


def test_destroy_disabled_goes_over_a_backlog_oldest_first_a_limit_at_a_time(
    store: SecretManagerStore, secret_manager: FakeSecretManager
) -> None:
    for number in range(1, 9):
        store.add_version("backlog", f"value {number}")
    store.disable_versions("backlog", keep="8")

    assert store.destroy_disabled("backlog", keep=1, limit=4) == 4
    states = secret_manager.version_states(PROJECT, "backlog")
    assert [n for n, state in states.items() if state == "DESTROYED"] == ["1", "2", "3", "4"]
    assert store.destroy_disabled("backlog", keep=1, limit=4) == 2
    assert secret_manager.version_states(PROJECT, "backlog")["7"] == "DISABLED"


def test_the_smartcar_token_secret_keeps_a_few_versions_however_often_it_changes(
    secret_manager: FakeSecretManager, tmp_path: Path, firestore_client: Any, clock: Clock
) -> None:
    """Each token refresh or Connect writes a version of `smartcar-tokens` (a refresh every two
    hours while a vehicle is pulled): the older ones are destroyed, so a month of changes
    leaves the current version and the newest disabled ones, not hundreds billed."""
    from shared.sources.smartcar.client import TokenSet

    settings = make_settings(tmp_path, secrets_backend="secret_manager")
    store = SecretManagerStore(secret_manager.client(), PROJECT)
    runtime = Runtime(settings, firestore_client=firestore_client, secrets=store)
    tokens = runtime.smartcar_stack(clock=clock).tokens
    name = settings.smartcar_tokens_secret

    for change in range(12):
        pair = TokenSet(
            access_token=f"access-{change}-{uuid.uuid4().hex}",
            refresh_token=f"refresh-{change}-{uuid.uuid4().hex}",
            expires_at=clock.now + timedelta(hours=2),
            refresh_expires_at=clock.now + timedelta(days=60),
        )
        tokens.connect("e0514ef4-5226-4d6f-9a6f-3c2b1a0f9e8d", pair, ["vehicle-1"])
        clock.advance(timedelta(hours=2).total_seconds())

    states = secret_manager.version_states(PROJECT, name)
    assert len(states) == 12
    active = {number: state for number, state in states.items() if state != "DESTROYED"}
    assert active == {"10": "DISABLED", "11": "DISABLED", "12": "ENABLED"}
    assert (
        tokens.load()
        .users["e0514ef4-5226-4d6f-9a6f-3c2b1a0f9e8d"]
        .access_token.startswith("access-11-")
    )
