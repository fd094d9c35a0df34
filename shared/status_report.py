"""What the status page shows (`GET /status.json`, issue 19): the bridge at a glance.

One round of bounded reads, whatever the history: the devices, their services and delivery
states (one page of at most `MAX_DEVICES` each), the exclusion list, `state/auth`, the newest
`RECENT_PUSHES` push-log entries and, for each device with positions waiting, its oldest one.
`reads` in the answer counts what this cost (Firestore bills a query at least one read), so the
figures in bench/RESULTS.md can be checked against a live page:

    reads = 3 * devices + 1 (excluded) + 1 (auth) + min(20, push log) + devices with an outbox
            + 1 (the first Google account's name, when a Google device records none)

(10 devices: 52 to 62 reads; 100 devices: 322 to 422; a query that returns nothing costs 1.)

Traccar's reachability is not probed here (a page load must not push or call Traccar): it is
what the newest push-log entries say. OsmAnd: the newest attempt got an HTTP answer or not.
REST: the newest entry whose device Traccar did not know says whether creating it worked.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from shared.models import AuthState, Model, PushLogEntry, Source, SyncResult, utc_now

if TYPE_CHECKING:
    from shared.store import Store

MAX_DEVICES = 200  # a page load reads at most this many devices (more: `truncated`)
RECENT_PUSHES = 20  # push-log entries read for Traccar's reachability and recent failures
# The pipeline's wording when Traccar's REST API was needed (shared/pipeline.py `push`).
REST_FAILED = "could not create device"
REST_MISSING = "set TRACCAR_API_URL"

Reach = Literal["reachable", "unreachable", "not_configured", "unknown"]


class Position(Model):
    lat: float
    lon: float
    time: datetime
    accuracy: float | None = None


class DeviceStatus(Model):
    id: str  # its uniqueId in Traccar, as in GET /devices (issue 18): every route takes it
    vendor_id: str  # the id the bridge stores it under
    name: str
    source: Source
    kind: str | None
    # A Google device's account (its username; issue 17, ADR 0004) and that account's
    # credentials state; None for other sources.
    account: str | None = None
    account_status: Literal["ok", "auth_required"] | None = None
    excluded: bool
    has_service: bool
    timer: int | None
    paused: bool
    paused_by_user: bool
    last_sync: datetime | None
    last_result: SyncResult | None
    next_sync: datetime | None  # expected: last run + timer (jitter aside); None when paused
    outbox: int  # positions waiting, parked ones included
    parked: int  # refused again and again; the next manual sync retries them
    oldest_waiting: datetime | None  # the time of the oldest waiting position
    oldest_waiting_error: str | None
    last_position: Position | None


class CredentialsStatus(Model):
    status: Literal["ok", "auth_required"]
    since: datetime
    reason: str


class TraccarReach(Model):
    osmand: Reach
    osmand_detail: str | None
    osmand_seen_at: datetime | None
    rest: Reach
    rest_detail: str | None
    rest_seen_at: datetime | None


class RecentFailure(Model):
    device_id: str
    name: str
    attempted_at: datetime
    traccar_status: int | None
    error: str


class StatusReport(Model):
    generated_at: datetime
    devices: list[DeviceStatus]
    truncated: bool  # more than MAX_DEVICES devices: only the first ones, by id
    google: CredentialsStatus
    traccar: TraccarReach
    failures: list[RecentFailure]
    reads: int  # Firestore reads this answer cost


def _time(epoch: int) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(epoch, UTC)


def traccar_reach(entries: list[PushLogEntry]) -> TraccarReach:
    """Traccar as the newest attempts saw it (`entries` newest first)."""
    osmand: tuple[Reach, str | None, datetime | None] = ("unknown", None, None)
    if entries:
        newest = entries[0]
        if newest.traccar_status is not None:
            osmand = ("reachable", f"HTTP {newest.traccar_status}", newest.attempted_at)
        else:
            osmand = ("unreachable", newest.error, newest.attempted_at)
    rest: tuple[Reach, str | None, datetime | None] = ("unknown", None, None)
    for entry in entries:
        error = entry.error or ""
        if REST_FAILED in error:
            rest = ("unreachable", error, entry.attempted_at)
            break
        if REST_MISSING in error:
            rest = ("not_configured", error, entry.attempted_at)
            break
    return TraccarReach(
        osmand=osmand[0],
        osmand_detail=osmand[1],
        osmand_seen_at=osmand[2],
        rest=rest[0],
        rest_detail=rest[1],
        rest_seen_at=rest[2],
    )


def build(store: Store) -> StatusReport:
    """The report, from one round of bounded reads (see the module docstring)."""
    devices = store.devices.page(limit=MAX_DEVICES)
    service_page = store.services.page(limit=MAX_DEVICES)
    state_page = store.delivery.summaries(limit=MAX_DEVICES)
    excluded_page = store.excluded_devices.page(limit=MAX_DEVICES)
    # `state/auth` with the further Google accounts' states: the same one read as before.
    record = store.state.health()
    auth: AuthState = record.auth
    entries, _ = store.delivery.push_log(device_id=None, limit=RECENT_PUSHES)
    services = {s.id: s for s in service_page.items}
    states = {s.id: s for s in state_page.items}
    excluded = {e.id for e in excluded_page.items}
    # A query costs one read per document, at least one; a page reads one more than its
    # limit when there is a next page.
    reads = sum(
        max(1, len(page.items)) + (page.next_cursor is not None)
        for page in (devices, service_page, state_page, excluded_page)
    )
    reads += 1 + max(1, len(entries))

    names = {device.id: device.name or device.id for device in devices.items}
    account_states = {
        str(entry["account"]).strip().casefold(): entry.get("status", "ok")
        for entry in record.google_accounts.values()
        if entry.get("account")
    }
    first_account: str | None = None
    if any(d.source == Source.GOOGLE and d.account is None for d in devices.items):
        # Stored before there were several accounts: the first account's (one more read).
        from shared.store.google import PRIMARY_SLOT, AccountRegistry

        primary = AccountRegistry(store.client).get(PRIMARY_SLOT)
        first_account = primary.username if primary is not None else None
        reads += 1
    found = []
    for device in devices.items:
        account = (device.account or first_account) if device.source == Source.GOOGLE else None
        account_status: Literal["ok", "auth_required"] | None = None
        if device.source == Source.GOOGLE:
            key = (account or "").strip().casefold()
            account_status = (
                "auth_required" if account_states.get(key, auth.status) == "auth_required" else "ok"
            )
        service = services.get(device.id)
        state = states.get(device.id)
        waiting = (state.outbox_count + state.parked_count) if state else 0
        oldest = store.delivery.oldest_waiting(device.id) if waiting else None
        reads += 1 if waiting else 0
        last_sync = state.last_sync if state else None
        paused = bool(service and service.paused)
        next_sync = service.expected_next_sync(last_sync) if service is not None else None
        located = state.last_location if state else None
        found.append(
            DeviceStatus(
                id=device.traccar_unique_id,
                vendor_id=device.id,
                name=device.name,
                source=device.source,
                kind=device.kind,
                account=account,
                account_status=account_status,
                excluded=device.id in excluded,
                has_service=service is not None,
                timer=service.timer if service else None,
                paused=paused,
                paused_by_user=bool(service and service.paused_by_user),
                last_sync=last_sync,
                last_result=state.last_result if state else None,
                next_sync=next_sync,
                outbox=waiting,
                parked=state.parked_count if state else 0,
                oldest_waiting=_time(oldest.location.timestamp) if oldest else None,
                oldest_waiting_error=(oldest.last_error or None) if oldest else None,
                last_position=Position(
                    lat=located.lat,
                    lon=located.lon,
                    time=_time(located.timestamp),
                    accuracy=located.accuracy,
                )
                if located
                else None,
            )
        )
    failures = [
        RecentFailure(
            device_id=entry.device_id,
            name=names.get(entry.device_id, entry.name or entry.device_id),
            attempted_at=entry.attempted_at,
            traccar_status=entry.traccar_status,
            error=entry.error,
        )
        for entry in entries
        if entry.error
    ]
    return StatusReport(
        generated_at=utc_now(),
        devices=found,
        truncated=devices.next_cursor is not None,
        google=CredentialsStatus(status=auth.status, since=auth.since, reason=auth.reason),
        traccar=traccar_reach(entries),
        failures=failures,
        reads=reads,
    )
