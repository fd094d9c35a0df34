"""JSON log lines for Cloud Logging, and secret values from the secrets adapter masked in them."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.logs import MIN_SECRET_LENGTH, REDACTED, configure_logging
from shared.secrets import LocalSecretStore

LOGGER = "traccar_bridge.test_logs"


class Captured:
    """The JSON lines written to the configured stream."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def entries(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield Captured(stream)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture
def store(tmp_path: Path) -> LocalSecretStore:
    return LocalSecretStore(tmp_path / "secrets")


def new_secret() -> str:
    # Unique per test: registered values stay masked for the whole process.
    return "tok_" + secrets.token_urlsafe(24)


def test_each_record_is_one_json_line_with_severity_message_logger_time_and_fields(
    captured: Captured,
) -> None:
    logging.getLogger(LOGGER).warning(
        "pushed %d positions", 3, extra={"device_id": "tracker-1", "accepted": True}
    )

    [entry] = captured.entries()
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "pushed 3 positions"
    assert entry["logger"] == LOGGER
    assert entry["device_id"] == "tracker-1"
    assert entry["accepted"] is True
    logged_at = datetime.fromisoformat(str(entry["time"]))
    assert logged_at.utcoffset() is not None and logged_at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - logged_at).total_seconds()) < 60


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
def test_severity_uses_cloud_logging_level_names(captured: Captured, level: str) -> None:
    logging.getLogger(LOGGER).log(getattr(logging, level), "event")

    assert captured.entries()[0]["severity"] == level


def test_values_json_cannot_encode_are_written_as_text(captured: Captured) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    logging.getLogger(LOGGER).info("odd fields", extra={"when": when, "path": Path("/x/y")})

    [entry] = captured.entries()
    assert entry["when"] == str(when)
    assert entry["path"] == "/x/y"


def test_exception_is_logged_as_stack_trace(captured: Captured) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger(LOGGER).exception("sync failed", extra={"device_id": "d1"})

    [entry] = captured.entries()
    assert entry["severity"] == "ERROR"
    assert entry["message"] == "sync failed"
    assert str(entry["stack_trace"]).startswith("Traceback (most recent call last):")
    assert "ValueError: boom" in str(entry["stack_trace"])


def test_configuring_twice_writes_each_record_once(captured: Captured) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    configure_logging("INFO", stream=stream)

    logging.getLogger(LOGGER).info("once")

    assert len(stream.getvalue().splitlines()) == 1
    assert captured.text == ""  # the earlier handler was replaced, not kept beside


def test_level_filters_lower_records(captured: Captured) -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream=stream)

    logging.getLogger(LOGGER).info("hidden")
    logging.getLogger(LOGGER).warning("shown")

    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["shown"]


def assert_masked(captured: Captured, secret: str, expected_lines: int) -> None:
    lines = captured.text.splitlines()
    assert len(lines) == expected_lines
    for line in lines:
        assert secret not in line
        assert REDACTED in line
        json.loads(line)  # masking keeps every line valid JSON


def log_everywhere(value: str) -> None:
    """Log `value` through every path a careless caller might take."""
    logger = logging.getLogger(LOGGER)
    logger.info("token is %s", value)
    logger.info(f"Authorization: Bearer {value}")  # the careless way, on purpose
    logger.info("field", extra={"token": value})
    logger.info("nested", extra={"request": {"headers": {"Authorization": f"Bearer {value}"}}})
    logger.info("listed", extra={"tokens": ["short", value]})
    logger.info("keyed", extra={"cache": {value: "expires soon"}})
    logger.info("bytes", extra={"raw": value.encode()})
    try:
        raise RuntimeError(f"login refused for {value}")
    except RuntimeError:
        logger.exception("login failed")


def test_value_written_through_the_secrets_adapter_never_reaches_a_log_line(
    captured: Captured, store: LocalSecretStore
) -> None:
    secret = new_secret()
    store.add_version("traccar-api-token", secret)

    log_everywhere(secret)

    assert_masked(captured, secret, expected_lines=8)
    traceback = captured.entries()[-1]["stack_trace"]
    assert f"RuntimeError: login refused for {REDACTED}" in str(traceback)


def test_value_read_through_the_secrets_adapter_never_reaches_a_log_line(
    captured: Captured, tmp_path: Path
) -> None:
    secret = new_secret()
    # Put there by an operator (the store's documented layout), not through add_version:
    # only the read can have registered it.
    folder = tmp_path / "secrets" / "smartcar-client-secret"
    folder.mkdir(parents=True)
    (folder / "1").write_text(secret, encoding="utf-8")

    logging.getLogger(LOGGER).info("before the read: %s", secret)
    assert secret in captured.text

    assert LocalSecretStore(tmp_path / "secrets").read("smartcar-client-secret") == secret
    before = len(captured.text.splitlines())
    log_everywhere(secret)

    after = captured.text.splitlines()[before:]
    assert len(after) == 8
    assert all(secret not in line and REDACTED in line for line in after)


def test_every_long_string_inside_a_json_secret_is_masked(
    captured: Captured, store: LocalSecretStore
) -> None:
    aas_token = "aas_et/" + secrets.token_urlsafe(32)
    private_key = secrets.token_urlsafe(40)
    android_id = secrets.token_hex(8)
    document = {
        "aas_token": aas_token,
        "fcm_credentials": {"keys": {"private": private_key}, "gcm": {"android_id": android_id}},
        "shared_keys": [{"identifier": "tracker", "key": private_key[::-1]}],
        "region": "eu",
    }
    store.add_version("google-secrets", json.dumps(document))

    logger = logging.getLogger(LOGGER)
    for leaf in (aas_token, private_key, android_id, private_key[::-1]):
        logger.info("leaf %s", leaf, extra={"copy": leaf})
    logger.info("whole", extra={"document": json.dumps(document)})

    for leaf in (aas_token, private_key, android_id, private_key[::-1]):
        assert leaf not in captured.text
    assert captured.text.count(REDACTED) == 9


def test_short_strings_are_not_masked(captured: Captured, store: LocalSecretStore) -> None:
    short = secrets.token_hex(4)[: MIN_SECRET_LENGTH - 1]
    long_enough = secrets.token_hex(4)[:MIN_SECRET_LENGTH]
    store.add_version("short-one", short)
    store.add_version("long-one", long_enough)
    store.add_version("json-one", json.dumps({"region": "eu", "enabled": "true"}))

    logging.getLogger(LOGGER).info(f"{short} {long_enough} region eu enabled true")

    [entry] = captured.entries()
    assert entry["message"] == f"{short} {REDACTED} region eu enabled true"
