"""An order's track window (dispatch to delivery, or now) and the even thinning (service.track), pure."""

from __future__ import annotations

from typing import Any

from projections.order_state import fold_all
from projections.order_view import public_view
from service.track import thin, track, window
from simulator.events import MINUTE, T0, order_story


def view(ending: str, upto: str | None = None) -> dict[str, Any]:
    events = order_story("KLT1", T0, ending=ending)
    if upto is not None:
        events = events[:[t for t, _ in events].index(upto) + 1]
    (state,) = fold_all(events)[0].values()
    return public_view(state["view"])


NOW = T0 + 24 * 60 * MINUTE


def test_the_window_runs_from_the_dispatch_to_the_delivery() -> None:
    signed = view("signed")
    types = [t for t, _ in order_story("KLT1", T0)]
    dispatched, delivered = (T0 + (types.index(t) + 1) * 5 * MINUTE for t in ("OrderDispatched", "OrderDelivered"))
    assert window(signed, NOW) == (dispatched, delivered)


def test_while_out_for_delivery_it_ends_now_and_a_redispatch_starts_a_new_one() -> None:
    out = view("signed", upto="OrderDispatched")
    assert out["status"] == "DELIVERING" and window(out, NOW)[1] == NOW
    again = view("redispatched", upto="ExceptionReported")
    first = window(again, NOW)
    redispatched = view("redispatched")
    assert window(redispatched, NOW)[0] > first[0]  # the second van's dispatch


def test_no_window_before_the_dispatch_or_for_a_cancelled_order() -> None:
    assert window(view("cancelled"), NOW) is None
    assert window(view("signed", upto="OrderPacked"), NOW) is None
    doc = track(view("cancelled"), NOW, lambda *a: ([], 0), 10)
    assert (doc["points"], doc["from"], doc["driverId"]) == ([], None, None)


def test_refused_ends_the_window_at_the_refusal() -> None:
    refused = view("refused")
    assert window(refused, NOW)[1] < NOW and refused["status"] == "RETURNING"


def test_thinning_keeps_the_ends_and_spaces_evenly() -> None:
    pts = list(range(10_001))
    thinned = thin(pts, 5)
    assert thinned == [0, 2500, 5000, 7500, 10000]
    assert thin(pts[:3], 5) == [0, 1, 2] and thin(pts, 1) == [10000]
    assert len(thin(pts, 5000)) == 5000 and thin(pts, 5000)[-1] == 10000


def test_the_track_document() -> None:
    out = view("signed", upto="OrderDispatched")
    asked = []

    def points(driver: str, start: int, end: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        asked.append((driver, start, end, limit))
        return [{"time": start + 5_000, "lat": 39.9, "lng": 116.4, "speed_kmh": 30.0, "heading_deg": 90.0}], 7

    doc = track(out, NOW, points, 1)
    assert asked == [("DRV-001", *window(out, NOW), 1)]
    assert doc["driverId"] == "DRV-001" and doc["total"] == 7 and doc["thinned"] is True
    assert doc["points"] == [{"at": "2026-06-01T06:45:05.000Z", "lat": 39.9, "lng": 116.4, "speedKmh": 30.0,
                              "headingDeg": 90.0}]
