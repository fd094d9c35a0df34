"""The secrets adapter: Secret Manager in the cloud, 0600 files in a git-ignored folder locally.

Both backends keep numbered versions of a named secret:

- `read(name)` returns the latest enabled version's value (`SecretNotFound` if none);
- `add_version(name, value)` stores a new latest version (creating the secret if needed);
- `disable_versions(name, keep=...)` disables every enabled version but `keep`, so an old
  credential stops being readable once a new one is in place;
- `versions(name)` lists the enabled versions, newest first, each with its value and when it
  was added: what a rotation with a grace period checks a presented credential against
  (`accepted_values`, `CachedSecrets.accepted`).
- `destroy_disabled(name, keep=..., limit=...)` destroys the disabled versions but the newest
  `keep` of them, oldest first, at most `limit` in one call. Secret Manager bills every version
  that is not destroyed, disabled ones too (https://cloud.google.com/secret-manager/pricing: a
  version is "active", $0.06 a month each, when enabled or disabled; destroyed ones are free),
  so a secret rewritten on a schedule (the Smartcar tokens, at each refresh) prunes its past.

Every value read or written is registered with `shared.logs.register_secret`: it can never
appear in a log line, whatever code later logs it by mistake.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import BridgeError, ConfigError
from shared.logs import register_secret

if TYPE_CHECKING:
    from google.cloud import secretmanager

DEFAULT_GOOGLE_TIMEOUT = 30.0  # seconds for each Secret Manager call

# Secret Manager's own rule for secret ids; it also keeps local names inside their folder.
_SECRET_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


class SecretNotFound(BridgeError):
    """No enabled version of a secret; `how_to_store` says how to add one for the backend
    that was asked (every "no … stored in secret X" message ends with it)."""

    status = 404

    def __init__(self, message: str, *, how_to_store: str = "") -> None:
        super().__init__(f"{message}; {how_to_store}" if how_to_store else message)
        self.how_to_store = how_to_store


def local_store_hint(name: str) -> str:
    # `make secret` is devtools/secrets.py: the value from stdin or a prompt that does not echo.
    return f"store it with `make secret NAME={name}`"


def secret_manager_hint(name: str) -> str:
    return f"store it with `gcloud secrets versions add {name} --data-file=-`"


def missing(what: str, name: str, exc: SecretNotFound) -> str:
    """The message for a secret the caller needs: "no <what> stored in secret <name>; store it
    with …" (the backend's own command when the store said it)."""
    hint = f"; {exc.how_to_store}" if exc.how_to_store else ""
    return f"no {what} stored in secret {name}{hint}"


def check_secret_name(name: str) -> str:
    # fullmatch: `$` would let a trailing newline through.
    if not _SECRET_NAME.fullmatch(name):
        raise ValueError(f"invalid secret name: {name!r}")
    return name


@dataclass(frozen=True)
class SecretVersion:
    """One enabled version of a secret: its number, value and when it was added."""

    number: int
    value: str
    created: datetime


class SecretStore(Protocol):
    def read(self, name: str) -> str: ...

    def add_version(self, name: str, value: str) -> str: ...

    def disable_versions(self, name: str, *, keep: str | None = None) -> int: ...

    def destroy_disabled(self, name: str, *, keep: int, limit: int) -> int: ...

    def versions(self, name: str) -> list[SecretVersion]: ...


DEFAULT_ROTATION_GRACE = timedelta(hours=24)


def accepted_values(versions: list[SecretVersion], *, grace: timedelta, now: datetime) -> list[str]:
    """The values a rotated credential accepts: the newest version at once, and each older one
    until `grace` has passed since the version that replaced it was added. A rotation is then
    gapless (senders switch within the grace) and the old value stops by itself, without
    anyone disabling it."""
    ordered = sorted(versions, key=lambda version: version.number, reverse=True)
    accepted = []
    replaced_at: datetime | None = None
    for version in ordered:
        if replaced_at is None or now - replaced_at < grace:
            accepted.append(version.value)
        replaced_at = version.created
    return accepted


def read_json(store: SecretStore, name: str) -> Any:
    """The latest version of a secret holding a JSON document."""
    return json.loads(store.read(name))


class LocalSecretStore:
    """Versions as files `<dir>/<name>/<n>` (0600, folder 0700); disabled ones end `.disabled`."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _folder(self, name: str) -> Path:
        return self._directory / check_secret_name(name)

    def names(self) -> dict[str, tuple[list[int], int]]:
        """Every stored secret: its enabled version numbers and how many are disabled. Names
        and numbers only; no value is read (`make secrets`)."""
        if not self._directory.is_dir():
            return {}
        found = {}
        for folder in sorted(self._directory.iterdir()):
            if folder.is_dir() and _SECRET_NAME.fullmatch(folder.name):
                disabled = sum(1 for path in folder.iterdir() if path.name.endswith(".disabled"))
                found[folder.name] = (self._versions(folder.name), disabled)
        return found

    def _versions(self, name: str) -> list[int]:
        folder = self._folder(name)
        if not folder.is_dir():
            return []
        return sorted(int(path.name) for path in folder.iterdir() if path.name.isdigit())

    def read(self, name: str) -> str:
        versions = self._versions(name)
        if not versions:
            raise SecretNotFound(
                f"secret {name} has no enabled version", how_to_store=local_store_hint(name)
            )
        value = (self._folder(name) / str(versions[-1])).read_text(encoding="utf-8")
        register_secret(value)
        return value

    def add_version(self, name: str, value: str) -> str:
        register_secret(value)
        folder = self._folder(name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._directory.chmod(0o700)
        # Written aside (mkstemp: 0600) and linked in whole: a reader never sees a half-written
        # version. os.link refuses an existing name, so racing writers never overwrite each
        # other; the loser takes the next number.
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".new-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(value)
            while True:
                existing = [
                    int(path.name.split(".")[0])
                    for path in folder.iterdir()
                    if path.name.split(".")[0].isdigit()
                ]
                version = str(max(existing, default=0) + 1)
                try:
                    os.link(temporary, folder / version)
                except FileExistsError:
                    continue
                return version
        finally:
            os.unlink(temporary)

    def versions(self, name: str) -> list[SecretVersion]:
        found = []
        for number in reversed(self._versions(name)):
            path = self._folder(name) / str(number)
            try:
                value = path.read_text(encoding="utf-8")
                # The file's mtime is when the version was added: versions are never rewritten.
                created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except FileNotFoundError:
                continue  # disabled meanwhile
            register_secret(value)
            found.append(SecretVersion(number, value, created))
        return found

    def disable_versions(self, name: str, *, keep: str | None = None) -> int:
        disabled = 0
        for version in self._versions(name):
            if str(version) != keep:
                path = self._folder(name) / str(version)
                path.rename(path.with_name(f"{version}.disabled"))
                disabled += 1
        return disabled

    def destroy_disabled(self, name: str, *, keep: int, limit: int) -> int:
        folder = self._folder(name)
        if not folder.is_dir():
            return 0
        disabled = sorted(
            int(path.name.split(".")[0])
            for path in folder.iterdir()
            if path.name.endswith(".disabled") and path.name.split(".")[0].isdigit()
        )
        doomed = disabled[: max(len(disabled) - keep, 0)][:limit]
        for number in doomed:
            (folder / f"{number}.disabled").unlink(missing_ok=True)
        return len(doomed)


class SecretManagerStore:
    """Google Secret Manager through the official client."""

    def __init__(self, client: secretmanager.SecretManagerServiceClient, project: str) -> None:
        self._client = client
        self._project = project

    def _secret_path(self, name: str) -> str:
        return f"projects/{self._project}/secrets/{check_secret_name(name)}"

    def read(self, name: str) -> str:
        from google.api_core.exceptions import FailedPrecondition, NotFound

        try:
            response = self._client.access_secret_version(
                name=f"{self._secret_path(name)}/versions/latest", timeout=DEFAULT_GOOGLE_TIMEOUT
            )
        except NotFound:
            raise SecretNotFound(
                f"secret {name} has no enabled version", how_to_store=secret_manager_hint(name)
            ) from None
        except FailedPrecondition:
            # `latest` is the newest version whatever its state; when that one is disabled
            # (racing rotations: one kept an older version) an older one may still be enabled.
            response = self._access_newest_enabled(name)
        value = response.payload.data.decode("utf-8")
        register_secret(value)
        return value

    def _access_newest_enabled(self, name: str) -> secretmanager.AccessSecretVersionResponse:
        from google.api_core.exceptions import FailedPrecondition, NotFound

        enabled = self._enabled_versions(name)
        if not enabled:
            raise SecretNotFound(
                f"secret {name} has no enabled version", how_to_store=secret_manager_hint(name)
            )
        newest = max(enabled, key=lambda version: int(version.name.rsplit("/", 1)[-1]))
        try:
            return self._client.access_secret_version(
                name=newest.name, timeout=DEFAULT_GOOGLE_TIMEOUT
            )
        except (NotFound, FailedPrecondition):
            # Disabled or destroyed since it was listed.
            raise SecretNotFound(
                f"secret {name} has no enabled version", how_to_store=secret_manager_hint(name)
            ) from None

    def _enabled_versions(self, name: str) -> list[secretmanager.SecretVersion]:
        from google.api_core.exceptions import NotFound

        try:
            return list(
                self._client.list_secret_versions(
                    request={"parent": self._secret_path(name), "filter": "state:ENABLED"},
                    timeout=DEFAULT_GOOGLE_TIMEOUT,
                )
            )
        except NotFound:
            return []

    def add_version(self, name: str, value: str) -> str:
        from google.api_core.exceptions import NotFound
        from google.cloud import secretmanager  # loaded already: the client is one of its own

        register_secret(value)
        payload = secretmanager.SecretPayload(data=value.encode("utf-8"))
        try:
            version = self._client.add_secret_version(
                parent=self._secret_path(name), payload=payload, timeout=DEFAULT_GOOGLE_TIMEOUT
            )
        except NotFound:
            self._create_secret(name)
            version = self._client.add_secret_version(
                parent=self._secret_path(name), payload=payload, timeout=DEFAULT_GOOGLE_TIMEOUT
            )
        return version.name.rsplit("/", 1)[-1]

    def _create_secret(self, name: str) -> None:
        from google.api_core.exceptions import AlreadyExists, PermissionDenied
        from google.cloud import secretmanager  # loaded already: the client is one of its own

        from shared.errors import ConfigError

        try:
            self._client.create_secret(
                parent=f"projects/{self._project}",
                secret_id=check_secret_name(name),
                secret=secretmanager.Secret(
                    replication=secretmanager.Replication(
                        automatic=secretmanager.Replication.Automatic()
                    )
                ),
                timeout=DEFAULT_GOOGLE_TIMEOUT,
            )
        except AlreadyExists:
            pass  # created meanwhile by a concurrent writer, just as good
        except PermissionDenied:
            # Terraform grants no secret creation: a further Google account's secret (ADR 0004)
            # is made by the operator, so say which one is missing rather than a 500.
            raise ConfigError(
                f"secret {name} does not exist and the function may not create it: create it "
                'and grant the functions access (docs/deploy.md, "Several Google accounts")'
            ) from None

    def versions(self, name: str) -> list[SecretVersion]:
        from google.api_core.exceptions import FailedPrecondition, NotFound

        found: list[SecretVersion] = []
        for version in self._enabled_versions(name):
            try:
                response = self._client.access_secret_version(
                    name=version.name, timeout=DEFAULT_GOOGLE_TIMEOUT
                )
            except (NotFound, FailedPrecondition):
                continue  # disabled or destroyed since it was listed
            value = response.payload.data.decode("utf-8")
            register_secret(value)
            number = int(version.name.rsplit("/", 1)[-1])
            # proto-plus hands the Timestamp field over as a datetime.
            created = version.create_time
            assert isinstance(created, datetime)
            found.append(SecretVersion(number, value, created))
        return sorted(found, key=lambda version: version.number, reverse=True)

    def disable_versions(self, name: str, *, keep: str | None = None) -> int:
        disabled = 0
        for version in self._enabled_versions(name):
            if version.name.rsplit("/", 1)[-1] != keep:
                self._client.disable_secret_version(
                    name=version.name, timeout=DEFAULT_GOOGLE_TIMEOUT
                )
                disabled += 1
        return disabled

    def destroy_disabled(self, name: str, *, keep: int, limit: int) -> int:
        """Destroy the disabled versions but the newest `keep`, oldest first, at most `limit`
        (a backlog left by older releases goes over several calls). Only disabled versions are
        listed (`state:DISABLED`): destroyed ones stay listed by the service for good, and
        listing them too would grow with every call."""
        from google.api_core.exceptions import FailedPrecondition, NotFound, PermissionDenied

        try:
            disabled = list(
                self._client.list_secret_versions(
                    request={"parent": self._secret_path(name), "filter": "state:DISABLED"},
                    timeout=DEFAULT_GOOGLE_TIMEOUT,
                )
            )
        except NotFound:
            return 0
        disabled.sort(key=lambda version: int(version.name.rsplit("/", 1)[-1]))
        destroyed = 0
        for version in disabled[: max(len(disabled) - keep, 0)][:limit]:
            try:
                self._client.destroy_secret_version(
                    name=version.name, timeout=DEFAULT_GOOGLE_TIMEOUT
                )
            except (NotFound, FailedPrecondition):
                continue  # destroyed meanwhile: just as good
            except PermissionDenied:
                raise ConfigError(
                    f"the function may not destroy old versions of secret {name}: grant it "
                    "secretmanager.versions.destroy on that secret (infra/terraform/iam.tf)"
                ) from None
            destroyed += 1
        return destroyed


class CachedSecrets:
    """Secret values read through `secrets` and kept for `max_age` seconds: the one cache of
    every vendor's secrets (webhook signing keys, path tokens, credentials).

    `read(name, max_age=...)` asks for a fresher value (a signature that did not match with the
    cached key is checked again with one re-read at most every `min_reread` seconds, so a flood
    of forged requests cannot exhaust the secrets backend). One instance per `Runtime`.
    """

    def __init__(
        self,
        secrets: SecretStore,
        *,
        max_age: float = 60.0,
        min_reread: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secrets = secrets
        self.max_age = max_age
        self.min_reread = min_reread
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float]] = {}
        self._accepted: dict[str, tuple[list[SecretVersion], float]] = {}

    def read(self, name: str, *, max_age: float | None = None) -> str:
        """The value of `name`, read anew when the cached one is older than `max_age`."""
        limit = self.max_age if max_age is None else max_age
        now = self._clock()
        with self._lock:
            cached = self._values.get(name)
            if cached is not None and now - cached[1] < limit:
                return cached[0]
        value = self._secrets.read(name)  # SecretNotFound propagates, nothing cached
        with self._lock:
            self._values[name] = (value, now)
        return value

    def age(self, name: str) -> float:
        """Seconds since `name` was last read (infinite when it never was)."""
        with self._lock:
            cached = self._values.get(name)
        return float("inf") if cached is None else self._clock() - cached[1]

    def reread(self, name: str) -> str | None:
        """A fresh value of `name`, unless it was read less than `min_reread` seconds ago."""
        if self.age(name) < self.min_reread:
            return None
        return self.read(name, max_age=0)

    def forget(self, name: str) -> None:
        with self._lock:
            self._values.pop(name, None)
            self._accepted.pop(name, None)

    def accepted(
        self, name: str, *, grace: timedelta, now: datetime, fresh: bool = False
    ) -> list[str]:
        """The values of a rotated credential still accepted (`accepted_values`), the version
        list read anew when older than `max_age`, so an old value stops within that of its
        grace's end. `fresh` (a presented value matched none) reads it again unless it was
        read less than `min_reread` seconds ago: a new version works at once, and a flood of
        wrong values costs the backend one listing per `min_reread`."""
        clock = self._clock()
        with self._lock:
            cached = self._accepted.get(name)
        age = float("inf") if cached is None else clock - cached[1]
        if cached is None or age >= self.max_age or (fresh and age >= self.min_reread):
            cached = (self._secrets.versions(name), clock)
            with self._lock:
                self._accepted[name] = cached
        return accepted_values(cached[0], grace=grace, now=now)


KEY_BYTES = 32  # a 256-bit key


class KeyInSecret:
    """A 256-bit key kept base64-encoded in secret `name`, read through the shared cache (a
    rotated key is in use within the cache's `max_age`).

    `create_missing` is for the local backend: `make run` and the tests make the key on first
    use. In the cloud a missing key is a `ConfigError` naming the secret: the runtime accounts
    may only read it (infra/terraform/iam.tf), so the operator adds it (docs/deploy.md).
    """

    def __init__(
        self,
        *,
        secrets: CachedSecrets,
        store: SecretStore,
        name: str,
        create_missing: bool,
    ) -> None:
        self._secrets = secrets
        self._store = store
        self._name = name
        self._create_missing = create_missing

    def __call__(self) -> bytes:
        try:
            text = self._secrets.read(self._name)
        except SecretNotFound:
            if not self._create_missing:
                raise ConfigError(
                    f"no encryption key in secret {self._name}: add {KEY_BYTES} random bytes, "
                    "base64-encoded (docs/deploy.md)"
                ) from None
            self._store.add_version(
                self._name, base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")
            )
            # The newest version: of two processes creating it at once, both use the later.
            text = self._secrets.read(self._name, max_age=0)
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"secret {self._name} must hold {KEY_BYTES} random bytes, base64-encoded"
            )
        return key
