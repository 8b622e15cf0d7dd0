"""Cold-chain sensors: van compartments and warehouse rooms, with occasional excursions.

A channel reads its baseline (chilled 1.5-3 °C, frozen about -20 °C) plus a
little noise. At each reading outside an excursion a new one starts with
probability ``rate_per_hour * interval``: a door left open (chilled rooms peak at
6.5-9 °C for 3-6 min) or a compressor failure (chilled rooms reach 8-12 °C for
15-40 min). Normal chilled readings never exceed 4.2 °C and chilled excursions
always exceed 5 °C for at least a minute, so excursions are countable.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from simulator.events import MINUTE

SENSOR_PRODUCER = "sensor-gateway"
EXCURSION_THRESHOLD_C = 5.0  # chilled readings above this are an excursion


@dataclass(frozen=True, slots=True)
class SensorDevice:
    device_id: str
    compartment: str  # CHILLED or FROZEN
    vehicle_id: str | None = None
    warehouse_id: str | None = None


@dataclass(frozen=True, slots=True)
class Excursion:
    kind: str  # DOOR_OPEN or COMPRESSOR_FAILURE
    start: int  # epoch ms
    end: int
    rise_c: float  # peak rise over baseline


class SensorChannel:
    """The state of one device: baseline, sequence number, current excursion."""

    def __init__(self, device: SensorDevice, seed: int, interval_ms: int, rate_per_hour: float) -> None:
        self.device = device
        self.rng = random.Random(f"kuailv-sensor:{seed}:{device.device_id}")
        self.seed = seed
        self.seq = 0
        self.p_start = min(1.0, rate_per_hour * interval_ms / 3_600_000)
        chilled = device.compartment == "CHILLED"
        self.base_c = self.rng.uniform(1.5, 3.0) if chilled else self.rng.uniform(-21.0, -19.0)
        self.base_rh = self.rng.uniform(84.0, 91.0) if chilled else self.rng.uniform(80.0, 86.0)
        self.excursion: Excursion | None = None

    def _maybe_start(self, at: int) -> None:
        rng = self.rng
        if self.excursion is not None and at >= self.excursion.end:
            self.excursion = None
        if self.excursion is None and rng.random() < self.p_start:
            chilled = self.device.compartment == "CHILLED"
            if rng.random() < 0.7:
                peak = rng.uniform(6.5, 9.0) if chilled else self.base_c + rng.uniform(4.0, 6.0)
                self.excursion = Excursion("DOOR_OPEN", at, at + int(rng.uniform(3, 6) * MINUTE), peak - self.base_c)
            else:
                peak = rng.uniform(8.0, 12.0) if chilled else rng.uniform(-14.0, -8.0)
                self.excursion = Excursion("COMPRESSOR_FAILURE", at, at + int(rng.uniform(15, 40) * MINUTE),
                                           peak - self.base_c)

    def _rise(self, at: int) -> float:
        exc = self.excursion
        if exc is None:
            return 0.0
        u = (at - exc.start) / (exc.end - exc.start)
        return exc.rise_c * max(0.0, min(1.0, u / 0.25, (1.0 - u) / 0.25))  # ramp, plateau, recovery

    def reading(self, at: int) -> dict[str, object]:
        """The Avro ``SensorReading`` record at ``at`` (epoch ms)."""
        self._maybe_start(at)
        rng = self.rng
        rise = self._rise(at)
        noise = max(-0.6, min(0.6, rng.gauss(0, 0.25)))
        temp = self.base_c + noise + rise
        humidity = self.base_rh + rng.gauss(0, 1.5) - (rise * 0.8 if self.excursion else 0.0)
        self.seq += 1
        dev = self.device
        return {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kuailv-sim:{self.seed}:{dev.device_id}:{self.seq}")),
            "device_id": dev.device_id, "vehicle_id": dev.vehicle_id, "warehouse_id": dev.warehouse_id,
            "compartment": dev.compartment, "event_time": at, "producer": SENSOR_PRODUCER,
            "temperature_c": round(temp, 2), "humidity_pct": round(min(95.0, max(80.0, humidity)), 1),
        }
