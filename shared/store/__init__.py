"""The one home of Firestore: typed repositories over the instance's client.

Only the modules of this package (and `shared.runtime`, which creates the client) import
`google.cloud.firestore`; every call passes the bounded options of `options`:

- `options`: the retry and timeout of every read and write;
- `repository`: generic repositories of pydantic models, document ids, versioned reads;
- `claims`: conditional commits and the webhook claim protocol;
- `delivery`: a device's lease, fingerprints, outbox and push log;
- `sealed`: `state` documents sealed under the state key (the cached vendor access tokens);
- `google`, `smartcar`, `tlink`: each vendor's own documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.models import ExcludedDevice, LocalJob, Service
from shared.store.claims import (
    ClaimStatus,
    StaleRead,
    Writes,
    claim_done,
    commit_if_unchanged,
    release_claim,
    unchanged_since,
    write_if_unchanged,
)
from shared.store.delivery import DeliveryRepository, Lease, StateChanged
from shared.store.options import FIRESTORE_DEADLINE, reads, writes
from shared.store.repository import (
    DEFAULT_PAGE_SIZE,
    MAX_ID_BYTES,
    MAX_PAGE_SIZE,
    DeviceRepository,
    HealthRecord,
    Page,
    Repository,
    StateRepository,
    Versioned,
    document_id,
    read_all,
)
from shared.store.traccar import TraccarApiMark

if TYPE_CHECKING:
    from google.cloud import firestore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FIRESTORE_DEADLINE",
    "MAX_ID_BYTES",
    "MAX_PAGE_SIZE",
    "ClaimStatus",
    "DeliveryRepository",
    "DeviceRepository",
    "HealthRecord",
    "Lease",
    "Page",
    "Repository",
    "StaleRead",
    "StateChanged",
    "StateRepository",
    "Store",
    "Versioned",
    "Writes",
    "claim_done",
    "commit_if_unchanged",
    "document_id",
    "read_all",
    "reads",
    "release_claim",
    "unchanged_since",
    "write_if_unchanged",
    "writes",
]


class Store:
    """The collections of SPEC.md that exist so far, over one Firestore client."""

    def __init__(self, client: firestore.Client) -> None:
        self.client = client
        self.devices = DeviceRepository(client)
        self.services = Repository(client, "services", Service)
        self.excluded_devices = Repository(client, "excluded_devices", ExcludedDevice)
        self.local_jobs = Repository(client, "local_jobs", LocalJob)
        self.state = StateRepository(client)
        self.delivery = DeliveryRepository(client)
        self.traccar_api = TraccarApiMark(client)
