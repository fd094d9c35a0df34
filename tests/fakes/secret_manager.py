"""An in-memory Secret Manager served over real gRPC, for the official client in tests.

Google ships no Secret Manager emulator. This fake serves the RPCs `SecretManagerStore` uses
(CreateSecret, AddSecretVersion, AccessSecretVersion, ListSecretVersions,
DisableSecretVersion) and DestroySecretVersion (how an operator retires a leaked value) on a
local port, with the request and response types of the `google-cloud-secret-manager` package
itself, so the client's own serialisation, routing and error mapping run unchanged. Other RPCs
answer UNIMPLEMENTED.

It follows the service's documented behaviour where the adapter depends on it (the RPC
reference, https://cloud.google.com/secret-manager/docs/reference/rpc/google.cloud.secretmanager.v1,
and for each method its REST page under
https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions):

- resource names in answers carry the project *number* (`projects/123/secrets/s/versions/2`)
  when one is configured for the project id, as the real service does;
- version ids count from 1 per secret; `versions/latest` is the most recently created
  version whatever its state, so accessing it fails FAILED_PRECONDITION when that version is
  disabled, and NOT_FOUND when the secret is missing or has no version;
- CreateSecret on an existing id is ALREADY_EXISTS and requires a replication policy;
  AddSecretVersion on a missing secret is NOT_FOUND; payloads are limited to 64 KiB;
- ListSecretVersions (.../projects.secrets.versions/list) lists newest first, each version
  with its `create_time` and `state` and never its payload, pages with
  `page_size`/`page_token`, and filters on `state:<STATE>`
  (https://cloud.google.com/secret-manager/docs/filtering; other filters are refused rather
  than silently ignored);
- DestroySecretVersion (.../projects.secrets.versions/destroy) sets the state to DESTROYED,
  records `destroy_time` and discards the payload for good: accessing that version is then
  FAILED_PRECONDITION, as for a disabled one.

A version's `create_time` comes from `clock` (the wall clock unless a test gives its own), so
a test can date a rotation's versions as the grace period needs.

Serving, hooks and the call log come from `tests.fakes.GrpcFake`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.cloud import secretmanager_v1
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from tests.fakes import Abort, GrpcFake

MAX_PAYLOAD_BYTES = 65_536
MAX_PAGE_SIZE = 25_000

State = secretmanager_v1.SecretVersion.State

_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PROJECT = re.compile(r"^projects/([^/]+)$")
_SECRET = re.compile(r"^projects/([^/]+)/secrets/([^/]+)$")
_VERSION = re.compile(r"^projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)$")
_STATE_FILTER = re.compile(r"^\s*state\s*[:=]\s*([A-Z_]+)\s*$")


@dataclass
class _Version:
    number: int
    data: bytes
    create_time: datetime
    state: State = State.ENABLED
    destroy_time: datetime | None = None


@dataclass
class _Secret:
    replication: secretmanager_v1.Replication
    create_time: datetime
    versions: list[_Version] = field(default_factory=list)


class FakeSecretManager(GrpcFake):
    """Secrets kept in memory, served on `127.0.0.1:<free port>` while started."""

    service = "google.cloud.secretmanager.v1.SecretManagerService"

    def __init__(
        self,
        *,
        project_numbers: Mapping[str, str] | None = None,
        page_size: int = MAX_PAGE_SIZE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self._numbers = dict(project_numbers or {})
        self._page_size = page_size
        self._clock = clock
        self._secrets: dict[tuple[str, str], _Secret] = {}

    def rpcs(self) -> dict[str, tuple[Callable[[Any], Any], Any, Any]]:
        sm = secretmanager_v1
        return {
            "CreateSecret": (self._create_secret, sm.CreateSecretRequest, sm.Secret),
            "AddSecretVersion": (
                self._add_secret_version,
                sm.AddSecretVersionRequest,
                sm.SecretVersion,
            ),
            "AccessSecretVersion": (
                self._access_secret_version,
                sm.AccessSecretVersionRequest,
                sm.AccessSecretVersionResponse,
            ),
            "ListSecretVersions": (
                self._list_secret_versions,
                sm.ListSecretVersionsRequest,
                sm.ListSecretVersionsResponse,
            ),
            "DisableSecretVersion": (
                self._disable_secret_version,
                sm.DisableSecretVersionRequest,
                sm.SecretVersion,
            ),
            "DestroySecretVersion": (
                self._destroy_secret_version,
                sm.DestroySecretVersionRequest,
                sm.SecretVersion,
            ),
        }

    def client(self) -> secretmanager_v1.SecretManagerServiceClient:
        """The official client, over a plain channel to this fake (no credentials involved)."""
        return secretmanager_v1.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=self.channel())
        )

    # -- inspection ----------------------------------------------------------------------

    def version_states(self, project: str, secret_id: str) -> dict[str, str]:
        """`{"1": "DISABLED", "2": "ENABLED"}` for a secret; empty when it does not exist."""
        with self.lock:
            secret = self._secrets.get((self._number(project), secret_id))
            versions = secret.versions if secret else []
            return {str(version.number): version.state.name for version in versions}

    def backdate(self, project: str, secret_id: str, by: timedelta) -> None:
        """Every version of a secret created `by` earlier: time passing, for a grace period."""
        with self.lock:
            for version in self._secret(self._number(project), secret_id).versions:
                version.create_time -= by

    # -- plumbing ------------------------------------------------------------------------

    def _number(self, project: str) -> str:
        return self._numbers.get(project, project)

    def _parse(self, pattern: re.Pattern[str], name: str) -> tuple[str, ...]:
        match = pattern.match(name)
        if match is None:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed resource name: {name!r}")
        project, *rest = match.groups()
        return (self._number(project), *rest)

    def _secret(self, project: str, secret_id: str) -> _Secret:
        secret = self._secrets.get((project, secret_id))
        if secret is None:
            raise Abort(
                grpc.StatusCode.NOT_FOUND,
                f"Secret [projects/{project}/secrets/{secret_id}] not found.",
            )
        return secret

    def _version(self, project: str, secret_id: str, version_id: str) -> _Version:
        secret = self._secrets.get((project, secret_id))
        if secret is None or (version_id == "latest" and not secret.versions):
            raise Abort(
                grpc.StatusCode.NOT_FOUND,
                f"Secret [projects/{project}/secrets/{secret_id}] not found or has no versions.",
            )
        if version_id == "latest":
            return secret.versions[-1]
        if version_id.isdigit() and 1 <= int(version_id) <= len(secret.versions):
            return secret.versions[int(version_id) - 1]
        raise Abort(
            grpc.StatusCode.NOT_FOUND,
            f"Secret Version [projects/{project}/secrets/{secret_id}/versions/{version_id}] "
            "not found.",
        )

    @staticmethod
    def _version_message(
        project: str, secret_id: str, version: _Version
    ) -> secretmanager_v1.SecretVersion:
        return secretmanager_v1.SecretVersion(
            name=f"projects/{project}/secrets/{secret_id}/versions/{version.number}",
            create_time=version.create_time,
            destroy_time=version.destroy_time,
            state=version.state,
            etag=f'"{version.number}-{version.state.name}"',
        )

    # -- RPCs ----------------------------------------------------------------------------

    def _create_secret(
        self, request: secretmanager_v1.CreateSecretRequest
    ) -> secretmanager_v1.Secret:
        (project,) = self._parse(_PROJECT, request.parent)
        if not _SECRET_ID.match(request.secret_id):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid secret_id")
        if "replication" not in request.secret:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret.replication is required.")
        name = f"projects/{project}/secrets/{request.secret_id}"
        if (project, request.secret_id) in self._secrets:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
        secret = _Secret(replication=request.secret.replication, create_time=self._clock())
        self._secrets[(project, request.secret_id)] = secret
        return secretmanager_v1.Secret(
            name=name, replication=secret.replication, create_time=secret.create_time
        )

    def _add_secret_version(
        self, request: secretmanager_v1.AddSecretVersionRequest
    ) -> secretmanager_v1.SecretVersion:
        project, secret_id = self._parse(_SECRET, request.parent)
        secret = self._secret(project, secret_id)
        if len(request.payload.data) > MAX_PAYLOAD_BYTES:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret payload exceeds 64 KiB.")
        version = _Version(
            number=len(secret.versions) + 1,
            data=request.payload.data,
            create_time=self._clock(),
        )
        secret.versions.append(version)
        return self._version_message(project, secret_id, version)

    def _access_secret_version(
        self, request: secretmanager_v1.AccessSecretVersionRequest
    ) -> secretmanager_v1.AccessSecretVersionResponse:
        project, secret_id, version_id = self._parse(_VERSION, request.name)
        version = self._version(project, secret_id, version_id)
        name = f"projects/{project}/secrets/{secret_id}/versions/{version.number}"
        if version.state != State.ENABLED:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Secret Version [{name}] is in {version.state.name} state.",
            )
        return secretmanager_v1.AccessSecretVersionResponse(
            name=name, payload=secretmanager_v1.SecretPayload(data=version.data)
        )

    def _list_secret_versions(
        self, request: secretmanager_v1.ListSecretVersionsRequest
    ) -> secretmanager_v1.ListSecretVersionsResponse:
        project, secret_id = self._parse(_SECRET, request.parent)
        versions = list(reversed(self._secret(project, secret_id).versions))
        if request.filter:
            match = _STATE_FILTER.match(request.filter)
            if match is None or match.group(1) not in State.__members__:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"filter not supported by this fake: {request.filter!r}",
                )
            versions = [v for v in versions if v.state.name == match.group(1)]
        start = int(request.page_token or 0)
        size = min(request.page_size or self._page_size, MAX_PAGE_SIZE)
        page = versions[start : start + size]
        more = start + size < len(versions)
        return secretmanager_v1.ListSecretVersionsResponse(
            versions=[self._version_message(project, secret_id, v) for v in page],
            next_page_token=str(start + size) if more else "",
            total_size=len(versions),
        )

    def _disable_secret_version(
        self, request: secretmanager_v1.DisableSecretVersionRequest
    ) -> secretmanager_v1.SecretVersion:
        project, secret_id, version_id = self._parse(_VERSION, request.name)
        version = self._version(project, secret_id, version_id)
        if version.state == State.DESTROYED:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Secret Version [{request.name}] is in DESTROYED state.",
            )
        version.state = State.DISABLED
        return self._version_message(project, secret_id, version)

    def _destroy_secret_version(
        self, request: secretmanager_v1.DestroySecretVersionRequest
    ) -> secretmanager_v1.SecretVersion:
        project, secret_id, version_id = self._parse(_VERSION, request.name)
        version = self._version(project, secret_id, version_id)
        if version.state != State.DESTROYED:
            version.state = State.DESTROYED
            version.destroy_time = self._clock()
            version.data = b""
        return self._version_message(project, secret_id, version)
