"""The composition root: what one function instance holds, each part made once, lazily.

Cloud Functions reuse an instance for many requests; creating a Firestore client or an HTTP
session per request would waste the cold start budget and the connection pool. `get_runtime()`
builds the `Runtime` on first use; each property builds its client on first access, so a
function never imports a Google client it does not use.

This is the only module that wires things: library classes take what they use as keyword-only
arguments (a repository, the HTTP session, a secret reader, plain settings values), and only
`functions/`, `devtools/` and `bench/` import this module (`tests/unit/test_layers.py`).
Tests build a `Runtime` with their own settings and clients (the emulator's, an in-process
gRPC fake's).
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar, cast

from shared.config import Settings, get_settings
from shared.models import Source

if TYPE_CHECKING:
    import requests
    from google.cloud import firestore

    from shared.alerts import OperationsAlerts, WebhookArrivals
    from shared.command_provisioning import CommandProvisioning
    from shared.commands import TraccarCommands
    from shared.device_refresh import Discovery, VendorRefresh
    from shared.notify import Notifier, NotifierConfig
    from shared.pipeline import Pipeline
    from shared.removal import DeviceRemoval
    from shared.scheduler import JobScheduler
    from shared.secrets import CachedSecrets, SecretStore
    from shared.services import Services
    from shared.sources.google.accounts import GoogleAccounts
    from shared.sources.google.layout import AccountLayout
    from shared.sources.google.places import NamedPlaces
    from shared.sources.google.ring import Ringer
    from shared.sources.google.source import GoogleSource
    from shared.sources.google.stack import GoogleStack
    from shared.sources.smartcar.connect import SmartcarConnect
    from shared.sources.smartcar.source import SmartcarSource
    from shared.sources.smartcar.stack import SmartcarStack
    from shared.sources.smartcar.views import SmartcarViews
    from shared.sources.smartcar.webhook import SmartcarWebhook
    from shared.sources.tlink.stack import TlinkStack
    from shared.store import Store
    from shared.store.alerts import OperationsDocument
    from shared.store.sealed import SealedState, Sealer
    from shared.store.smartcar import SmartcarStore
    from shared.sync import LocationSource, MovementTracker, Sync
    from shared.traccar import TraccarApi
    from shared.traccar_status import OsmAndWatch


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        firestore_client: firestore.Client | None = None,
        secrets: SecretStore | None = None,
        scheduler: JobScheduler | None = None,
        http_session: requests.Session | None = None,
        sources: Mapping[Source, LocationSource] | None = None,
    ) -> None:
        self.settings = settings
        self._firestore_client = firestore_client
        self._secrets = secrets
        self._scheduler = scheduler
        self._http_session = http_session
        self._sources = sources

    @functools.cached_property
    def firestore_client(self) -> firestore.Client:
        if self._firestore_client is not None:
            return self._firestore_client
        from google.cloud import firestore

        return firestore.Client(project=self.settings.gcp_project)

    @functools.cached_property
    def store(self) -> Store:
        from shared.store import Store

        return Store(self.firestore_client)

    @functools.cached_property
    def schema(self) -> int:
        """The stored data's schema version, migrated first if it was older (issue 20), once
        per instance. Every part that reads or writes more than `/health`'s document asks for
        it; `/health` does not, so its one read stays one."""
        from shared.store.migrations import Migrations

        return Migrations(self.firestore_client).ensure_current()

    @functools.cached_property
    def secrets(self) -> SecretStore:
        if self._secrets is not None:
            return self._secrets
        from shared import secrets

        if self.settings.secrets_backend == "secret_manager":
            from google.cloud import secretmanager

            return secrets.SecretManagerStore(
                secretmanager.SecretManagerServiceClient(), self.settings.gcp_project
            )
        return secrets.LocalSecretStore(self.settings.secrets_dir)

    @functools.cached_property
    def scheduler(self) -> JobScheduler:
        if self._scheduler is not None:
            return self._scheduler
        from shared import scheduler

        if self.settings.scheduler_backend == "cloud_scheduler":
            from google.cloud import scheduler_v1

            # Without a target URL the jobs can still be paused, resumed and deleted (what
            # sync_device needs when Google refuses the credentials); creating one says why not.
            url = self.settings.sync_device_url
            return scheduler.CloudSchedulerJobs(
                scheduler_v1.CloudSchedulerClient(),
                project=self.settings.gcp_project,
                region=self.settings.gcp_region,
                sync_device_url=str(url) if url else None,
                service_account_email=self.settings.scheduler_service_account,
                time_zone=self.settings.scheduler_time_zone,
            )
        return scheduler.LocalJobs(self.store.local_jobs)

    @functools.cached_property
    def http_session(self) -> requests.Session:
        """One pooled HTTP session per instance for every outbound vendor call."""
        if self._http_session is not None:
            return self._http_session
        import requests

        return requests.Session()

    @functools.cached_property
    def pipeline(self) -> Pipeline:
        self.schema  # noqa: B018 - migrated before the first delivery
        from shared.pipeline import Pipeline
        from shared.traccar import OsmAndClient
        from shared.traccar_status import TraccarApiWatch

        return Pipeline(
            delivery=self.store.delivery,
            osmand=OsmAndClient(self.http_session, str(self.settings.traccar_server_url)),
            traccar_api=self.traccar_api,
            retention=timedelta(days=self.settings.push_log_retention_days),
            device_user_id=self.settings.traccar_device_user_id,
            device_group_id=self.settings.traccar_device_group_id,
            command_attributes=self.command_attributes,
            api_status=TraccarApiWatch(mark=self.store.traccar_api, notifier=lambda: self.notifier),
            osmand_status=self.osmand_watch,
        )

    @functools.cached_property
    def operations_document(self) -> OperationsDocument:
        from shared.store.alerts import OperationsDocument

        return OperationsDocument(self.store.client)

    @functools.cached_property
    def osmand_watch(self) -> OsmAndWatch:
        """Traccar refusing positions for long: alerted once (issue 20)."""
        from shared.traccar_status import OsmAndWatch

        return OsmAndWatch(
            document=self.operations_document,
            notifier=lambda: self.notifier,
            down_after=timedelta(minutes=self.settings.alert_traccar_down_minutes),
        )

    @functools.cached_property
    def alerts(self) -> OperationsAlerts:
        """The hourly evaluation of the operations alerts (issue 20)."""
        from shared.alerts import OperationsAlerts

        return OperationsAlerts(
            document=self.operations_document,
            services=self.store.services,
            delivery=self.store.delivery,
            notifier=lambda: self.notifier,
            device_silent=timedelta(hours=self.settings.alert_device_silent_hours),
            webhooks_silent=timedelta(hours=self.settings.alert_webhooks_silent_hours),
        )

    @functools.cached_property
    def webhook_arrivals(self) -> WebhookArrivals:
        from shared.alerts import WebhookArrivals

        return WebhookArrivals(document=self.operations_document)

    @property
    def rotation_grace(self) -> timedelta:
        return timedelta(hours=self.settings.rotation_grace_hours)

    def accepted_versions(self, name: str, fresh: bool) -> list[str]:
        """A rotated secret's stored versions still accepted (issue 20, rotation): the API
        token's and the Traccar command key's (`shared.web.matches_rotated` checks them)."""
        from shared.models import utc_now

        return self.cached_secrets.accepted(
            name, grace=self.rotation_grace, now=utc_now(), fresh=fresh
        )

    def api_token_versions(self, fresh: bool) -> list[str]:
        """The API token's stored versions still accepted: none when the secret holds no
        version (local development: `API_TOKEN` alone decides)."""
        from shared.secrets import SecretNotFound
        from shared.web import API_TOKEN_SECRET

        try:
            return self.accepted_versions(API_TOKEN_SECRET, fresh)
        except SecretNotFound:
            return []

    def command_attributes(self) -> dict[str, str] | None:
        """The Find Hub sender's attributes for Traccar's devices (PROTOCOLS.md §2b), or None:
        without `API_URL` (only sync_device gets it; the public webhooks function
        never reads the command key) or without a stored key. Read per call (cached a minute),
        so a new key reaches the devices with their next provisioning."""
        if self.settings.api_url is None:
            return None
        from shared.secrets import SecretNotFound

        try:
            key = self.cached_secrets.read(self.settings.traccar_command_key_secret).strip()
        except SecretNotFound:
            return None
        if not key:
            return None
        return {
            "command.sender": "findHub",
            "command.findHub.url": str(self.settings.api_url).rstrip("/"),
            "command.findHub.key": key,
        }

    def traccar_api(self) -> TraccarApi | None:
        """Traccar's REST API with the stored credentials (a token, or `email:password` with
        `TRACCAR_API_AUTH=basic`), or None when `TRACCAR_API_URL` is unset. Read per call, so
        the run after new credentials are stored uses them."""
        if self.settings.traccar_api_url is None:
            return None
        from shared.secrets import SecretNotFound, missing
        from shared.traccar import BasicLogin, TraccarApi, TraccarAuthError

        name = self.settings.traccar_api_token_secret
        try:
            stored = self.secrets.read(name).strip()
        except SecretNotFound as exc:
            raise TraccarAuthError(missing("Traccar API credentials", name, exc)) from exc
        credentials: str | BasicLogin = stored
        if self.settings.traccar_api_auth == "basic":
            # Split at the first colon, as HTTP Basic does: an email has none, a password may.
            email, colon, password = stored.partition(":")
            if not colon or not email:
                raise TraccarAuthError(
                    f"secret {name} must hold email:password with TRACCAR_API_AUTH=basic"
                )
            credentials = BasicLogin(email, password)
        return TraccarApi(self.http_session, str(self.settings.traccar_api_url), credentials)

    @functools.cached_property
    def cached_secrets(self) -> CachedSecrets:
        """The one cache of vendor secrets (signing keys, path tokens, credentials)."""
        from shared.secrets import CachedSecrets

        return CachedSecrets(self.secrets)

    @functools.cached_property
    def sealer(self) -> Sealer:
        """Seals the cached vendor access tokens in Firestore under the state key
        (`STATE_KEY_SECRET`): every function may read Firestore, only the token users the key.
        Nothing is read or imported until a token is cached or read."""
        from shared.secrets import KeyInSecret
        from shared.store.sealed import Sealer

        return Sealer(
            key=KeyInSecret(
                secrets=self.cached_secrets,
                store=self.secrets,
                name=self.settings.state_key_secret,
                create_missing=self.settings.secrets_backend == "local",
            )
        )

    def sealed_state(self) -> SealedState:
        from shared.store.sealed import SealedState

        return SealedState(self.store.client, sealer=self.sealer)

    @functools.cached_property
    def notifier(self) -> Notifier:
        from shared.notify import Notifier

        return Notifier(notifier_config(self.settings))

    @functools.cached_property
    def services(self) -> Services:
        self.schema  # noqa: B018 - migrated before the first use of the data
        from shared.services import Services

        store = self.store
        return Services(
            services=store.services,
            devices=store.devices,
            excluded=store.excluded_devices,
            state=store.state,
            delivery=store.delivery,
            scheduler=self.scheduler,
            notifier=self.notifier,
            smartcar_monthly_calls=self.settings.smartcar_monthly_calls,
        )

    @functools.cached_property
    def commands(self) -> TraccarCommands:
        """Traccar's Find Hub commands (PROTOCOLS.md §2b) on the sync services."""
        from shared.commands import TraccarCommands

        return TraccarCommands(
            devices=self.store.devices,
            excluded=self.store.excluded_devices,
            services=lambda: self.services,
            scheduler=lambda: self.scheduler,
            key_versions=functools.partial(
                self.accepted_versions, self.settings.traccar_command_key_secret
            ),
            secrets=self.cached_secrets,
            key_secret=self.settings.traccar_command_key_secret,
            default_timer=self.settings.auto_register_timer,
            default_delta=self.settings.auto_register_delta,
        )

    @functools.cached_property
    def vendor_refreshes(self) -> list[VendorRefresh]:
        """TLINK's and Smartcar's hourly refresh (`shared.device_refresh`): each skipped, its
        modules not loaded, when its pulls are not configured."""
        from shared.device_refresh import VendorRefresh, missing_secret
        from shared.store.vendor_refresh import VendorRefreshDocument

        settings = self.settings
        tlink_secret = settings.tlink_credentials_secret

        def tlink_discovery() -> Discovery:
            from shared.sources.tlink.refresh import TlinkDiscovery

            return TlinkDiscovery(source=self.tlink.source)

        def smartcar_discovery() -> Discovery:
            from shared.sources.smartcar.refresh import SmartcarDiscovery
            from shared.sources.smartcar.tokens import ApplicationToken, ClientFactory
            from shared.store.smartcar import SmartcarStore

            # `smartcar_stack` makes the stack's client a ClientFactory, which holds `api`.
            api = cast("ClientFactory", self.smartcar.client).api
            return SmartcarDiscovery(
                store=SmartcarStore(self.store.client),
                api=api,
                # Its own: one token request an hour, the pulls' stack left as it is.
                app_token=ApplicationToken(api=api),
            )

        def tlink_skip() -> str | None:
            read = functools.partial(self.secrets.read, tlink_secret)
            return missing_secret(read, "TLINK credentials", tlink_secret)

        def smartcar_skip() -> str | None:
            return None if settings.smartcar_client_id else "SMARTCAR_CLIENT_ID is not set"

        def refresh(
            source: Source, skip: Callable[[], str | None], discovery: Callable[[], Discovery]
        ) -> VendorRefresh:
            return VendorRefresh(
                source=source,
                skip_reason=skip,
                discovery=discovery,
                devices=self.store.devices,
                excluded=self.store.excluded_devices,
                state=VendorRefreshDocument(self.store.client, vendor=source.value),
                services=lambda: self.services,
                notifier=lambda: self.notifier,
                auto_register=settings.auto_register_services,
                auto_register_timer=settings.auto_register_timer,
                auto_register_delta=settings.auto_register_delta,
            )

        return [
            refresh(Source.TLINK, tlink_skip, tlink_discovery),
            refresh(Source.SMARTCAR, smartcar_skip, smartcar_discovery),
        ]

    @functools.cached_property
    def command_provisioning(self) -> CommandProvisioning:
        """The hourly pass giving existing Traccar devices the Find Hub sender's attributes."""
        from shared.command_provisioning import CommandProvisioning
        from shared.traccar_status import TraccarApiWatch

        return CommandProvisioning(
            devices=self.store.devices,
            traccar_api=self.traccar_api,
            command_attributes=self.command_attributes,
            api_status=TraccarApiWatch(mark=self.store.traccar_api, notifier=lambda: self.notifier),
        )

    @functools.cached_property
    def removal(self) -> DeviceRemoval:
        """`DELETE /devices/<id>` (issue 20); Smartcar's module loads for a vehicle only."""
        from shared.removal import DeviceRemoval
        from shared.store.removal import DeviceRecords

        def smartcar_disconnect(vehicle_id: str) -> bool:
            from shared.sources.smartcar.disconnect import SmartcarDisconnect

            return SmartcarDisconnect(
                session=self.http_session,
                management_origin=str(self.settings.smartcar_management_origin),
                secrets=self.cached_secrets,
                secret_name=self.settings.smartcar_management_token_secret,
            )(vehicle_id)

        return DeviceRemoval(
            services=self.services,
            devices=self.store.devices,
            excluded=self.store.excluded_devices,
            records=DeviceRecords(self.store.client),
            delivery=self.store.delivery,
            traccar_api=self.traccar_api,
            smartcar_disconnect=smartcar_disconnect,
        )

    @functools.cached_property
    def sync(self) -> Sync:
        self.schema  # noqa: B018 - migrated before the first run
        from shared.sync import Sync

        return Sync(
            devices=self.store.devices,
            delivery=self.store.delivery,
            pipeline=lambda: self.pipeline,
            sources=self.sources,
            trackers=self.trackers,
            max_future_skew=self.settings.max_future_skew,
            # A lambda: the scheduler's client is made only by a one-shot job's run.
            delete_once=lambda device_id: self.scheduler.delete_once(device_id),
        )

    @functools.cached_property
    def sources(self) -> Mapping[Source, LocationSource]:
        """The sources that can pull a device's positions, one per vendor, each built (its
        vendor's modules imported) on first lookup."""
        if self._sources is not None:
            return self._sources
        return LazyMapping(
            {
                # Each Google device is located with its own account's credentials (ADR 0004).
                Source.GOOGLE: lambda: self.google_accounts,
                Source.TLINK: lambda: self.tlink.source,
                Source.SMARTCAR: lambda: self.smartcar.source,
            }
        )

    @functools.cached_property
    def trackers(self) -> Mapping[Source, MovementTracker]:
        """What is told of each locate before delivery: Google's smart tracking."""
        return LazyMapping({Source.GOOGLE: lambda: self.google.smart_tracking})

    # --- the vendors: each stack built, and its modules imported, on first use --------------

    # @@google@@
    if TYPE_CHECKING:
        from datetime import datetime

    @functools.cached_property
    def google(self) -> GoogleStack:
        self.schema  # noqa: B018 - migrated before the vendor's documents are used
        return self.google_stack()

    @functools.cached_property
    def google_accounts(self) -> GoogleAccounts:
        """The deployment's Google accounts, each one's stack built on first use (ADR 0004);
        the first account's is `google` (which tests may replace)."""
        self.schema  # noqa: B018 - migrated before the vendor's documents are used
        from shared.sources.google.accounts import GoogleAccounts
        from shared.store.google import AccountRegistry, GoogleDocuments

        def forget_documents(layout: AccountLayout) -> None:
            GoogleDocuments(self.store.client, sealer=self.sealer, account=layout.key).forget()

        def stack(layout: AccountLayout) -> GoogleStack:
            return self.google if layout.is_first else self.google_stack(account=layout)

        return GoogleAccounts(
            registry=AccountRegistry(self.store.client),
            secrets=self.secrets,
            secret_name=self.settings.google_secret_name,
            devices=self.store.devices,
            stack=stack,
            forget_documents=forget_documents,
            services=lambda: self.services,
        )

    def google_stack(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        account: AccountLayout | None = None,
    ) -> GoogleStack:
        """A Google stack over this runtime's parts; `clock` is a test's or a benchmark's (the
        instance's own stack, `google`, reads the system clock); `account` a further account's
        layout (ADR 0004; default: the first account's)."""
        # Cold start: the Google modules load with the first Google request, never for /health;
        # the locate side's (source, places, ringer) with its first use (`GoogleStack`), so the
        # hourly refresh of an account loads the account's and the refresh's only.
        from shared.models import utc_now
        from shared.sources.google.account import GoogleAccount
        from shared.sources.google.alerts import GoogleAlerts
        from shared.sources.google.auth import TokenProvider
        from shared.sources.google.client import NovaClient
        from shared.sources.google.expiry import GoogleExpiry
        from shared.sources.google.layout import AccountLayout
        from shared.sources.google.refresh import GoogleRefresh
        from shared.sources.google.smart_tracking import SmartTracker
        from shared.sources.google.stack import GoogleStack
        from shared.store.google import GoogleDocuments

        now = clock or utc_now
        store, settings = self.store, self.settings
        layout = account or AccountLayout.first()
        secret_name = layout.secret_name(settings.google_secret_name)
        documents = GoogleDocuments(store.client, sealer=self.sealer, account=layout.key)

        # The scheduler's client is made when a job is paused, resumed or retimed, and the
        # notifier's module loads when an email is due, not when a Google sync or a refresh with
        # nothing to do starts: the parts take those two as callables.
        def services() -> Services:
            return self.services

        def notifier() -> Notifier:
            return self.notifier

        tokens = TokenProvider(
            cache=documents.token, auth_url=str(settings.google_auth_url), clock=now
        )
        alerts = GoogleAlerts(
            document=documents.alerts,
            credentials_state=documents.credentials,
            notifier=notifier,
            clock=now,
        )
        expiry = GoogleExpiry(
            auth=documents.auth,
            secrets=self.secrets,
            secret_name=secret_name,
            tokens=tokens,
            services=services,
            notifier=notifier,
            layout=layout,
        )
        google_account = GoogleAccount(
            secrets=self.secrets,
            secret_name=secret_name,
            tokens=tokens,
            nova=NovaClient(self.http_session, str(settings.google_nova_url)),
            expiry=expiry,
            credentials_state=documents.credentials,
            auth=documents.auth,
            alerts=alerts,
            layout=layout,
            clock=now,
        )
        smart_tracking = SmartTracker(
            states=documents.smart_tracking,
            delivery=store.delivery,
            services=services,
            enabled=settings.smart_tracking_enabled,
            distance=settings.smart_tracking_distance,
            duration=settings.smart_tracking_duration,
            timer=settings.smart_tracking_timer,
            delta=settings.smart_tracking_delta,
            clock=now,
        )

        def places() -> NamedPlaces:
            from shared.sources.google.places import NamedPlaces
            from shared.store.places import PlacesDocuments

            return NamedPlaces(documents=PlacesDocuments(store.client))

        def source(places: NamedPlaces) -> GoogleSource:
            from shared.sources.google.checkin import GcmCheckin
            from shared.sources.google.lease import FcmLeases
            from shared.sources.google.source import GoogleSource
            from shared.sources.google.spot import OwnerKeyRenewal, SpotClient

            return GoogleSource(
                account=google_account,
                leases=FcmLeases(
                    document=documents.fcm_lease,
                    silent_backoff_max=timedelta(seconds=settings.google_silent_backoff_max),
                ),
                checkin=GcmCheckin(session=self.http_session, url=str(settings.google_checkin_url)),
                devices=store.devices,
                services=store.services,
                mcs_host=settings.google_mcs_host,
                mcs_port=settings.google_mcs_port,
                fcm_timeout=settings.fcm_timeout,
                max_future_skew=settings.max_future_skew,
                locate_concurrency=settings.google_locate_concurrency,
                approximate_accuracy=settings.google_approximate_accuracy,
                alerts=alerts,
                places=places,
                owner_keys=OwnerKeyRenewal(
                    account=google_account,
                    spot=SpotClient(url=str(settings.google_spot_url)),
                    failures=documents.credentials,
                    clock=now,
                ),
                clock=now,
            )

        def ringer() -> Ringer:
            from shared.sources.google.ring import Ringer

            return Ringer(account=google_account, devices=store.devices)

        return GoogleStack(
            source=source,
            account=google_account,
            smart_tracking=smart_tracking,
            refresh=GoogleRefresh(
                account=google_account,
                smart_tracking=smart_tracking,
                auth=documents.auth,
                devices=store.devices,
                excluded=store.excluded_devices,
                state=documents.refresh,
                services=services,
                notifier=notifier,
                auto_register=settings.auto_register_services,
                auto_register_timer=settings.auto_register_timer,
                auto_register_delta=settings.auto_register_delta,
            ),
            expiry=expiry,
            places=places,
            ringer=ringer,
            devices=store.devices,
            delivery=store.delivery,
        )

    # @@smartcar@@
    @functools.cached_property
    def smartcar(self) -> SmartcarStack:
        self.schema  # noqa: B018 - migrated before the vendor's documents are used
        return self.smartcar_stack()

    def smartcar_stack(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> SmartcarStack:
        """A Smartcar stack over this runtime's parts; `clock` and `sleep` are a test's (the
        instance's own stack, `smartcar`, uses the system's)."""
        # Cold start: the Smartcar modules load with the first Smartcar request, never for
        # /health; each part's own modules with its first use (`SmartcarStack`).
        import time

        from shared.models import utc_now
        from shared.sources.smartcar.client import SdkOrigins
        from shared.sources.smartcar.stack import SmartcarStack
        from shared.sources.smartcar.tokens import (
            ApplicationToken,
            ClientFactory,
            TokenRenewal,
            TokenStore,
        )

        now = clock or utc_now
        pause = sleep or time.sleep
        settings = self.settings

        @functools.cache
        def store() -> SmartcarStore:
            from shared.store.smartcar import SmartcarStore

            return SmartcarStore(self.store.client)

        redirect_uri = settings.smartcar_redirect_uri
        client = ClientFactory(
            origins=SdkOrigins(
                api=str(settings.smartcar_api_origin),
                auth=str(settings.smartcar_auth_origin),
                connect=str(settings.smartcar_connect_origin),
            ),
            secrets=self.cached_secrets,
            client_secret_name=settings.smartcar_client_secret_secret,
            client_id=settings.smartcar_client_id,
            redirect_uri=str(redirect_uri) if redirect_uri is not None else None,
            mode=settings.smartcar_mode,
            scopes=settings.smartcar_scopes,
            session=lambda: self.http_session,
            vehicle_api_url=str(settings.smartcar_vehicle_api_url),
            token_url=str(settings.smartcar_iam_token_url),
            clock=now,
        )
        # One application token per stack, so per instance (API v3).
        app_token = ApplicationToken(api=client.api, clock=now)
        tokens = TokenStore(
            secrets=self.secrets,
            locks=store,
            secret_name=settings.smartcar_tokens_secret,
            clock=now,
            sleep=pause,
        )

        def source() -> SmartcarSource:
            from shared.sources.smartcar.source import SmartcarSource

            return SmartcarSource(
                client=client,
                api=client.api,
                app_token=app_token,
                store=store,
                tokens=tokens,
                max_future_skew=settings.max_future_skew,
                clock=now,
            )

        def webhook() -> SmartcarWebhook:
            from shared.sources.smartcar.webhook import SignatureCheck, SmartcarWebhook

            return SmartcarWebhook(
                store=store(),
                delivery=self.store.delivery,
                pipeline=lambda: self.pipeline,
                signature=SignatureCheck(
                    secrets=self.cached_secrets,
                    secret_name=settings.smartcar_management_token_secret,
                ),
                event_retention=timedelta(days=settings.smartcar_event_retention_days),
                max_future_skew=settings.max_future_skew,
                max_signals=settings.smartcar_max_signals_per_vehicle,
                max_vehicles=settings.receiver_max_devices,
                # The notifier's module loads when a cap is first reached, not per delivery.
                notify_signal_cap=lambda vehicle, cap: self.notifier.smartcar_signal_cap(
                    vehicle, cap
                ),
                clock=now,
                sleep=pause,
            )

        def connect() -> SmartcarConnect:
            from shared.sources.smartcar.connect import SmartcarConnect

            return SmartcarConnect(
                store=store(),
                client=client,
                api=client.api,
                app_token=app_token,
                tokens=tokens,
                clock=now,
            )

        def views() -> SmartcarViews:
            from shared.sources.smartcar.views import SmartcarViews

            return SmartcarViews(store=store())

        return SmartcarStack(
            source=source,
            webhook=webhook,
            connect=connect,
            views=views,
            renewal=TokenRenewal(tokens=tokens, client=client),
            tokens=tokens,
            client=client,
        )

    # @@tlink@@
    @functools.cached_property
    def tlink(self) -> TlinkStack:
        self.schema  # noqa: B018 - migrated before the vendor's documents are used
        # Cold start: the TLINK modules load with the first TLINK request, never for /health.
        from zoneinfo import ZoneInfo

        from shared.sources.tlink.source import TlinkSource
        from shared.sources.tlink.stack import TlinkStack
        from shared.sources.tlink.views import TlinkViews
        from shared.sources.tlink.webhook import (
            PathTokenCheck,
            RefusedPushes,
            SignatureCheck,
            TlinkWebhook,
        )
        from shared.store.tlink import TlinkRepository

        store, settings = self.store, self.settings
        repository = TlinkRepository(store.client)
        source = TlinkSource(
            repository=repository,
            secrets=self.secrets,
            cached_secrets=self.cached_secrets,
            http_session=self.http_session,
            state=self.sealed_state(),
            api_url=str(settings.tlink_api_url),
            credentials_secret=settings.tlink_credentials_secret,
            time_zone=settings.tlink_time_zone,
            reading_retention=timedelta(days=settings.tlink_reading_retention_days),
            max_future_skew=settings.max_future_skew,
            max_sensors_per_device=settings.tlink_max_sensors_per_device,
            max_devices=settings.receiver_max_devices,
            # The notifier's module loads when a mail is due, not with every push or pull.
            notifier=lambda: self.notifier,
        )
        webhook = TlinkWebhook(
            source=source,
            delivery=store.delivery,
            pipeline=lambda: self.pipeline,
            path_token=PathTokenCheck(
                source=source,
                required=settings.tlink_require_path_token,
                secret_name=settings.tlink_path_token_secret,
                grace=self.rotation_grace,
            ),
            signature=SignatureCheck(
                source=source,
                required=settings.tlink_require_signature,
                secret_name=settings.tlink_webhook_secret_name,
                grace=self.rotation_grace,
            ),
            allow_unauthenticated=settings.tlink_allow_unauthenticated,
            refused=RefusedPushes(repository=repository, notifier=lambda: self.notifier),
        )
        views = TlinkViews(repository, ZoneInfo(settings.tlink_time_zone))
        return TlinkStack(source=source, webhook=webhook, views=views)

    # @@end-vendors@@


K = TypeVar("K")
V = TypeVar("V")


class LazyMapping(Mapping[K, V]):
    """A mapping whose values are built on first lookup, once, under a lock.

    A Google sync, the hourly refresh or a TLINK webhook loads its own vendor's stack only.
    """

    def __init__(self, factories: Mapping[K, Callable[[], V]]) -> None:
        self._factories = factories
        self._built: dict[K, V] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: K) -> V:
        factory = self._factories[key]  # KeyError for what is no key, as a dict does
        with self._lock:
            if key not in self._built:
                self._built[key] = factory()
            return self._built[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


def notifier_config(settings: Settings) -> NotifierConfig:
    """The SMTP part of the settings, as the `Notifier` takes it."""
    from shared.notify import NotifierConfig

    return NotifierConfig(
        host=settings.notify_smtp_host.strip(),
        port=settings.notify_smtp_port,
        user=settings.notify_smtp_user,
        password=settings.notify_smtp_pass,
        sender=settings.notify_sender,
        recipients=tuple(settings.notify_recipients),
        use_ssl=settings.notify_smtp_ssl,
    )


@functools.cache
def get_runtime() -> Runtime:
    return Runtime(get_settings())


def freeze_loaded_objects() -> None:
    """Put every object that exists now out of the garbage collector's reach (`gc.freeze`).

    Each function's module calls it last. functions-framework's master process imports that
    module, then forks the worker that serves: what exists by then (modules, classes, models,
    the app) lives as long as the instance, yet every full collection walked it all again. A
    cold worker's first request (which imports the Firestore client) ran one: 20-35 ms here,
    and writing to every inherited page made the worker copy them (7 MiB more PSS). Python's
    documentation of `gc.freeze` recommends it before a fork.
    """
    gc.freeze()
