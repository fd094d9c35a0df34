"""What `/health` and `/versions` report."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from shared import __version__
from shared.models import Model
from shared.store import Store

# Written by `make package` into each function's zip; absent in a source checkout.
BUILD_INFO = Path(__file__).with_name("build_info.json")


class HealthAlert(Model):
    """An open incident that needs the user (Google's, issue 14): until it clears."""

    name: str
    since: datetime
    reason: str | None = None
    # The Google account it is about, for a further account's alert (ADR 0004).
    account: str | None = None


class HealthReport(Model):
    status: Literal["ok", "auth_required", "misconfigured"]
    services: int
    reason: str | None = None
    # Absent when none is open. They do not change `status`: the syncs still run.
    alerts: list[HealthAlert] | None = None
    # `unauthorized` while Traccar's REST API refuses the credentials (absent otherwise): the
    # positions keep flowing to OsmAnd, only new devices wait, so `status` stays.
    traccar_api: Literal["unauthorized"] | None = None
    # Google accounts that need new credentials (ADR 0004): their usernames (with the bearer
    # token only) and how many (for everyone). Absent while none does, and with one account
    # (whose answer stays as it was).
    accounts_auth_required: list[str] | None = None
    auth_required_count: int | None = None

    def public(self) -> HealthReport:
        """What a caller without the bearer token sees: the status and the count. Google's
        refusal text may name the account, so it stays behind the token; what to configure
        is no secret, and nobody can present a token the API does not have."""
        if self.status == "misconfigured":
            return self
        alerts = [
            a.model_copy(update={"reason": None, "account": None}) for a in self.alerts or []
        ] or None
        return self.model_copy(
            update={
                "reason": None,
                "alerts": alerts,
                "traccar_api": None,
                "accounts_auth_required": None,
            }
        )


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
    alerts = [
        HealthAlert(name=name, since=value.get("since"), reason=value.get("reason"))
        for name, value in sorted(record.alerts.items())
        if isinstance(value, dict) and value.get("since") is not None
    ] or None
    traccar_api = "unauthorized" if record.traccar_api == "unauthorized" else None
    # Each further Google account's state and alerts (ADR 0004), from the same document.
    refused: list[tuple[str, str]] = []
    if record.auth.status == "auth_required":
        refused.append((record.auth.account or "", record.auth.reason))
    for key, entry in sorted(record.google_accounts.items()):
        account = entry.get("account") or key
        if entry.get("status") == "auth_required":
            refused.append((account, entry.get("reason") or ""))
        for name, value in sorted((entry.get("alerts") or {}).items()):
            if isinstance(value, dict) and value.get("since") is not None:
                found = HealthAlert(
                    name=name, since=value["since"], reason=value.get("reason"), account=account
                )
                alerts = [*(alerts or []), found]
    if refused:
        # One account (the layout of before, ADR 0004): the answer is what it always was.
        several = bool(record.google_accounts)
        named = [account for account, _ in refused if account] if several else []
        return HealthReport(
            status="auth_required",
            services=services,
            reason="; ".join(
                f"{account}: {reason}" if account and len(refused) > 1 else reason
                for account, reason in refused
            ),
            alerts=alerts,
            traccar_api=traccar_api,
            accounts_auth_required=named or None,
            auth_required_count=len(refused) if several else None,
        )
    return HealthReport(status="ok", services=services, alerts=alerts, traccar_api=traccar_api)


def version_info() -> VersionInfo:
    built_at = None
    if BUILD_INFO.is_file():
        built_at = json.loads(BUILD_INFO.read_text()).get("built_at")
    return VersionInfo(version=__version__, built_at=built_at)
