"""Test session: one official Firestore emulator for the whole run, wiped between tests.

Fixtures:
- `emulator`: the running emulator (session); a missing emulator stops the run with one
  message saying how to install it.
- `firestore_client`: a Firestore client on the emulator, with an empty database.
- `settings`: a `Settings` built from explicit values only (no `.env`, no stray variables).
- `runtime`: a `Runtime` over those settings and the emulator.
- `osmand`: Traccar's OsmAnd endpoint (local fake) knowing `abc123`; `clock`: a settable clock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devtools.emulator import Emulator, EmulatorMissing
from shared.config import Settings, load_settings
from shared.models import REFRESH_DEVICES_LIFETIME
from shared.runtime import Runtime
from tests.fakes.osmand import OsmAndServer

if TYPE_CHECKING:
    from shared.sync import Sync

PROJECT = "traccar-bridge-test"


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    instance = Emulator()
    try:
        instance.start(log_path=tmp_path_factory.mktemp("emulator") / "firestore.log")
    except EmulatorMissing as exc:
        pytest.exit(str(exc), returncode=3)
    os.environ["FIRESTORE_EMULATOR_HOST"] = instance.address
    yield instance
    instance.stop()


@pytest.fixture
def firestore_client(emulator: Emulator, monkeypatch: pytest.MonkeyPatch):
    from google.cloud import firestore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.address)
    emulator.wipe(PROJECT)
    return firestore.Client(project=PROJECT)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "_env_file": None,
        "gcp_project": PROJECT,
        "secrets_backend": "local",
        "secrets_dir": tmp_path / "secrets",
        "scheduler_backend": "local",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def runtime(settings: Settings, firestore_client) -> Runtime:
    return Runtime(settings, firestore_client=firestore_client)


@pytest.fixture
def osmand() -> Iterator[OsmAndServer]:
    """Traccar's OsmAnd endpoint (local fake over a real socket) knowing device `abc123`."""
    with OsmAndServer(known_ids=["abc123"]) as server:
        yield server


class Clock:
    """A settable clock for code that takes `clock=`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))


def sweep(sync: Sync, *, now: datetime | None = None, **options: Any) -> list[str]:
    """`sync.sweep_due_outboxes` as the sweep job runs it: its function's whole lifetime ahead
    of `now` (the real clock's unless `sync` runs on a test clock: then that clock's now)."""
    started = now if now is not None else datetime.now(UTC)
    return sync.sweep_due_outboxes(deadline=started + REFRESH_DEVICES_LIFETIME, **options)
