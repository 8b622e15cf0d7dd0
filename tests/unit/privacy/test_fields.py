"""Which fields are personal (from the schemas' marks), sealing whole records and opening them again."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from privacy.fields import (
    LABELS,
    PUBLIC_VIEW,
    PUBLIC_VIEW_LABELS,
    marked_paths,
    personal_fields,
    reveal_record,
    reveal_view,
    seal_record,
)
from privacy.keystore import DEV_MASTER_KEY, SqliteKeyStore
from privacy.sealed import SealError, is_sealed
from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.catalog import CommittedCatalog
from simulator.events import T0, order_created, order_delivered, order_dispatched, order_story
from tests.unit.privacy.sealed_logs import has_plaintext, sealed_log

CATALOG = CommittedCatalog.load()
LATEST = {e.short_name: e for e in CATALOG.entries() if CATALOG.latest(e.name) is e}
SUBJECTS = {"customer": "CUST-0001", "driver": "DRV-001"}
PLAIN = ("王经理", "13812345678", "张三", "13800001234", "李厨师")


def keys() -> SqliteKeyStore:
    return SqliteKeyStore(None, DEV_MASTER_KEY)


# --- derived from the schemas ------------------------------------------------------------------------

def test_every_marked_field_of_the_newest_schemas_has_a_subject_and_a_label() -> None:
    marked = {(name, ".".join(p)) for name, e in LATEST.items() for p in marked_paths(e.raw)}
    assert marked == set(LABELS)  # nothing marked is left out, nothing listed is unmarked
    assert len(marked) == 9
    for name in {n for n, _ in marked}:
        assert {f.dotted for f in personal_fields(name)} == {p for n, p in LABELS if n == name}
    assert personal_fields("PaymentConfirmed") == ()
    assert {kind for kind, _ in LABELS.values()} == {"customer", "driver"}


def test_a_copied_field_keeps_its_label_so_the_projection_copy_still_opens() -> None:
    assert LABELS[("OrderDispatched", "driver_name")] == LABELS[("OrderState", "driver.name")]
    assert LABELS[("OrderDispatched", "driver_phone")] == LABELS[("OrderState", "driver.phone")]
    assert LABELS[("OrderDelivered", "receiver_name")] == LABELS[("OrderState", "signature.receiver_name")]
    state_labels = {v for (n, _), v in LABELS.items() if n == "OrderState"}
    assert set(PUBLIC_VIEW_LABELS.values()) == state_labels


def test_public_view_moves_exactly_the_personal_fields_the_table_names() -> None:
    """Seal a view's personal fields with markers, render it: the markers sit exactly at PUBLIC_VIEW_LABELS."""
    states, _ = fold_all(order_story("KL-PV", ending="signed"))
    view = copy.deepcopy(states["KL-PV"]["view"])
    for f in personal_fields("OrderState"):
        node = view
        for name in f.path[:-1]:
            node = node[name]
        node[f.path[-1]] = {"marker": f.label}
    found: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict) and set(value) == {"marker"}:
            found[path] = value["marker"]
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else k)

    walk(public_view(view), "")
    assert found == {p: label for (_, p), (_, label) in PUBLIC_VIEW_LABELS.items()}


# --- sealing and opening -----------------------------------------------------------------------------

@pytest.mark.parametrize("event", [order_created("KL1"), order_dispatched("KL1", 6, T0),
                                   order_delivered("KL1", 7, T0, [])], ids=lambda e: e[0])
def test_seal_then_reveal_gives_the_record_back(event: tuple[str, dict[str, Any]]) -> None:
    record_type, record = event
    before = copy.deepcopy(record)
    ks = keys()
    sealed = seal_record(record_type, record, SUBJECTS, ks)
    assert record == before  # the input is not modified
    assert not has_plaintext(sealed, PLAIN) and not has_plaintext(sealed, ("北京市",))
    for f in personal_fields(record_type):
        node = sealed
        for name in f.path:
            node = node[name]
        assert is_sealed(node) and node["key_id"] == f"{f.kind}:{SUBJECTS[f.kind]}"
    assert reveal_record(record_type, sealed, ks) == record
    assert seal_record(record_type, sealed, SUBJECTS, ks) == sealed  # already sealed: untouched


def test_the_receiver_name_is_the_customers_data_and_the_drivers_name_the_drivers() -> None:
    ks = keys()
    delivered = seal_record("OrderDelivered", order_delivered("KL1", 7, T0, [])[1], SUBJECTS, ks)
    dispatched = seal_record("OrderDispatched", order_dispatched("KL1", 6, T0)[1], SUBJECTS, ks)
    assert delivered["receiver_name"]["key_id"] == "customer:CUST-0001"
    assert dispatched["driver_phone"]["key_id"] == "driver:DRV-001"


def test_a_missing_subject_or_a_non_string_is_refused() -> None:
    _, record = order_created("KL1")
    with pytest.raises(SealError, match=r"OrderCreated.customer_name is a customer's data, but no customer id"):
        seal_record("OrderCreated", record, {"driver": "DRV-1"}, keys())
    with pytest.raises(SealError, match="expected a string or a sealed value, got int"):
        seal_record("OrderCreated", {**record, "customer_phone": 138}, SUBJECTS, keys())


def test_an_erased_subject_reveals_none_and_others_still_open() -> None:
    ks = keys()
    created = seal_record("OrderCreated", order_created("KL1")[1], SUBJECTS, ks)
    dispatched = seal_record("OrderDispatched", order_dispatched("KL1", 6, T0)[1], SUBJECTS, ks)
    ks.destroy("customer:CUST-0001")
    opened = reveal_record("OrderCreated", created, ks)
    assert (opened["customer_name"], opened["customer_phone"], opened["delivery_address"]["text"]) == (None,) * 3
    assert opened["customer_id"] == "CUST-0001" and opened["lines"] == created["lines"]
    assert reveal_record("OrderDispatched", dispatched, ks)["driver_name"] == "张三"


def test_a_record_of_an_already_erased_subject_is_shredded_as_it_is_written() -> None:
    ks = keys()
    ks.destroy("customer:CUST-0001")
    sealed = seal_record("OrderDelivered", order_delivered("KL1", 7, T0, [])[1], SUBJECTS, ks)
    assert sealed["receiver_name"]["key_version"] == 0 and not has_plaintext(sealed, PLAIN)
    assert reveal_record("OrderDelivered", sealed, ks)["receiver_name"] is None


def test_a_ciphertext_moved_to_another_kind_of_data_or_another_subjects_record_does_not_open() -> None:
    ks = keys()
    created = seal_record("OrderCreated", order_created("KL1")[1], SUBJECTS, ks)
    as_name = {**created, "customer_name": created["customer_phone"]}  # the phone shown as the name
    with pytest.raises(SealError, match=r"customer\.name"):
        reveal_record("OrderCreated", as_name, ks)
    other = seal_record("OrderCreated", order_created("KL2", customer_id="CUST-0002")[1],
                        {"customer": "CUST-0002"}, ks)
    stolen = {**other, "customer_name": created["customer_name"]}  # CUST-0001's name in CUST-0002's order
    with pytest.raises(SealError, match="under customer:CUST-0001, but the record belongs to customer:CUST-0002"):
        reveal_record("OrderCreated", stolen, ks)
    relabelled = {**other, "customer_name": {**created["customer_name"], "key_id": "customer:CUST-0002"}}
    with pytest.raises(SealError, match="does not open"):
        reveal_record("OrderCreated", relabelled, ks)


def test_plain_text_of_older_records_is_left_as_it_is() -> None:
    _, record = order_created("KL1")
    assert reveal_record("OrderCreated", record, keys()) == record


# --- through the fold and the public view ------------------------------------------------------------

def test_the_fold_copies_sealed_values_and_the_views_open_at_the_edge() -> None:
    ks = keys()
    story = sealed_log(order_story("KL-S", ending="redispatched") + order_story("KL-T", ending="signed"), ks)
    states, rejections = fold_all(story)
    assert rejections == []
    plain_states, _ = fold_all(order_story("KL-S", ending="redispatched") + order_story("KL-T", ending="signed"))
    for oid in ("KL-S", "KL-T"):
        view = states[oid]["view"]
        assert not has_plaintext(states[oid], PLAIN)  # fold state incl. the view: ciphertext only
        assert is_sealed(view["driver"]["name"])
        assert reveal_record("OrderState", view, ks) == plain_states[oid]["view"]
        public = public_view(view)
        assert not has_plaintext(public, PLAIN)
        assert reveal_view(public, ks) == public_view(plain_states[oid]["view"])
    assert is_sealed(states["KL-T"]["view"]["signature"]["receiver_name"])
    ks.destroy("driver:DRV-001")
    gone = reveal_view(public_view(states["KL-T"]["view"]), ks)
    assert (gone["driverInfo"]["name"], gone["driverInfo"]["phone"]) == (None, None)
    assert gone["signature"]["receiverName"] == "李厨师"


def test_the_public_view_table_is_what_personal_fields_serves_for_it() -> None:
    assert {(PUBLIC_VIEW, f.dotted) for f in personal_fields(PUBLIC_VIEW)} == set(PUBLIC_VIEW_LABELS)
