"""The names of a Google account's things (ADR 0004): keys fit Firestore and Secret Manager."""

from __future__ import annotations

import re

from shared.models import Device, Source
from shared.secrets import check_secret_name
from shared.sources.google.layout import AccountLayout, account_key

# Secret Manager: [A-Za-z0-9_-], at most 255 characters (projects.secrets.create, secretId).
SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def test_a_key_is_stable_case_blind_and_distinct_where_slugs_agree() -> None:
    assert account_key("Family.Member@Example.org") == account_key(" family.member@example.org ")
    assert account_key("a.b@example.com") != account_key("a-b@example.com")  # same slug
    assert account_key("a.b@example.com").startswith("a-b-example-com-")


def test_every_name_made_from_a_key_is_a_valid_secret_and_document_name() -> None:
    for username in ("x" * 300 + "@example.com", "émile@exemple.fr", "+@+", "a/b@example.com"):
        key = account_key(username)
        secret = AccountLayout(key).secret_name("google-secrets")
        assert SECRET_ID.fullmatch(secret) and check_secret_name(secret) == secret
        assert "/" not in key and len(key) <= 49


def test_devices_without_an_account_belong_to_the_first_account_only() -> None:
    old = Device(id="t", source=Source.GOOGLE, traccar_unique_id="t")
    mine = old.model_copy(update={"account": "Me@example.com"})
    first, further = AccountLayout.first(), AccountLayout(account_key("other@example.com"))

    assert first.owns(old, "me@example.com") and not further.owns(old, "other@example.com")
    assert first.owns(mine, "me@EXAMPLE.com") and not further.owns(mine, "other@example.com")
    assert first.secret_name("google-secrets") == "google-secrets"
