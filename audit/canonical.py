"""Canonical JSON: the one byte encoding the audit chain hashes. Pure.

``canonical_json(value)`` is orjson with sorted keys and no whitespace, over a value reduced to
JSON's own types first, so equal values always give equal bytes (dict order does not matter):

- ``bytes`` become ``{"$base64": "..."}`` (standard alphabet, padded);
- non-finite floats (NaN, +-Infinity, which JSON lacks and orjson would write as ``null``) become
  ``{"$float": "NaN" | "Infinity" | "-Infinity"}``;
- tuples become lists; dict keys must be strings.

Anything else (a ``datetime``, a set, an object) is refused with the path of the offending value:
the caller decides how to represent it, never a silent ``str()``.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson

_SPECIAL_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


class NotCanonical(TypeError):
    """A value the canonical encoding does not represent; the message names where it is."""


def canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(_plain(value, "$"), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise NotCanonical(f"no canonical JSON form: {exc}") from exc


def _plain(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "NaN" if math.isnan(value) else _SPECIAL_FLOATS[value]}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotCanonical(f"{path}: dict key {k!r} is a {type(k).__name__}, not a string")
            out[k] = _plain(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise NotCanonical(f"{path}: {type(value).__name__} value {value!r} has no canonical JSON form")
