"""The real PyFlink job in an embedded mini-cluster on a collection (no Kafka),
in both Python execution modes, against the worker's order agent with in-memory sinks.
Runs the job in .venv-flink (the main venv has no PyFlink) via
tests/flink/collection_runner.py."""

from __future__ import annotations

import pickle
import random
import subprocess
from pathlib import Path

import pytest

from infra import flink_env
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE
from simulator.events import order_story
from streams.order_agent import OrderStateAgent
from tests.unit.streams.fakes import FakeOrderStore, FakeStats, ListOutput

ROOT = Path(__file__).resolve().parents[3]
CODEC = AvroCodec()


def the_log() -> list[SourceRecord]:
    events = [e for i, end in enumerate(["signed", "redispatched", "refused", "cancelled", "out_of_stock"])
              for e in order_story(f"KLM{i}", ending=end)]
    rng = random.Random(8)
    noisy = events + rng.sample(events, 15)
    rng.shuffle(noisy)
    recs = [SourceRecord(ORDER_EVENTS.name, 0, off, e["order_id"].encode(), CODEC.encode(t, e), 1000 + off)
            for off, (t, e) in enumerate(noisy)]
    recs.insert(7, SourceRecord(ORDER_EVENTS.name, 0, 999, b"KLM0", b"\x00\x00\x00\x00\x01junk", 0))
    return recs


def worker_outputs(records: list[SourceRecord]) -> list[tuple[str, bytes, bytes]]:
    output = ListOutput()
    agent = OrderStateAgent(AvroCodec(epoch_ms=True), FakeOrderStore(), output, FakeStats(), consumer="worker",
                            wall_clock_ms=lambda: 0)
    for start in range(0, len(records), 7):
        agent.write(agent.process(records[start:start + 7]))
    return list(output.records)


def latest_states(outputs: list[tuple[str, bytes, bytes]]) -> dict[bytes, dict]:
    latest: dict[bytes, dict] = {}
    for topic, key, value in outputs:
        if topic == ORDER_STATE.name:
            state = CODEC.decode(value).value
            if state["version"] >= latest.get(key, {}).get("version", 0):
                latest[key] = state
    return latest


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_flink_job_on_a_collection_matches_the_worker(tmp_path: Path, mode: str) -> None:
    records = the_log()
    src, dst = tmp_path / "in.pickle", tmp_path / "out.pickle"
    src.write_bytes(pickle.dumps(records))
    run = subprocess.run([str(flink_env.python_executable()), "tests/flink/collection_runner.py", str(src), str(dst),
                          mode], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    flink = pickle.loads(dst.read_bytes())
    worker = worker_outputs(records)
    assert latest_states(flink) == latest_states(worker)
    assert len(latest_states(flink)) == 5
    flink_dead = [CODEC.decode(v).value for t, _, v in flink if t == DEAD_LETTERS.name]
    assert [(d["source_offset"], d["reason_code"]) for d in flink_dead] == [(999, "AVRO_DECODE_FAILED")]
