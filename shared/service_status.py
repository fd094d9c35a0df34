"""What `/health` and `/versions` report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from shared import __version__
from shared.models import Model
from shared.store import Store

# Written by `make package` into each function's zip; absent in a source checkout.
BUILD_INFO = Path(__file__).with_name("build_info.json")


class HealthReport(Model):
    status: Literal["ok", "auth_required"]
    services: int
    reason: str | None = None


class VersionInfo(Model):
    version: str
    built_at: str | None


def health(store: Store) -> HealthReport:
    """`ok` with the number of sync services, or `auth_required` when Google refused us."""
    auth = store.state.auth()
    services = store.services.count()
    if auth.status == "auth_required":
        return HealthReport(status="auth_required", services=services, reason=auth.reason)
    return HealthReport(status="ok", services=services)


def version_info() -> VersionInfo:
    built_at = None
    if BUILD_INFO.is_file():
        built_at = json.loads(BUILD_INFO.read_text()).get("built_at")
    return VersionInfo(version=__version__, built_at=built_at)
