"""The Google source: locate trackers over Nova and FCM, decrypt their reports, return positions.

`GoogleSource.fetch(device)` is what `sync_device` calls for a Google tracker, inside the
device's pipeline lease:

1. reads the stored credentials; without any (none uploaded, or the expiry removed the AAS
   token) it locates nothing and the pipeline only drains the outbox, as for a device no source
   can fetch (SPEC.md: what waits for Traccar never depends on the vendor);
2. takes the FCM lease (429 with Retry-After while another locate runs); a device that a batch
   located within `RECENT_LOCATE` skips its own locate and only drains its outbox;
3. chooses the companions: the other Google devices with an active sync service that are due
   within `COMPANION_WINDOW` (never located, or located longer ago than their timer less the
   window). One FCM session locates them all: the scheduler fires every job of the same timer
   in the same minute, and one session costs about as much as one locate;
4. gets an access token (before logging in to MCS, so a refused AAS token ends the run before
   any session), logs in, sends one locate per device, collects the answers (`fcm`);
5. gives the lease back, remembering who was located;
6. decrypts each answer with the owner key and returns the device's own positions with every
   companion's (each `Location.id` names its device). `shared.sync` tells smart tracking of
   each located device before any delivery, and runs each companion's pipeline after the
   device's own (its own lease; one that is busy is skipped: its next locate brings them
   again). A companion without positions is only logged; the device's own failure is raised,
   as a `shared.sync.FetchFailed` carrying the companions' positions when there are any, so
   that they are delivered all the same.

A device that does not answer within `FCM_TIMEOUT` is silent (`TrackerSilent`): its
scheduled run ends well (Cloud Scheduler would only retry into the same wait), a warning names
it, and the lease backs it off (not located again before 10 min, doubling up to
`GOOGLE_SILENT_BACKOFF_MAX`, nor taken along by a batch meanwhile); the API's fresh look
raises it (504). An owner key that no longer decrypts a tracker's identity key, or older than
the version an update names, is renewed over the Spot API (`spot`, once per session) and the
update decrypted again; one that cannot be renewed (no `shared_key`, or Google's key refused
too) fails the device with an error saying what to upload, and alerts once (`alerts`).
A report that fails to decrypt or validate, lacks its time or is dated ahead is skipped:
logged, and counted for the run's result and push log (`shared.models.Fetched`).
Semantic reports (a place name, no coordinates) are recorded and become `Location`s only for
a name the user gave coordinates (`places`): an unmapped name never reaches Traccar. A report
dated more than `MAX_FUTURE_SKEW` ahead of the clock is skipped and logged, the others kept:
recorded, it would stand above every genuine position to come (issue 13).

`look_now` is the API's fresh look (`GET /devices/<id>/locations`): one device, no pipeline,
nothing remembered but the places it was reported at; `locate_now` its positions alone.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.errors import BridgeError
from shared.models import Device, Fetched, Location, Service, Source, too_far_ahead, utc_now
from shared.sources.google.credentials import GoogleSecrets, require_aas_token
from shared.sources.google.errors import (
    CheckinFailed,
    CredentialsMissing,
    GoogleSourceError,
    McsLoginFailed,
    OwnerKeyNotRenewable,
    OwnerKeyRefused,
    TrackerSilent,
)
from shared.sync import FetchFailed

if TYPE_CHECKING:
    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.alerts import GoogleAlerts
    from shared.sources.google.checkin import GcmCheckin
    from shared.sources.google.decode import DecodedUpdate
    from shared.sources.google.fcm import McsEndpoint
    from shared.sources.google.lease import FcmLeases, LeaseHold
    from shared.sources.google.places import NamedPlaces, SemanticLocation
    from shared.sources.google.spot import OwnerKeyRenewal
    from shared.store import Repository

logger = logging.getLogger(__name__)

COMPANION_WINDOW = timedelta(minutes=1)
# A run this soon after a batch located its device is that batch's own scheduled run (or its
# retry): the positions were delivered already.
RECENT_LOCATE = timedelta(seconds=45)
# The lease outlives the session: login and the locate requests come on top of the wait.
LEASE_MARGIN = timedelta(seconds=60)


@dataclass
class OwnerKeyInUse:
    """The owner key one session decrypts with, renewed at most once (`GoogleSource._renew`)."""

    credentials: GoogleSecrets
    renewed: bool = False
    failure: GoogleSourceError | None = None

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.credentials.owner_key)

    @property
    def version(self) -> int | None:
        return self.credentials.owner_key_version


@dataclass
class LocateResults:
    """What one session found: each device's positions, or why it has none."""

    locations: dict[str, list[Location]] = field(default_factory=dict)
    errors: dict[str, BridgeError] = field(default_factory=dict)
    # Reports naming a place without coordinates: shown by the fresh look, never pushed.
    unmapped: dict[str, list[SemanticLocation]] = field(default_factory=dict)
    # Reports skipped, by device: they failed to decrypt or validate, lacked a time, or were
    # dated ahead of the clock (issue 14, point 5).
    skipped: dict[str, int] = field(default_factory=dict)

    def of(self, device: Device) -> list[Location]:
        if device.id in self.errors:
            raise self.errors[device.id]
        return self.locations[device.id]


class GoogleSource:
    source = Source.GOOGLE

    def __init__(
        self,
        *,
        account: GoogleAccount,
        leases: FcmLeases,
        checkin: GcmCheckin,
        devices: Repository[Device],
        services: Repository[Service],
        mcs_host: str,
        mcs_port: int,
        fcm_timeout: float,
        max_future_skew: float,
        locate_concurrency: int,
        approximate_accuracy: float,
        alerts: GoogleAlerts,
        places: NamedPlaces,
        owner_keys: OwnerKeyRenewal,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.account = account
        self._places = places
        self._leases = leases
        self._checkin = checkin
        self._devices = devices
        self._services = services
        self._mcs_host = mcs_host
        self._mcs_port = mcs_port
        self._timeout = float(fcm_timeout)
        self._max_future_skew = max_future_skew
        self._locate_concurrency = locate_concurrency
        self._approximate_accuracy = approximate_accuracy
        self._alerts = alerts
        self._owner_keys = owner_keys
        self._clock = clock

    # Cold start: the FCM module (asyncio, and the session's code) loads with the first locate;
    # the hourly refresh and the credential routes never need it.
    @functools.cached_property
    def _endpoint(self) -> McsEndpoint:
        from shared.sources.google.fcm import McsEndpoint

        return McsEndpoint(self._mcs_host, self._mcs_port)

    # --- the pipeline's source -------------------------------------------------------------

    def fetch(self, device: Device) -> list[Location]:
        """The device's positions and those of the companions located with it."""
        return self._fetch(device, manual=False)

    def fetch_manual(self, device: Device) -> list[Location]:
        """A sync a user asked for (`shared.sync.ManualFetch`): located now, whatever a recent
        batch or the silent-tracker backoff says; a silent tracker is the run's error (504)."""
        return self._fetch(device, manual=True)

    def _fetch(self, device: Device, *, manual: bool) -> list[Location]:
        try:
            credentials = self.account.credentials()
            require_aas_token(credentials)
        except CredentialsMissing as exc:
            # As for a device no source can fetch: what waits for Traccar still goes.
            logger.warning(
                "cannot locate Google devices (%s); draining the outbox only",
                exc.message,
                extra={"device_id": device.id},
            )
            return []
        now = self._clock()
        hold = self._leases.acquire(
            uuid.uuid4().hex,
            now=now,
            until=now + timedelta(seconds=self._timeout) + LEASE_MARGIN,
            skip_device=None if manual else device.id,
            skip_within=RECENT_LOCATE,
        )
        if hold is None:
            logger.info(
                "located moments ago with other devices, or silent and backing off "
                "(GOOGLE_SILENT_BACKOFF_MAX); draining the outbox only",
                extra={"device_id": device.id},
            )
            return []
        results: LocateResults | None = None
        try:
            companions = self._due_companions(device, hold, now, credentials.username)
            results = self._locate(credentials, [device, *companions])
        finally:
            located = dict.fromkeys(results.locations, now) if results is not None else {}
            silent = (
                [d for d, e in results.errors.items() if isinstance(e, TrackerSilent)]
                if results is not None
                else []
            )
            self._leases.release(hold, now=self._clock(), located=located, silent=silent)
        brought_along: list[Location] = []
        for companion in companions:
            if companion.id in results.errors:
                logger.warning(
                    "a device located in the same session has no positions: %s",
                    results.errors[companion.id].message,
                    extra={"device_id": companion.id},
                )
                continue
            brought_along.extend(results.locations[companion.id])
        own_error = results.errors.get(device.id)
        if isinstance(own_error, TrackerSilent) and not manual:
            # Not the bridge's failure, and a retry by Cloud Scheduler would only wait as long
            # for nothing again: the run ends well, the tracker's backoff starts (`lease`).
            logger.warning(own_error.message, extra={"device_id": device.id})
            return Fetched(brought_along, skipped=results.skipped)
        if own_error is None:
            return Fetched([*results.locations[device.id], *brought_along], skipped=results.skipped)
        if brought_along:
            # The companions' positions must not be lost with the device's own failure.
            raise FetchFailed(
                own_error, brought_along=Fetched(brought_along, skipped=results.skipped)
            ) from own_error
        raise own_error

    def _due_companions(
        self, device: Device, hold: LeaseHold, now: datetime, username: str
    ) -> list[Device]:
        services = {s.id: s for s in self._services.list() if not s.paused}
        due = []
        for other in self._devices.list():
            service = services.get(other.id)
            if other.id == device.id or other.source != Source.GOOGLE or service is None:
                continue
            if not self.account.layout.owns(other, username):
                continue  # another account's device: its own credentials locate it
            if hold.lease.backing_off(other.id, now):
                continue  # silent: its backoff decides when it is located again
            located = hold.lease.located.get(other.id)
            if located is None or located + timedelta(seconds=service.timer) <= (
                now + COMPANION_WINDOW
            ):
                due.append(other)
        return due

    # --- the API's fresh look ----------------------------------------------------------------

    def locate_now(self, device: Device) -> list[Location]:
        """Locate one device now and return its positions, without pushing them."""
        return self.look_now(device)[0]

    def look_now(self, device: Device) -> tuple[list[Location], list[SemanticLocation]]:
        """Locate one device now: its positions, and the places it was reported at that have
        no coordinates. Nothing is pushed."""
        credentials = self.account.credentials()
        require_aas_token(credentials)
        now = self._clock()
        hold = self._leases.acquire(
            uuid.uuid4().hex, now=now, until=now + timedelta(seconds=self._timeout) + LEASE_MARGIN
        )
        assert hold is not None  # no skip was asked for
        try:
            results = self._locate(credentials, [device])
        finally:
            self._leases.release(hold, now=self._clock())
        return results.of(device), results.unmapped.get(device.id, [])

    # --- one session -------------------------------------------------------------------------

    def _locate(self, credentials: GoogleSecrets, devices: Sequence[Device]) -> LocateResults:
        # Cold start: firebase-messaging's session code loads only when a tracker is located.
        from shared.sources.google.fcm import run_session

        # Refused credentials end the run here, before any MCS session.
        self.account.access_token(credentials)
        requests = {str(uuid.uuid4()): device for device in devices}

        def send(request_uuid: str) -> None:
            device = requests[request_uuid]
            self.account.with_token(
                credentials,
                lambda token: self.account.nova.locate(
                    token,
                    device.id,
                    request_uuid=request_uuid,
                    fcm_token=credentials.fcm_token,
                    now=self._clock(),
                ),
            )

        try:
            session = run_session(
                credentials.library_credentials(),
                self._endpoint,
                list(requests),
                send,
                timeout=self._timeout,
                checkin=lambda: self._checkin.check_in(
                    credentials.android_id, credentials.security_token
                ),
                concurrency=self._locate_concurrency,
            )
        except (CheckinFailed, McsLoginFailed) as exc:
            # One refusal is that run's failure; several in a row need the user (`alerts`).
            self._alerts.mcs_refused(exc.message)
            raise
        self._alerts.mcs_logged_in()
        owner = OwnerKeyInUse(credentials)
        results = LocateResults()
        key_refused: GoogleSourceError | None = None
        decrypted = False
        for request_uuid, device in requests.items():
            if request_uuid in session.failures:
                results.errors[device.id] = session.failures[request_uuid]
            elif request_uuid not in session.answers:
                results.errors[device.id] = TrackerSilent(
                    f"device {device.id}: no answer from Google within {self._timeout:g} s "
                    "(the tracker may have no recent report, or be set to high-traffic areas "
                    "only)"
                )
            else:
                try:
                    decoded = self._decode(session.answers[request_uuid], device, owner)
                except (OwnerKeyRefused, OwnerKeyNotRenewable) as exc:
                    results.errors[device.id] = exc
                    key_refused = exc
                    continue
                except GoogleSourceError as exc:
                    results.errors[device.id] = exc
                    continue
                decrypted = True
                located = decoded.locations(device.id, approximate_above=self._approximate_accuracy)
                placed, unmapped = self._places.resolve(device.id, decoded.semantic)
                kept = self._not_ahead(device, [*located, *placed])
                results.locations[device.id] = kept
                results.unmapped[device.id] = unmapped
                skipped = len(decoded.skipped) + len(located) + len(placed) - len(kept)
                if skipped:
                    results.skipped[device.id] = skipped
                if decoded.skipped:
                    # Counted (the run's result, the push log) and named in the log; the rest
                    # of the update is delivered.
                    logger.warning(
                        "Google reports skipped: %s",
                        "; ".join(decoded.skipped),
                        extra={"device_id": device.id, "skipped": len(decoded.skipped)},
                    )
                if unmapped:
                    logger.info(
                        "reports naming places without coordinates kept out of Traccar "
                        "(PUT /places/<name> maps one)",
                        extra={"device_id": device.id, "places": len(unmapped)},
                    )
        if key_refused is not None:
            self._owner_key_refused(key_refused, owner)
        elif decrypted:
            self._alerts.owner_key_works()
        return results

    def _decode(self, payload: bytes, device: Device, owner: OwnerKeyInUse) -> DecodedUpdate:
        """Decrypt one answer; renew the owner key first when the update names a newer version
        than the stored one, or after its identity key refused the stored key."""
        # Imported here: protobuf and the crypto stack load only when a Google device is synced.
        from shared.sources.google.decode import (
            decode_device_update,
            owner_key_version,
            parse_device_update,
        )

        update = parse_device_update(payload)
        named_version = owner_key_version(update)
        if owner.version is not None and named_version > owner.version:
            # A CBC-wrapped identity key has no tag: a stale key would only show as reports
            # failing theirs, so the version Google names is trusted first.
            self._renew(owner, named_version)
        try:
            return decode_device_update(update, owner.key, device_id=device.id)
        except OwnerKeyRefused:
            if owner.renewed:
                raise
            self._renew(owner, named_version)
            return decode_device_update(update, owner.key, device_id=device.id)

    def _renew(self, owner: OwnerKeyInUse, named_version: int) -> None:
        """Fetch and store the current owner key (`spot`), once per session: a failure is
        remembered, so the session's other answers do not ask the Spot API again.
        `named_version` is the owner key version the update names (0: none)."""
        if owner.renewed:
            return
        if owner.failure is not None:
            raise owner.failure
        try:
            owner.credentials = self._owner_keys.renew(
                owner.credentials, named_version=named_version
            )
        except GoogleSourceError as exc:
            owner.failure = exc
            raise
        owner.renewed = True

    def _owner_key_refused(self, error: GoogleSourceError, owner: OwnerKeyInUse) -> None:
        """The owner key does not decrypt and could not be renewed (PROTOCOLS.md §5 "Owner key
        renewal"): every locate fails until new credentials come; the user is told once."""
        logger.warning("the owner key does not decrypt: %s", error.message)
        if isinstance(error, OwnerKeyNotRenewable):
            reason = error.message
        else:
            reason = (
                "the current owner key from Google's Spot API does not decrypt it either"
                if owner.renewed
                else "it was not renewed"
            )
        self._alerts.owner_key_not_renewable(reason)

    def _not_ahead(self, device: Device, locations: list[Location]) -> list[Location]:
        """`locations` without those dated more than `MAX_FUTURE_SKEW` after the clock (a
        tracker's clock gone wrong, a forged report), each skipped one logged."""
        now = self._clock()
        kept = []
        for location in locations:
            if too_far_ahead(location.timestamp, now=now, skew=self._max_future_skew):
                logger.warning(
                    "Google report dated ahead of the clock skipped (MAX_FUTURE_SKEW)",
                    extra={"device_id": device.id, "timestamp": location.timestamp},
                )
            else:
                kept.append(location)
        return kept
