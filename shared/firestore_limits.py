"""What Firestore refuses in a document, checked where data enters (issue 12).

A document Firestore refuses fails the whole commit it is in: a sync run's final commit after
its push (the device's lease left held, the pushed positions unrecorded and pushed again), a
webhook's claim. So every name and value is checked at the edge instead:

- `check_document(data, where)`: for what a caller sends (API bodies, query strings): raises
  `BadRequest` naming the first field Firestore would refuse (a 400, not a 500 after the fact).
- `field_name(name)` and `escaped(value)`: for what a vendor sends, which the bridge must take
  whatever it is: a name Firestore would refuse is renamed (deterministically, so a reading
  keeps its name from one delivery to the next), a string that is not valid UTF-8 has its
  broken code points spelt out, a value nested too deep is kept as its JSON text.

The limits, from https://firebase.google.com/docs/firestore/quotas ("Limits for field
names", "Limits for documents", "Limits for strings"):
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from shared.errors import BadRequest

# "Field names matching the regular expression __.*__ are reserved" (quotas page).
RESERVED_FIELD_NAME = re.compile(r"__.*__", re.DOTALL)
# "Maximum size of a field name: 1,500 bytes" (quotas page).
MAX_FIELD_NAME_BYTES = 1_500
# "Maximum depth of fields in a map or array: 20" (quotas page; the document's top level
# counts as the first; the emulator is laxer than production, so this is checked here).
MAX_DEPTH = 20
# Integers are stored as 64-bit signed (Firestore's data types): a larger one in a document or
# a query filter is refused.
MAX_INTEGER = 2**63 - 1
# "Maximum size for a document: 1 MiB (1,048,576 bytes)" (quotas page).
MAX_DOCUMENT_BYTES = 1_048_576
# "Strings must be UTF-8" (quotas page, data types): a Python string holding a lone surrogate
# (JSON allows `"\ud800"`) cannot be encoded at all; the client fails before sending.
STRING_ENCODING = "utf-8"

# "Must be no longer than 1,500 bytes; cannot contain a forward slash (/); cannot solely consist
# of a single period (.) or double periods (..); cannot match the regular expression __.*__"
# (quotas page, "Limits for document IDs"). A valid document id is thus a valid field name too:
# a map keyed by device ids (Google's `state/fcm_lease.located`) needs no escaping.
MAX_DOCUMENT_ID_BYTES = 1_500
RESERVED_DOCUMENT_IDS = frozenset({".", ".."})

# "Maximum size of an indexed field value: 1500 bytes" (quotas page), a string's size being its
# UTF-8 bytes + 1 (storage size page): an equality filter on a longer string is refused
# ("value ... is too large to be used in a query", the emulator's words), while a document id of
# 1 500 bytes is valid. No stored value that long is indexed whole, so none can match it.
MAX_INDEXED_VALUE_BYTES = 1_500


def queryable(value: str) -> bool:
    """Whether an equality filter on the string `value` is a query Firestore takes."""
    return len(value.encode(STRING_ENCODING, "surrogatepass")) + 1 <= MAX_INDEXED_VALUE_BYTES


# What a renamed field name starts with: never a reserved name, rarely a vendor's own.
ESCAPE_PREFIX = "~"
# A name cut to fit MAX_FIELD_NAME_BYTES keeps this many bytes of itself, then a digest of the
# whole (two long names sharing a prefix stay two names). Leaves room for the path it sits in.
KEPT_NAME_BYTES = 200
DIGEST_CHARS = 16
# A position attribute's name: a field of the stored location (`last_location.attributes.<n>`)
# and an OsmAnd parameter; `shared.models.AttributeName` allows at most this many characters.
MAX_ATTRIBUTE_NAME_BYTES = 256


def valid_text(text: str) -> bool:
    """Whether `text` is valid UTF-8 once encoded (no lone surrogate)."""
    try:
        text.encode(STRING_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def name_problem(name: str) -> str | None:
    """Why Firestore would refuse `name` as a field name, or None."""
    if not name:
        return "an empty field name"
    if not valid_text(name):
        return "a field name that is not valid UTF-8"
    if RESERVED_FIELD_NAME.fullmatch(name):
        return "a field name of the form __name__, which Firestore reserves"
    if len(name.encode(STRING_ENCODING)) > MAX_FIELD_NAME_BYTES:
        return f"a field name longer than {MAX_FIELD_NAME_BYTES} bytes"
    return None


def id_problem(value: str) -> str | None:
    """Why Firestore would refuse `value` as a document id, or None."""
    if not value:
        return "an empty id"
    if not valid_text(value):
        return "an id that is not valid UTF-8"
    if "/" in value:
        return "an id holding a slash"
    if value in RESERVED_DOCUMENT_IDS or RESERVED_FIELD_NAME.fullmatch(value):
        return "an id Firestore reserves (., .. or of the form __name__)"
    if len(value.encode(STRING_ENCODING)) > MAX_DOCUMENT_ID_BYTES:
        return f"an id longer than {MAX_DOCUMENT_ID_BYTES} bytes"
    return None


def _path(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _shown(name: str) -> str:
    return repr(name.encode(STRING_ENCODING, "backslashreplace").decode()[:40])


def check_document(data: Any, where: str = "") -> None:
    """Raise `BadRequest` naming the first name or value of `data` (decoded JSON) Firestore
    would refuse; `where` prefixes the field names (e.g. "body", "query")."""
    _check(data, where, 1)
    # The size is estimated by the JSON text: the stored form is about as large, and a body
    # this size is past the API's own limit long before (shared.web.MAX_BODY_BYTES).
    size = len(json.dumps(data, ensure_ascii=False, default=str).encode(STRING_ENCODING, "replace"))
    if size > MAX_DOCUMENT_BYTES:
        raise BadRequest(f"{where or 'body'}: larger than {MAX_DOCUMENT_BYTES} bytes")


def _check(data: Any, where: str, depth: int) -> None:
    if isinstance(data, str):
        if not valid_text(data):
            raise BadRequest(f"{where or 'body'}: not valid UTF-8 (a lone surrogate)")
        return
    if not isinstance(data, dict | list):
        return
    if depth > MAX_DEPTH:
        raise BadRequest(f"{where or 'body'}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(data, list):
        for index, item in enumerate(data):
            _check(item, _path(where, index), depth + 1)
        return
    for key, value in data.items():
        problem = name_problem(str(key))
        if problem is not None:
            raise BadRequest(f"{where or 'body'}: {_shown(str(key))} is {problem}")
        _check(value, _path(where, key), depth + 1)


def text(value: str) -> str:
    """`value` as valid UTF-8: a lone surrogate is spelt out (`\\ud800`), the rest kept."""
    if valid_text(value):
        return value
    return value.encode(STRING_ENCODING, "backslashreplace").decode(STRING_ENCODING)


def field_name(name: str, *, max_bytes: int = MAX_FIELD_NAME_BYTES) -> str:
    """`name` if Firestore takes it as a field name (of at most `max_bytes`), else a name it
    takes, the same for the same `name` every time: `~` before a reserved one (`~__main__`),
    the broken code points spelt out, a long one cut with a digest of the whole, `~` for the
    empty one."""
    if name_problem(name) is None and len(name.encode(STRING_ENCODING)) <= max_bytes:
        return name
    fixed = text(name)
    if not fixed:
        return ESCAPE_PREFIX
    if RESERVED_FIELD_NAME.fullmatch(fixed):
        fixed = ESCAPE_PREFIX + fixed
    encoded = fixed.encode(STRING_ENCODING)
    if len(encoded) > max_bytes:
        digest = hashlib.sha256(encoded).hexdigest()[:DIGEST_CHARS]
        room = min(KEPT_NAME_BYTES, max_bytes - DIGEST_CHARS - len(ESCAPE_PREFIX))
        kept = encoded[:room].decode(STRING_ENCODING, "ignore")
        fixed = f"{kept}{ESCAPE_PREFIX}{digest}"
    return fixed


def attribute_name(name: str) -> str:
    """A vendor's reading name as a position attribute's (`shared.models.AttributeName`)."""
    return field_name(name.strip(), max_bytes=MAX_ATTRIBUTE_NAME_BYTES) if name.strip() else "~"


def escaped(value: Any, *, depth: int = 1) -> Any:
    """`value` (decoded JSON, a vendor's) with every name and string Firestore takes: names
    through `field_name`, strings through `text`, a map or array below `MAX_DEPTH` (counted
    from `depth`, the level `value` will sit at) kept as its JSON text."""
    if isinstance(value, str):
        return text(value)
    if not isinstance(value, dict | list):
        return value
    if depth >= MAX_DEPTH:
        return text(json.dumps(value, ensure_ascii=False, default=str))
    if isinstance(value, list):
        # "An array cannot contain another array value directly" (Firestore's data types).
        return [
            text(json.dumps(item, ensure_ascii=False, default=str))
            if isinstance(item, list)
            else escaped(item, depth=depth + 1)
            for item in value
        ]
    return {field_name(str(key)): escaped(item, depth=depth + 1) for key, item in value.items()}
