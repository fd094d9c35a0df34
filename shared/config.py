"""The one configuration model of the bridge, read from the environment and an optional `.env`.

Seed 000's variable names are kept (`TRACCAR_SERVER_URL`, `API_TOKEN`, `AUTO_REGISTER_*`,
`NOTIFY_*`), plus smart tracking, the Google Cloud settings and the adapter backends.
`load_settings()` turns a validation failure into `ConfigError` whose message names each bad
variable; library code never reads `os.environ` itself but takes a `Settings`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError
from shared.models import MAX_JITTER_SECONDS

SecretsBackend = Literal["secret_manager", "local"]
SchedulerBackend = Literal["cloud_scheduler", "local"]


class Settings(BaseSettings):
    """Every variable the bridge understands; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # Traccar
    traccar_server_url: HttpUrl = HttpUrl("http://localhost:5055")
    traccar_api_url: HttpUrl | None = None
    traccar_api_token_secret: str = "traccar-api-token"  # noqa: S105 - a secret's name
    # What that secret holds (PROTOCOLS.md §2): a token (`token`; Traccar's default one expires
    # after 7 days) or a dedicated user's `email:password` (`basic`; never expires).
    traccar_api_auth: Literal["token", "basic"] = "token"
    # Who sees the devices the bridge creates: a device made with the service account token is
    # linked to nobody and shows on no map (PROTOCOLS.md §2).
    traccar_device_user_id: int | None = Field(None, ge=1)
    traccar_device_group_id: int | None = Field(None, ge=1)
    # Traccar's "Send command" through its Find Hub sender (PROTOCOLS.md §2b): the key Traccar
    # presents to the API's /devices/<uniqueId>/position-* routes, and the API's public URL.
    # With both, sync_device writes `command.sender`, `command.findHub.url` and
    # `command.findHub.key` onto the devices its pipeline creates or finds in Traccar;
    # Terraform gives API_URL and the key to sync_device only (the public webhooks function
    # never reads the key).
    traccar_command_key_secret: str = "traccar-command-key"  # noqa: S105 - a secret's name
    api_url: HttpUrl | None = None

    # API protection (Cloud Functions inject it from Secret Manager as an environment variable)
    api_token: SecretStr | None = None
    # Rotation (issue 20): after a new version of the api-token, tlink-path-token or
    # tlink-webhook-secret secret, the previous one is still accepted this long, then not.
    rotation_grace_hours: int = Field(24, ge=0, le=720)

    # Alerts (issue 20): each mailed once when it opens and once when it ends, listed by
    # `/health`. Traccar's OsmAnd endpoint refusing or unreachable this long while positions
    # wait; a synced device with no new position this long (a service's `silent_hours`
    # overrides it, 0 never alerts); a vendor's webhooks, once seen, silent this long.
    alert_traccar_down_minutes: int = Field(30, ge=1, le=10_080)
    alert_device_silent_hours: int = Field(24, ge=1, le=8_760)
    alert_webhooks_silent_hours: int = Field(24, ge=1, le=8_760)

    # Auto-registration of sync services (seed 000)
    auto_register_services: bool = True
    auto_register_timer: int = Field(600, ge=60, le=86_400)
    auto_register_delta: int = Field(5, ge=0, le=MAX_JITTER_SECONDS)

    # Smart tracking: locate a moving device more often for a while
    smart_tracking_enabled: bool = False
    smart_tracking_distance: float = Field(100.0, gt=0)
    smart_tracking_timer: int = Field(60, ge=10, le=3_600)
    smart_tracking_delta: int = Field(10, ge=0, le=MAX_JITTER_SECONDS)
    smart_tracking_duration: int = Field(900, gt=0, le=86_400)

    # Notifications (SMTP); disabled when host or recipient is empty
    notify_smtp_host: str = ""
    notify_smtp_port: int = Field(587, ge=1, le=65_535)
    notify_smtp_user: str = ""
    notify_smtp_pass: SecretStr = SecretStr("")
    notify_email_from: str = ""
    notify_email_to: str = ""
    notify_smtp_ssl: bool = False

    # Google Find My Device: the secrets.json secret, vendor endpoints (tests point them at
    # local fakes) and how long a locate waits for its FCM answer
    google_secret_name: str = "google-secrets"  # noqa: S105 - a secret's name
    google_auth_url: HttpUrl = HttpUrl("https://android.clients.google.com/auth")
    google_nova_url: HttpUrl = HttpUrl("https://android.googleapis.com/nova")
    # GCM check-in, done before each MCS login (PROTOCOLS.md §5)
    google_checkin_url: HttpUrl = HttpUrl("https://android.clients.google.com/checkin")
    # The Spot API (HTTP/2 gRPC): the current owner key when the stored one went stale
    google_spot_url: HttpUrl = HttpUrl("https://spot-pa.googleapis.com")
    # Locates in flight to Nova at once: many at once risk Google's throttling (429)
    google_locate_concurrency: int = Field(2, ge=1, le=16)
    # A crowd-sourced report less precise than this (metres) is marked `approximate`
    google_approximate_accuracy: float = Field(100.0, ge=0)
    # A tracker that gave no answer is located again after 10 min, then 20, 40... at most this
    # (seconds) until it answers: each silent locate costs a whole FCM wait
    google_silent_backoff_max: int = Field(21_600, ge=600, le=7 * 86_400)
    google_mcs_host: str = Field("mtalk.google.com", min_length=1)
    google_mcs_port: int = Field(5228, ge=1, le=65_535)
    fcm_timeout: int = Field(60, ge=2, le=300)

    # Google Cloud
    gcp_project: str = Field(
        "traccar-bridge-local",
        min_length=1,
        validation_alias=AliasChoices("GCP_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    )
    gcp_region: str = Field("europe-west1", min_length=1)
    sync_device_url: HttpUrl | None = None
    refresh_devices_url: HttpUrl | None = None
    scheduler_service_account: str = ""
    scheduler_time_zone: str = "Etc/UTC"

    # Adapter backends: Google services in the cloud, local stand-ins on a workstation
    secrets_backend: SecretsBackend = "local"
    secrets_dir: Path = Path(".secrets")
    scheduler_backend: SchedulerBackend = "local"
    # The AES-256 key sealing the cached vendor access tokens in Firestore (`state/*_token`):
    # Firestore's IAM cannot keep the webhooks function from reading a collection, Secret
    # Manager's keeps it from reading this key. The local backend makes it on first use.
    state_key_secret: str = "state-encryption-key"  # noqa: S105 - a secret's name

    # TLINK (docs/tlink.md): pull API, the zone of its naive timestamps, optional push protection
    tlink_api_url: HttpUrl = HttpUrl("https://app.dtuip.com")
    tlink_credentials_secret: str = "tlink-credentials"  # noqa: S105 - a secret's name
    tlink_time_zone: str = "Asia/Shanghai"
    tlink_require_signature: bool = False
    tlink_webhook_secret_name: str = "tlink-webhook-secret"  # noqa: S105 - a secret's name
    tlink_require_path_token: bool = False
    # Neither protection configured: the receiver refuses pushes (503) unless this is set on
    # purpose (a closed network, a test).
    tlink_allow_unauthenticated: bool = False
    tlink_path_token_secret: str = "tlink-path-token"  # noqa: S105 - a secret's name
    tlink_reading_retention_days: int = Field(365, ge=1, le=3_650)

    # Smartcar (shared/sources/smartcar/__init__.py): Connect, API origins, webhook verification
    smartcar_client_id: str = ""
    smartcar_client_secret_secret: str = "smartcar-client-secret"  # noqa: S105 - a secret's name
    smartcar_redirect_uri: HttpUrl | None = None
    smartcar_scope: str = "read_vehicle_info read_location read_odometer read_battery read_charge"
    smartcar_mode: Literal["live", "test", "simulated"] = "live"
    smartcar_management_token_secret: str = "smartcar-management-token"  # noqa: S105 - a name
    smartcar_tokens_secret: str = "smartcar-tokens"  # noqa: S105 - a secret's name
    smartcar_api_origin: HttpUrl = HttpUrl("https://api.smartcar.com")
    smartcar_auth_origin: HttpUrl = HttpUrl("https://auth.smartcar.com/oauth/token")
    smartcar_connect_origin: HttpUrl = HttpUrl("https://connect.smartcar.com")
    # The management API: disconnecting a removed vehicle (DELETE /devices/<id>, issue 20).
    smartcar_management_origin: HttpUrl = HttpUrl("https://management.smartcar.com")
    smartcar_event_retention_days: int = Field(30, ge=1, le=3_650)
    # API v3 (PROTOCOLS.md §3): the vehicle API and the application token endpoint.
    smartcar_vehicle_api_url: HttpUrl = HttpUrl("https://vehicle.api.smartcar.com/v3")
    smartcar_iam_token_url: HttpUrl = HttpUrl("https://iam.smartcar.com/oauth2/token")
    # Smartcar plans count API calls per vehicle per month (500 on common plans): a pull
    # schedule that would exceed this is refused (`shared.services`).
    smartcar_monthly_calls: int = Field(500, ge=1, le=10_000_000)

    # What input may claim (issue 13): a position or reading dated more than this many seconds
    # ahead of the clock is refused (API) or skipped (vendor deliveries and pulls).
    max_future_skew: int = Field(300, ge=0, le=86_400)
    # Growth caps: new sensors of a TLINK device, new signal codes of a Smartcar vehicle and
    # devices a receiver creates past these are skipped and logged; known ones still update.
    tlink_max_sensors_per_device: int = Field(64, ge=1, le=1_000)
    smartcar_max_signals_per_vehicle: int = Field(128, ge=1, le=1_000)
    receiver_max_devices: int = Field(1_000, ge=1, le=100_000)

    # Data retention
    push_log_retention_days: int = Field(90, ge=1, le=3_650)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator(
        "api_token",
        "traccar_api_url",
        "traccar_device_user_id",
        "traccar_device_group_id",
        "api_url",
        "sync_device_url",
        "refresh_devices_url",
        "smartcar_redirect_uri",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("tlink_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @property
    def api_token_required(self) -> bool:
        """Whether the API must have a bearer token. In the cloud (Secret Manager backend) an
        empty `API_TOKEN` means the `api-token` secret did not reach the function, and the API
        fails closed (503) rather than serving everyone; only the local backend (development,
        `make run`) may run without one."""
        return self.secrets_backend == "secret_manager"

    @property
    def notify_recipients(self) -> list[str]:
        return [address.strip() for address in self.notify_email_to.split(",") if address.strip()]

    @property
    def notify_sender(self) -> str:
        return self.notify_email_from or self.notify_smtp_user

    @property
    def notify_enabled(self) -> bool:
        return bool(self.notify_smtp_host and self.notify_recipients)

    @property
    def smartcar_scopes(self) -> list[str]:
        """`SMARTCAR_SCOPE` split on spaces or commas (Smartcar's permission names)."""
        return [scope for scope in self.smartcar_scope.replace(",", " ").split() if scope]


def _variable_name(settings_cls: type[BaseSettings], field: str) -> str:
    alias = settings_cls.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return " or ".join(str(choice) for choice in alias.choices)
    return field.upper()


_ALIAS_FIELDS = {
    str(choice): field
    for field, info in Settings.model_fields.items()
    if isinstance(info.validation_alias, AliasChoices)
    for choice in info.validation_alias.choices
}


def load_settings(**overrides: object) -> Settings:
    """Read and validate the configuration; a bad value raises `ConfigError` naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = str(error["loc"][0]) if error["loc"] else "?"
            # A value read through an alias is reported under the alias, not the field's name.
            field = _ALIAS_FIELDS.get(loc, loc)
            name = _variable_name(Settings, field) if field in Settings.model_fields else field
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The instance's settings, read once on first use."""
    return load_settings()


def main() -> int:
    """`python -m shared.config`: check the configuration, print what is wrong, exit non-zero."""
    try:
        load_settings()
    except ConfigError as exc:
        print(exc)
        return 2
    print("configuration ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
