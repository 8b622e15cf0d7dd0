"""Which fields hold personal data, whose they are, and sealing/opening them in whole records.

The personal fields are the ones the newest schemas mark ``"pii": "personal"`` (read from the
committed catalog, not listed by hand); ``LABELS`` only says, for each of them, whose data it is
(the data subject's kind) and what it is (the label bound into the ciphertext, ``privacy.sealed``).
A marked field without a label is an error at first use, never a field left in plain text, and
``tests/unit/privacy/test_fields.py`` checks every marked field of the newest schemas has one.

* ``seal_record(record_type, record, subjects, keys)``: a copy with every personal field that holds
  plain text sealed under its subject's current key (``subjects``: ``{"customer": "CUST-A", "driver":
  "DRV-7"}``); sealed values and nulls are left as they are. A subject already erased gets a
  throwaway key (version 0, never stored): the value is shredded as it is written, and the command
  still goes through.
* ``reveal_record(record_type, record, keys)``: a copy with sealed values opened, ``None`` where the
  subject's key was erased. ``reveal_view(view, keys)``: the same for the public camelCase view
  (``projections.order_view.public_view``). Both refuse (``SealError``) a sealed value whose key id is
  not the record's own subject (a ciphertext copied into someone else's record).

Record walking handles nested records and nullable records (``OrderState.driver``); paths are
dotted field names (``delivery_address.text``, ``signature.receiver_name``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from privacy.keystore import KeyErased, KeyStore, subject_id
from privacy.sealed import SealError, is_sealed, seal, unseal
from schemas.catalog import CommittedCatalog

# (record type, dotted path) -> (subject kind, label). The labels are bound into every ciphertext: fixed.
LABELS: dict[tuple[str, str], tuple[str, str]] = {
    ("OrderCreated", "customer_name"): ("customer", "customer.name"),
    ("OrderCreated", "customer_phone"): ("customer", "customer.phone"),
    ("OrderCreated", "delivery_address.text"): ("customer", "customer.address"),
    ("OrderDispatched", "driver_name"): ("driver", "driver.name"),
    ("OrderDispatched", "driver_phone"): ("driver", "driver.phone"),
    ("OrderDelivered", "receiver_name"): ("customer", "receiver.name"),
    ("OrderState", "driver.name"): ("driver", "driver.name"),
    ("OrderState", "driver.phone"): ("driver", "driver.phone"),
    ("OrderState", "signature.receiver_name"): ("customer", "receiver.name"),
}

# The public view (projections.order_view.public_view) is not an Avro record: its personal fields,
# each the camelCase copy of an OrderState one (a test checks public_view moves exactly these).
PUBLIC_VIEW = "PublicOrderView"
PUBLIC_VIEW_LABELS: dict[tuple[str, str], tuple[str, str]] = {
    (PUBLIC_VIEW, "driverInfo.name"): ("driver", "driver.name"),
    (PUBLIC_VIEW, "driverInfo.phone"): ("driver", "driver.phone"),
    (PUBLIC_VIEW, "signature.receiverName"): ("customer", "receiver.name"),
}

# Where a record names its own subject, per kind: tried on the personal field's parent record, then
# on the top level (OrderState.driver.driver_id, OrderState.customer_id, public view driverInfo.driverId).
_SUBJECT_ID_FIELDS = {"customer": ("customer_id", "customerId"), "driver": ("driver_id", "driverId")}


@dataclass(frozen=True, slots=True)
class PersonalField:
    path: tuple[str, ...]
    kind: str  # the data subject's kind: customer | driver
    label: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def marked_paths(schema: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the fields marked ``"pii": "personal"`` in a record schema (nested and nullable records)."""
    out: list[tuple[str, ...]] = []
    for field in schema["fields"]:
        path = (*prefix, field["name"])
        if field.get("pii") == "personal":
            out.append(path)
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for branch in branches:
            if isinstance(branch, dict) and branch.get("type") == "record":
                out += marked_paths(branch, path)
    return out


@cache
def personal_fields(record_type: str) -> tuple[PersonalField, ...]:
    """The personal fields of a record type (its newest schema), or of the public order view."""
    if record_type == PUBLIC_VIEW:
        return tuple(PersonalField(tuple(p.split(".")), kind, label)
                     for (_, p), (kind, label) in PUBLIC_VIEW_LABELS.items())
    entry = CommittedCatalog.load().latest(record_type)
    fields = []
    for path in marked_paths(entry.raw):
        dotted = ".".join(path)
        if (record_type, dotted) not in LABELS:
            raise SealError(f"{record_type}.{dotted} is marked personal in schema id {entry.id} but "
                            "privacy.fields.LABELS does not say whose data it is: add it")
        kind, label = LABELS[(record_type, dotted)]
        fields.append(PersonalField(path, kind, label))
    return tuple(fields)


# --- sealing (the write path) -------------------------------------------------------------------

def seal_record(record_type: str, record: dict[str, Any], subjects: Mapping[str, str],
                keys: KeyStore) -> dict[str, Any]:
    """A copy of ``record`` with every personal field holding plain text sealed under its subject's key.
    Only the containers on the way to a sealed field are copied; the input is not modified."""
    out = record
    for f in personal_fields(record_type):
        value = _get(record, f.path)
        if value is None or is_sealed(value):
            continue
        if type(value) is not str:
            raise SealError(f"{record_type}.{f.dotted}: expected a string or a sealed value, got "
                            f"{type(value).__name__}")
        ident = subjects.get(f.kind)
        if not ident:
            raise SealError(f"{record_type}.{f.dotted} is a {f.kind}'s data, but no {f.kind} id was given to seal "
                            f"it under (subjects: {sorted(subjects)})")
        out = _set(out, f.path, _seal_for(subject_id(f.kind, ident), value, f.label, keys))
    return out if out is not record else dict(record)


def _seal_for(subject: str, plaintext: str, label: str, keys: KeyStore) -> dict[str, Any]:
    try:
        version, key = keys.current(subject)
    except KeyErased:  # erased: seal under a key nobody keeps, so the value is gone as it is written
        return seal(plaintext, key=os.urandom(32), key_id=subject, key_version=0, label=label)
    return seal(plaintext, key=key, key_id=subject, key_version=version, label=label)


# --- opening (the edge) -----------------------------------------------------------------------------

def reveal_record(record_type: str, record: Mapping[str, Any], keys: KeyStore) -> dict[str, Any]:
    """A copy of ``record`` with its sealed personal values opened (``None`` where the key was erased).
    Plain-text values (older records) stay as they are."""
    out: dict[str, Any] = dict(record)
    for f in personal_fields(record_type):
        value = _get(record, f.path)
        if not is_sealed(value):
            continue
        _check_subject(record, f, value, record_type)
        out = _set(out, f.path, _open(value, f.label, keys))
    return out


def reveal_view(view: Mapping[str, Any], keys: KeyStore) -> dict[str, Any]:
    """``reveal_record`` for the public camelCase order view (``projections.order_view.public_view``)."""
    return reveal_record(PUBLIC_VIEW, view, keys)


def _open(value: Mapping[str, Any], label: str, keys: KeyStore) -> str | None:
    try:
        key = keys.key(value["key_id"], value["key_version"])
    except KeyErased:
        return None
    return unseal(value, key=key, label=label)


def _check_subject(record: Mapping[str, Any], f: PersonalField, value: Mapping[str, Any], record_type: str) -> None:
    """A sealed value must be sealed under the record's own subject, where the record names one."""
    parent = _get(record, f.path[:-1]) if len(f.path) > 1 else record
    names = _SUBJECT_ID_FIELDS[f.kind]
    ident = next((c[n] for c in (parent, record) if isinstance(c, Mapping) for n in names if c.get(n)), None)
    if ident is not None and value["key_id"] != f"{f.kind}:{ident}":
        raise SealError(f"{record_type}.{f.dotted} is sealed under {value['key_id']}, but the record belongs to "
                        f"{f.kind}:{ident}: a ciphertext copied from another subject's record")


# --- paths --------------------------------------------------------------------------------------------

def _get(record: Any, path: tuple[str, ...]) -> Any:
    node = record
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
    return node


def _set(record: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``record`` with ``path`` set, copying only the dicts along the path."""
    out = dict(record)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _set(record[path[0]], path[1:], value)
    return out
