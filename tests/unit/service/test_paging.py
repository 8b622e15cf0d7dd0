"""Cursor pagination of order lists (service.orders.page): id order, opaque cursors, bad cursors refused."""

from __future__ import annotations

import pytest

from service.orders import decode_cursor, encode_cursor, page


def test_pages_cover_every_id_once_in_order() -> None:
    ids = {f"KL{i:03d}" for i in range(7)}
    seen, cursor = [], None
    while True:
        chosen, cursor = page(ids, cursor, 3)
        seen += chosen
        if cursor is None:
            break
    assert seen == sorted(ids)


def test_a_cursor_survives_ids_added_before_it() -> None:
    first, cursor = page({"KL1", "KL2", "KL3"}, None, 2)
    assert first == ["KL1", "KL2"] and cursor is not None
    assert page({"KL0", "KL1", "KL2", "KL3"}, cursor, 2) == (["KL3"], None)


def test_cursors_are_opaque_and_checked() -> None:
    assert decode_cursor(encode_cursor("KL202606010001")) == "KL202606010001"
    with pytest.raises(ValueError, match="not one this API gave out"):
        decode_cursor("%%%")
