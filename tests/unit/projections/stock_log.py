"""A simulated ``kuailv.stock.v1`` for the stock tests: the movements of a multi-day run, partitioned as Kafka
would (murmur2 of the key), with re-published duplicates."""

from __future__ import annotations

import random
from typing import Any

from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.partitioning import murmur2_partition
from schemas.topics import STOCK
from simulator.config import SimulationConfig
from simulator.traffic import simulate

# ten days at two orders an hour (coarse telemetry: only the stock movements are used)
CONFIG = SimulationConfig(seed=5, orders=500, orders_per_hour=2.0, gps_interval_s=3600.0, sensor_interval_s=36_000.0)


def movements(config: SimulationConfig = CONFIG, duplicates: int = 60, seed: int = 1) -> list[dict[str, Any]]:
    """The run's movements in event time, with ``duplicates`` of them re-published a few records later."""
    moves = [s.record for s in simulate(config, stock=True) if getattr(s, "record_type", None) == "StockMovement"]
    rng = random.Random(seed)
    for i in sorted(rng.sample(range(len(moves) - 10), duplicates), reverse=True):
        moves.insert(i + rng.randint(1, 8), moves[i])
    return moves


def topic(moves: list[dict[str, Any]], codec: AvroCodec, partitions: int = STOCK.partitions) -> list[SourceRecord]:
    """The records as one topic: per partition in produce order, offsets from 0."""
    offsets = [0] * partitions
    out = []
    for m in moves:
        key = f"{m['warehouse_id']}/{m['sku']}".encode()
        p = murmur2_partition(key, partitions)
        out.append(SourceRecord(STOCK.name, p, offsets[p], key, codec.encode("StockMovement", m), m["event_time"]))
        offsets[p] += 1
    return out
