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
    status: Literal["ok", "auth_required", "misconfigured"]
    services: int
    reason: str | None = None

    def public(self) -> HealthReport:
        """What a caller without the bearer token sees: the status and the count. Google's
        refusal text may name the account, so it stays behind the token; what to configure
        is no secret, and nobody can present a token the API does not have."""
        if self.status == "misconfigured":
            return self
        return self.model_copy(update={"reason": None})


class VersionInfo(Model):
    version: str
    built_at: str | None


def health(store: Store, *, misconfigured: str | None = None) -> HealthReport:
    """`ok` with the number of sync services, `auth_required` when Google refused us, or
    `misconfigured` (with what to set) when the caller found a required setting missing.

    One document read (issue 13): `state/auth` carries the services' count. Only when the
    count is not there (an older deployment, or the credentials' state was rewritten without
    it) is it counted, and put back for the next call.
    """
    record = store.state.health()
    services = record.services
    if services is None:
        services = store.services.count()
        store.state.fill_service_count(services, read=record)
    if misconfigured is not None:
        return HealthReport(status="misconfigured", services=services, reason=misconfigured)
    if record.auth.status == "auth_required":
        return HealthReport(status="auth_required", services=services, reason=record.auth.reason)
    return HealthReport(status="ok", services=services)


def version_info() -> VersionInfo:
    built_at = None
    if BUILD_INFO.is_file():
        built_at = json.loads(BUILD_INFO.read_text()).get("built_at")
    return VersionInfo(version=__version__, built_at=built_at)
