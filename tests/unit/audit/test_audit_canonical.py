"""Canonical JSON (``audit.canonical``): equal values give equal bytes, and the bytes do not drift."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest

from audit.canonical import NotCanonical, canonical_json


def test_key_order_and_whitespace_do_not_matter() -> None:
    a = {"b": 1, "a": [1, 2.5, {"y": None, "x": True}], "c": "鲜"}
    b = {"c": "鲜", "a": [1, 2.5, {"x": True, "y": None}], "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":[1,2.5,{"x":true,"y":null}],"b":1,"c":"鲜"}'.encode()


def test_the_bytes_are_fixed() -> None:
    """Golden bytes: a new orjson or a refactor must not change what stored chains were hashed over."""
    value = {"event_time": 1780293600000, "location": {"lat": 39.9042, "lng": 116.4074}, "qty": 2.0,
             "tuple": (1, "x"), "raw": b"\x00\xff", "nan": math.nan, "inf": -math.inf, "name": "王 \"师傅\"\n"}
    assert canonical_json(value) == (
        b'{"event_time":1780293600000,"inf":{"$float":"-Infinity"},"location":{"lat":39.9042,"lng":116.4074},'
        b'"name":"\xe7\x8e\x8b \\"\xe5\xb8\x88\xe5\x82\x85\\"\\n","nan":{"$float":"NaN"},"qty":2.0,'
        b'"raw":{"$base64":"AP8="},"tuple":[1,"x"]}')


@pytest.mark.parametrize("value,where", [({"at": datetime(2026, 6, 1, tzinfo=UTC)}, "$.at"),
                                         ({"a": [{"s": {1, 2}}]}, "$.a[0].s"), ({1: "x"}, "dict key 1"),
                                         ({"big": 2**70}, "64-bit")])
def test_values_without_a_canonical_form_are_refused_with_their_place(value: object, where: str) -> None:
    with pytest.raises(NotCanonical, match=re.escape(where)):
        canonical_json(value)
