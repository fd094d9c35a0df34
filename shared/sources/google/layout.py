"""Where a Google account's things live (ADR 0004): its secret, its documents, its devices.

The first account of a deployment keeps the layout the bridge had before there were several
(`AccountLayout.first()`): the secret `GOOGLE_SECRET_NAME`, `state/auth`'s own fields,
`state/google_token`, `state/fcm_lease`, `state/google_credentials`, `state/google_refresh`.
A deployment that had one account therefore moves no data at all when it upgrades.

A further account is named by its key (`account_key`), made from its username: a slug that
Firestore document ids, Firestore field names (quoted) and Secret Manager names
(`[A-Za-z0-9_-]`, at most 255 characters) all take, and a short digest of the whole username so
that two usernames whose slugs agree still differ. Its secret is `<GOOGLE_SECRET_NAME>-<key>`,
its documents the first account's names with `-<key>` appended, its auth state and alerts the
entry `google_accounts.<key>` of `state/auth` (so `/health` still reads one document).

A device records the username of the account that lists it (`Device.account`); a device stored
before there were several accounts has none and belongs to the first account.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from shared.models import Device, Source

SLUG_LENGTH = 40  # enough to recognise the account in a secret's or document's name
DIGEST_LENGTH = 8  # hex digits of SHA-256: 4 billion keys per slug


def normalized(username: str) -> str:
    """Google account names compare without regard to case or surrounding blanks."""
    return username.strip().casefold()


def account_key(username: str) -> str:
    """The account's key: `[a-z0-9-]`, at most 49 characters, the same for one username."""
    name = normalized(username)
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:SLUG_LENGTH].strip("-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:DIGEST_LENGTH]
    return f"{slug}-{digest}" if slug else digest


@dataclass(frozen=True)
class AccountLayout:
    """One account's names: `key` None is the first account's layout (the original one)."""

    key: str | None = None

    @classmethod
    def first(cls) -> AccountLayout:
        return cls(None)

    @property
    def is_first(self) -> bool:
        return self.key is None

    def secret_name(self, base: str) -> str:
        """The account's credentials secret, from `GOOGLE_SECRET_NAME`."""
        return base if self.key is None else f"{base}-{self.key}"

    def owns(self, device: Device, username: str | None) -> bool:
        """Whether `device` is this account's (the account's username `username`, when known)."""
        if device.source != Source.GOOGLE:
            return False
        if device.account is None:
            return self.is_first
        return username is not None and normalized(device.account) == normalized(username)


__all__ = ["AccountLayout", "account_key", "normalized"]
