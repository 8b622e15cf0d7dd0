"""ETAs and "arriving soon" notices from a van's pings, inside the per-driver geofence fold."""

from __future__ import annotations

import itertools
from typing import Any

from projections.eta import DistanceSpeedEta
from projections.geofence import GeoContext, step
from projections.van_eta import EtaSettings
from tests.unit.projections.geofence_builders import CUSTOMER, FENCES, MIN, T0, S, east_of, inputs, ping, van_order

CTX = GeoContext(FENCES, allowed_lateness_ms=30 * S, eta=EtaSettings(DistanceSpeedEta(), soon_ms=10 * MIN))


def drive(metres: list[float], start: int = 0, every_s: int = 10) -> list[dict[str, Any]]:
    """Pings every ``every_s`` seconds at these distances east of the customer."""
    return [ping(start + n, *east_of(CUSTOMER, m), at=T0 + (start + n) * every_s * S, eid=f"p{start + n}")
            for n, m in enumerate(metres)]


def run(records: list[dict[str, Any]]) -> tuple[dict, list, list]:
    out = step(None, inputs(records), CTX)
    return out.state, out.etas, out.notices


def test_an_eta_every_30_s_of_event_time_while_the_order_is_on_board() -> None:
    approach = drive([12_000 - 100 * n for n in range(40)])  # 400 s of pings at 10 m/s
    _, etas, _ = run([van_order(at=T0 - MIN), *approach, *drive([20_000] * 6, start=40)])
    assert etas, "no ETA"
    times = [e["computed_at"] for e in etas]
    assert all(b - a >= 30 * S for a, b in itertools.pairwise(times))
    first = etas[0]
    assert first["order_id"] == "KL-1" and first["dispatch_count"] == 1 and first["speed_kmh"] is None
    assert first["eta"] > first["computed_at"] and first["estimator"] == "distance-speed/v1"
    later = [e for e in etas if e["speed_kmh"] is not None]
    assert later and abs(later[0]["speed_kmh"] - 36.0) < 3.0  # 10 m/s measured from the pings


def test_no_eta_without_orders_on_board() -> None:
    state, etas, _ = run(drive([5000 - 100 * n for n in range(20)]))
    assert etas == [] and state["speed"]["fixes"]  # the speed track keeps going for the next order


def test_arriving_soon_once_then_resolved_when_the_van_enters_the_site() -> None:
    approach = drive([9000 - 100 * n for n in range(89)] + [50] * 10)  # 10 m/s, then at the door
    _state, _etas, notices = run([van_order(at=T0 - MIN), *approach, *drive([50] * 6, start=99)])
    soon = [(kind, opening) for kind, opening, _ in notices if kind == "arriving-soon"]
    assert soon == [("arriving-soon", True), ("arriving-soon", False)]
    opened = next(f for kind, opening, f in notices if kind == "arriving-soon" and opening)
    assert opened["eta"] - opened["at"] <= 10 * MIN and opened["order_id"] == "KL-1"
    assert [k for k, o, _ in notices if k == "driver-nearby"] == ["driver-nearby"]


def test_a_visited_stop_gets_no_more_etas_before_its_signature_arrives() -> None:
    visit = drive([3000, 1000, 100, 50, 50, 50, 50, 50, 400, 2000, 4000, 6000, 8000, 10_000] + [12_000] * 12)
    _, etas, _ = run([van_order(at=T0 - MIN), *visit])
    left_at = T0 + 8 * 10 * S  # first out-ping
    assert etas and max(e["computed_at"] for e in etas) < left_at + 30 * S
