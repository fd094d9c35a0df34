"""What Firestore refuses, caught before a commit (shared/firestore_limits.py, issue 12).

The limits are Firestore's (https://firebase.google.com/docs/firestore/quotas); the emulator
enforces some of them (reserved names, name length), production all of them.
"""

from __future__ import annotations

import pytest

from shared.errors import BadRequest
from shared.firestore_limits import (
    MAX_DEPTH,
    MAX_FIELD_NAME_BYTES,
    check_document,
    escaped,
    field_name,
    name_problem,
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("__main__", "reserves"),
        ("__", None),  # two underscores only: not of the form __.*__ with a name between
        ("", "empty"),
        ("\ud800", "UTF-8"),
        ("é" * (MAX_FIELD_NAME_BYTES // 2 + 1), "longer than"),  # counted in bytes
        ("speed", None),
    ],
)
def test_the_names_firestore_refuses_are_named(name: str, problem: str | None) -> None:
    found = name_problem(name)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_body_names_the_field_firestore_would_refuse() -> None:
    with pytest.raises(BadRequest, match=r"body\.attributes: '__main__' is .*reserves"):
        check_document({"attributes": {"__main__": 1}}, "body")
    with pytest.raises(BadRequest, match="deeper than"):
        nested: object = 1
        for _ in range(MAX_DEPTH + 1):
            nested = {"a": nested}
        check_document(nested, "body")
    check_document({"attributes": {"speed": 1, "note": "é"}}, "body")  # fine: no error


def test_a_vendor_name_is_renamed_the_same_way_every_time_and_never_refused() -> None:
    long_one = "sensor-" + "x" * 2_000
    for name in ("__main__", "", "\ud800", long_one, "a" * 1_600):
        renamed = field_name(name)
        assert name_problem(renamed) is None
        assert renamed == field_name(name)  # a reading keeps its name from one delivery to the next
    assert field_name("__main__") == "~__main__"
    assert field_name("speed") == "speed"
    assert field_name(long_one) != field_name(long_one + "y")  # two long names stay two


def test_a_vendor_payload_is_kept_whole_in_a_form_firestore_takes() -> None:
    payload = {"__main__": {"text": "\ud800 ok"}, "deep": 1}
    nested: object = "bottom"
    for _ in range(MAX_DEPTH + 2):
        nested = {"n": nested}
    payload["deep"] = nested

    stored = escaped(payload)

    check_document(stored)  # no BadRequest: every name and value is storable
    assert stored["~__main__"]["text"].endswith(" ok")
