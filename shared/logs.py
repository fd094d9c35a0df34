"""Structured JSON log lines that Cloud Logging understands, with secret values masked.

Cloud Functions forward each stdout line; a JSON line becomes a structured entry whose
`severity` and `message` Cloud Logging reads, and whose other keys land in `jsonPayload`.
Pass fields with `logger.info("pushed", extra={"device_id": ...})`.

Every value that goes through the secrets adapter is registered with `register_secret`; the
formatter replaces any registered value found anywhere in a line (message, fields, traceback)
with `[REDACTED]`, so a secret that slips into an exception text still never reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

REDACTED = "[REDACTED]"
# Shorter strings ("true", "eu") would mask ordinary words; real credentials are far longer.
MIN_SECRET_LENGTH = 8

_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: Any) -> None:
    """Mask `value` (and, for a JSON object or list, every string inside it) in all log lines."""
    found: list[str] = []
    _collect_strings(value, found)
    with _secrets_lock:
        _secrets.update(text for text in found if len(text) >= MIN_SECRET_LENGTH)


def _collect_strings(value: Any, found: list[str]) -> None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        found.append(value)
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if isinstance(parsed, dict | list):
            _collect_strings(parsed, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_strings(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_strings(item, found)


def redact(text: str) -> str:
    with _secrets_lock:
        # Longest first, so a secret containing another is masked whole.
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        # Keys too: a dict keyed by token would otherwise carry the secret out.
        return {redact(str(key)): _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_redact_value(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `severity`, `message`, `logger`, `time`, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Cloud Error Reporting picks up a traceback placed in `stack_trace`.
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(_redact_value(entry), ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Send every log record to stdout as a JSON line; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bridge_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._bridge_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
