"""OrderStateAgent.process/write without the network: fakes for Redis and Kafka
(proven against the real ones by tests/contract/order_store_contract.py)."""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import projections.order_step as order_step
from projections.keyed_batch import Counts
from projections.order_state import State, fold_all
from projections.order_view import public_view
from projections.timefmt import jsonable
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE
from simulator.events import (
    MINUTE,
    T0,
    Event,
    event_id,
    order_created,
    order_delivered,
    order_story,
    payment_confirmed,
)
from streams.order_agent import OrderStateAgent
from streams.runtime.batch_loop import Staged
from streams.sinks.errors import SinkError
from streams.source import SourceRecord
from tests.unit.privacy.sealed_logs import has_plaintext, sealed_log
from tests.unit.streams.fakes import FakeOrderStore, FakeStats, ListOutput

CODEC = AvroCodec()
TOPIC = ORDER_EVENTS.name
NOW = T0 + 24 * 60 * MINUTE  # the projector's wall clock: only stamps DeadLetter.failed_at
CONSUMER = "kuailv-test@unit"


class Log:
    """Kafka offsets for one partition: every record gets the next offset."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.offset = 100

    def raw(self, value: bytes | None, key: bytes | None) -> SourceRecord:
        self.offset += 1
        return SourceRecord(TOPIC, self.partition, self.offset, key, value, T0 + self.offset)

    def event(self, ev: Event, key: str | None = None) -> SourceRecord:
        record_type, value = ev
        return self.raw(CODEC.encode(record_type, value), (key or value["order_id"]).encode())

    def events(self, evs: Sequence[Event]) -> list[SourceRecord]:
        return [self.event(ev) for ev in evs]


def projector(store: FakeOrderStore | None = None, output: ListOutput | None = None,
              stats: FakeStats | None = None, cache_keys: int = 1000) -> OrderStateAgent:
    return OrderStateAgent(AvroCodec(epoch_ms=True), store or FakeOrderStore(), output or ListOutput(),
                           stats or FakeStats(), consumer=CONSUMER, wall_clock_ms=lambda: NOW, cache_keys=cache_keys)


def run(p: OrderStateAgent, *batches: Sequence[SourceRecord]) -> list[Counts]:
    """Process and write each batch in turn, as the loop's two threads do."""
    out = []
    for b in batches:
        staged = p.process(list(b))
        p.write(staged)
        out.append(staged.counts)
    return out


def totals(stats: list[Counts]) -> Counts:
    t = Counts()
    for s in stats:
        t.add(s)
    return t


def expected(events: Sequence[Event]) -> dict[str, State]:
    return fold_all(list(events))[0]


def views(store: FakeOrderStore, order_ids: Sequence[str]) -> dict[str, Any]:
    return {oid: store.view(oid) for oid in order_ids}


def dead_letters(output: ListOutput) -> list[dict[str, Any]]:
    out = []
    for key, value in output.on(DEAD_LETTERS.name):
        decoded = CODEC.decode(value)
        assert decoded.record_type == "DeadLetter"
        assert key == f"{decoded.value['source_topic']}[{decoded.value['source_partition']}]@" \
                      f"{decoded.value['source_offset']}".encode()
        out.append(decoded.value)
    return out


def projections(output: ListOutput) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for key, value in output.on(ORDER_STATE.name):
        decoded = CODEC.decode(value)
        assert decoded.record_type == "OrderState"
        out.append((key.decode(), jsonable(decoded.value)))
    return out


def assert_dead_letter(dl: Mapping[str, Any], rec: SourceRecord, reason_code: str, **extra: Any) -> None:
    assert dl["reason_code"] == reason_code, dl["reason"]
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"], jsonable(dl["source_timestamp"])) == \
           (rec.topic, rec.partition, rec.offset, rec.timestamp_ms)
    assert (dl["key"], dl["value"]) == (rec.key, rec.value)  # the original bytes, for a later re-drive
    assert (dl["consumer"], jsonable(dl["failed_at"])) == (CONSUMER, NOW)
    assert dl["reason"]
    for name, want in extra.items():
        assert dl[name] == want, (name, dl[name], want)


# --- good input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_duplicated_and_reordered_stories_give_the_fold_all_views(sealed: bool) -> None:
    """``sealed``: the log as the command side writes it (personal fields sealed): the same outcome."""
    stories = {oid: order_story(oid, T0 + i * MINUTE, ending=ending)
               for i, (oid, ending) in enumerate([("O-1", "signed"), ("O-2", "redispatched"), ("O-3", "refused"),
                                                  ("O-4", "cancelled"), ("O-5", "out_of_stock")])}
    if sealed:
        stories = {oid: sealed_log(story) for oid, story in stories.items()}
    all_events = [ev for story in stories.values() for ev in story]
    rng = random.Random(20260601)
    delivered = all_events + rng.sample(all_events, 15)  # at-least-once: 15 re-deliveries
    rng.shuffle(delivered)  # and any order across and within orders
    log = Log()
    recs = log.events(delivered)
    store, output = FakeOrderStore(), ListOutput()
    p = projector(store, output)
    stats = run(p, *(recs[i:i + 9] for i in range(0, len(recs), 9)))

    want = expected(all_events)
    assert views(store, list(stories)) == {oid: public_view(s["view"]) for oid, s in want.items()}
    assert store.load(list(stories)) == want
    assert output.on(DEAD_LETTERS.name) == []
    t = totals(stats)
    assert (t.records, t.applied, t.duplicates, t.dead_letters) == (len(delivered), len(all_events), 15, 0)
    assert sum(s.records for s in stats) == len(delivered)
    # the last projection record of each order is its final view (a compacted topic keeps exactly that)
    last = dict(projections(output))
    assert last == {oid: s["view"] for oid, s in want.items()}
    assert has_plaintext((last, store.load(list(stories))), ("张三", "13800001234", "李厨师")) is not sealed


def test_each_changed_order_gets_one_projection_record_keyed_by_order_id() -> None:
    a, b, c = order_story("O-A"), order_story("O-B", ending="cancelled"), order_story("O-C")
    log = Log()
    batch = log.events([*a[:4], *b, c[1]])  # O-C: only v2, buffered behind the missing v1
    store, output = FakeOrderStore(), ListOutput()
    [stats] = run(projector(store, output), batch)
    got = projections(output)
    assert got == [("O-A", expected(a[:4])["O-A"]["view"]), ("O-B", expected(b)["O-B"]["view"])]
    assert (stats.orders_written, stats.buffered, stats.applied) == (3, 1, 7)
    assert views(store, ["O-C"]) == {"O-C": None}  # only pending: state saved, no public view yet
    assert store.load(["O-C"])["O-C"]["pending"].keys() == {"2"}


def test_a_batch_of_only_duplicates_writes_nothing() -> None:
    story = order_story("O-DUP")
    log = Log()
    store, output = FakeOrderStore(), ListOutput()
    p = projector(store, output)
    run(p, log.events(story))
    before_records, before_hashes = list(output.records), {k: dict(v) for k, v in store.hashes.items()}
    [stats] = run(p, log.events(story[::-1]))  # the whole batch re-delivered, in any order
    assert (stats.records, stats.duplicates, stats.applied, stats.orders_written, stats.dead_letters) == \
           (len(story), len(story), 0, 0, 0)
    assert output.records == before_records
    assert store.hashes == before_hashes


def test_outputs_are_flushed_before_the_store_is_saved() -> None:
    journal: list[str] = []
    store, output = FakeOrderStore(journal), ListOutput(journal)
    run(projector(store, output, FakeStats(journal)), Log().events(order_story("O-ORD")[:3]))
    assert journal == ["store.load", "output.flush", "redis.execute", "store.save"]


def test_a_failed_output_flush_saves_nothing_and_a_retry_completes() -> None:
    story = order_story("O-RETRY")
    log = Log()
    batch = [*log.events(story[:3]), log.raw(b"junk", b"O-RETRY")]
    store, output = FakeOrderStore(), ListOutput()
    p = projector(store, output)
    output.fail_next_flush()
    staged = p.process(batch)
    with pytest.raises(SinkError):
        p.write(staged)
    assert store.save_calls == 0 and store.hashes == {}
    assert output.records == []  # neither the projection nor the dead letter reached a consumer
    output.buffer.clear()  # the producer gave up on them (message timeout): the retry adds them again
    p.write(staged)  # the loop retries the same staged batch; its offsets were not committed
    assert views(store, ["O-RETRY"]) == {"O-RETRY": public_view(expected(story[:3])["O-RETRY"]["view"])}
    assert projections(output)[-1] == ("O-RETRY", expected(story[:3])["O-RETRY"]["view"])
    assert [dl["source_offset"] for dl in dead_letters(output)][-1] == batch[-1].offset


# --- bad input ----------------------------------------------------------------------------------


def test_poison_records_are_dead_lettered_and_the_good_ones_still_apply() -> None:
    good = order_story("O-GOOD")
    log = Log()
    created = CODEC.encode(*good[0])
    _, ill_created = order_created("O-ILL", 1, T0)
    ill_delivered = order_delivered("O-ILL", 2, T0 + MINUTE, ill_created["lines"])  # CREATED -> SIGNED
    conflicting = payment_confirmed("O-GOOD", 2, T0 + 7 * MINUTE, 1)
    conflicting[1]["event_id"] = event_id("O-GOOD", 2, salt="other-writer")
    gps = {"event_id": "gps-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_time": T0,
           "producer": "driver-app", "lat": 39.9, "lng": 116.4, "speed_kmh": 20.0, "heading_deg": 0.0,
           "accuracy_m": None}
    _, wrong_key = payment_confirmed("O-KEY", 2, T0)

    recs = log.events(good[:3])
    poison = {
        "NOT_AVRO_FRAMED": log.raw(b"\xff not avro at all", b"O-GOOD"),
        "UNKNOWN_SCHEMA_ID": log.raw(struct.pack(">bI", 0, 9999) + created[5:], b"O-GOOD"),
        "AVRO_DECODE_FAILED": log.raw(created[: len(created) // 2], b"O-GOOD"),
        "UNEXPECTED_RECORD_TYPE": log.raw(CODEC.encode("GpsPing", gps), b"DRV-001"),
        "INVALID_EVENT": log.event(("PaymentConfirmed", wrong_key), key="O-NOT-KEY"),
        "ILLEGAL_TRANSITION": None,
        "VERSION_CONFLICT": log.event(conflicting),
    }
    recs += [poison["NOT_AVRO_FRAMED"], poison["UNKNOWN_SCHEMA_ID"], poison["AVRO_DECODE_FAILED"]]
    recs += log.events([good[3], ("OrderCreated", ill_created)])
    poison["ILLEGAL_TRANSITION"] = log.event(ill_delivered)
    recs += [poison["ILLEGAL_TRANSITION"], poison["UNEXPECTED_RECORD_TYPE"], poison["INVALID_EVENT"]]
    recs += [poison["VERSION_CONFLICT"], *log.events(good[4:])]

    store, output = FakeOrderStore(), ListOutput()
    [stats] = run(projector(store, output), recs)

    dls = dead_letters(output)
    assert sorted(dl["reason_code"] for dl in dls) == sorted(poison)
    by_code = {dl["reason_code"]: dl for dl in dls}
    for code, rec in poison.items():
        assert rec is not None
        assert_dead_letter(by_code[code], rec, code)
    assert by_code["UNKNOWN_SCHEMA_ID"]["schema_id"] == 9999
    assert by_code["UNEXPECTED_RECORD_TYPE"]["record_type"] == "GpsPing"
    assert by_code["INVALID_EVENT"]["event_id"] == wrong_key["event_id"]
    assert "O-NOT-KEY" in by_code["INVALID_EVENT"]["reason"]
    assert (by_code["ILLEGAL_TRANSITION"]["event_id"], by_code["ILLEGAL_TRANSITION"]["record_type"]) == \
           (ill_delivered[1]["event_id"], "OrderDelivered")
    assert by_code["VERSION_CONFLICT"]["event_id"] == conflicting[1]["event_id"]
    assert stats.dead_letters == len(poison) == 7

    want = expected([*good, ("OrderCreated", ill_created), ill_delivered])
    assert views(store, ["O-GOOD", "O-ILL", "O-KEY"]) == {
        "O-GOOD": public_view(want["O-GOOD"]["view"]), "O-ILL": public_view(want["O-ILL"]["view"]), "O-KEY": None}
    assert want["O-GOOD"]["view"]["status"] == "SIGNED"
    assert (want["O-ILL"]["view"]["status"], want["O-ILL"]["view"]["rejected_events"]) == ("CREATED", 1)


def test_a_tombstone_and_a_missing_key_are_dead_lettered() -> None:
    log = Log()
    created = order_story("O-NULL")[0]
    tombstone, keyless = log.raw(None, b"O-NULL"), log.raw(CODEC.encode(*created), None)
    output = ListOutput()
    run(projector(output=output), [tombstone, keyless])
    first, second = dead_letters(output)
    assert_dead_letter(first, tombstone, "NOT_AVRO_FRAMED")
    assert_dead_letter(second, keyless, "INVALID_EVENT", event_id=created[1]["event_id"])


def test_a_buffered_event_refused_when_its_gap_closes_is_dead_lettered_re_encoded() -> None:
    story = order_story("O-GAP")
    _, created = story[0]
    illegal = order_delivered("O-GAP", 3, T0 + 20 * MINUTE, created["lines"])  # PAID -> SIGNED is not allowed
    log = Log()
    store, output = FakeOrderStore(), ListOutput()
    p = projector(store, output)
    first = log.events([story[0], illegal])  # v3 waits for v2 in the fold state
    closing = log.event(story[1])
    stats = run(p, first, [closing])
    assert (stats[0].buffered, stats[1].applied) == (1, 1)

    [dl] = dead_letters(output)
    assert dl["reason_code"] == "ILLEGAL_TRANSITION"
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"], dl["key"]) == \
           (closing.topic, closing.partition, closing.offset, closing.key)
    assert (dl["event_id"], dl["record_type"], dl["schema_id"]) == (illegal[1]["event_id"], "OrderDelivered", None)
    assert "buffered event v3" in dl["reason"] and closing.position in dl["reason"]
    assert dl["value"] != closing.value
    redecoded = CODEC.decode(dl["value"])  # the refused event itself, rebuilt from the fold state
    assert (redecoded.record_type, jsonable(redecoded.value)) == ("OrderDelivered", illegal[1])
    want = expected([story[0], story[1], illegal])["O-GAP"]
    assert views(store, ["O-GAP"]) == {"O-GAP": public_view(want["view"])}
    assert (want["view"]["status"], want["applied"], want["rejected"]) == ("PAID", 3, 1)


def test_a_fold_bug_for_one_order_parks_its_records_and_writes_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fold = order_step.fold

    def fold(state: Any, event_type: str, event: Mapping[str, Any], trace: bool = False) -> Any:
        if event["order_id"] == "O-BOOM":
            raise RuntimeError("fold blew up")
        return real_fold(state, event_type, event, trace)

    monkeypatch.setattr(order_step, "fold", fold)
    ok, boom = order_story("O-OK"), order_story("O-BOOM")[:3]
    log = Log()
    recs = log.events([ok[0], boom[0], ok[1], boom[1], boom[2], ok[2]])
    store, output = FakeOrderStore(), ListOutput()
    [stats] = run(projector(store, output), recs)

    dls = dead_letters(output)
    boom_recs = [r for r in recs if r.key == b"O-BOOM"]
    assert len(dls) == len(boom_recs) == stats.dead_letters == 3
    for dl, rec, (record_type, event) in zip(dls, boom_recs, boom, strict=True):
        assert_dead_letter(dl, rec, "PROCESSING_ERROR", event_id=event["event_id"], record_type=record_type,
                           schema_id=CODEC.decode(rec.value).schema_id)
        assert "RuntimeError: fold blew up" in dl["reason"]
    assert views(store, ["O-OK", "O-BOOM"]) == {"O-OK": public_view(expected(ok[:3])["O-OK"]["view"]),
                                               "O-BOOM": None}
    assert [k for k, _ in projections(output)] == ["O-OK"]


def test_a_header_naming_a_schema_id_beyond_int32_is_one_dead_letter_not_a_failed_batch() -> None:
    # Confluent schema ids are signed 32-bit; read_header reads the 4 bytes unsigned, so garbage
    # starting 00 FF FF FF FF names schema id 4294967295. Its dead letter must still encode
    # (DeadLetter.schema_id is an Avro int) and the good record next to it must still apply.
    story = order_story("O-NEXT")
    log = Log()
    garbage = log.raw(b"\x00\xff\xff\xff\xff garbage", b"O-NEXT")
    good = log.event(story[0])
    store, output = FakeOrderStore(), ListOutput()
    [stats] = run(projector(store, output), [garbage, good])
    [dl] = dead_letters(output)
    assert_dead_letter(dl, garbage, "UNKNOWN_SCHEMA_ID")
    assert views(store, ["O-NEXT"]) == {"O-NEXT": public_view(expected(story[:1])["O-NEXT"]["view"])}
    assert (stats.applied, stats.dead_letters) == (1, 1)


# --- the state cache --------------------------------------------------------------------------


def test_orders_written_by_this_worker_fold_from_its_cache_without_a_store_round_trip() -> None:
    a, b = order_story("O-C1"), order_story("O-C2")
    log = Log()
    store = FakeOrderStore()
    p = projector(store)
    run(p, log.events([a[0], b[0]]), log.events([a[1], b[1]]), log.events([a[2]]))
    assert store.loads == [["O-C1", "O-C2"]]  # only the first sight of each order asks the store
    assert store.load(["O-C1"]) == expected(a[:3])


def test_a_write_refused_as_stale_drops_the_cached_state_and_the_next_batch_reloads_it() -> None:
    story = order_story("O-STALE")
    log = Log()
    store = FakeOrderStore()
    p = projector(store)
    run(p, log.events(story[:2]))
    # Meanwhile another worker (which owned the partition for a while) folded further.
    newer = expected(story[:4])["O-STALE"]
    other = projector(store)
    run(other, log.events(story[:4]))
    assert store.load(["O-STALE"]) == {"O-STALE": newer}
    # Our cache still says v2: our write of v3 is refused (compare-and-set), never rolled back...
    run(p, log.events(story[2:3]))
    assert store.load(["O-STALE"]) == {"O-STALE": newer}
    # ...and the next batch folds on top of what the store holds.
    run(p, log.events(story[4:6]))
    assert store.load(["O-STALE"]) == {"O-STALE": expected(story[:6])["O-STALE"]}
    assert store.loads[-1] == ["O-STALE"]


def test_revoked_partitions_drop_exactly_their_orders() -> None:
    a, b = order_story("O-P1"), order_story("O-P2")
    store = FakeOrderStore()
    p = projector(store)
    run(p, [*Log(partition=1).events(a[:2]), *Log(partition=4).events(b[:2])])
    p.forget([(TOPIC, 1)])
    run(p, [*Log(partition=1).events(a[2:3]), *Log(partition=4).events(b[2:3])])
    assert store.loads[-1] == ["O-P1"]
    p.forget(None)
    run(p, Log(partition=4).events(b[3:4]))
    assert store.loads[-1] == ["O-P2"]
    assert store.load(["O-P1", "O-P2"]) == {**expected(a[:3]), **expected(b[:4])}


def test_a_cache_smaller_than_the_working_set_evicts_and_reloads_with_the_same_result() -> None:
    stories = {f"O-E{i}": order_story(f"O-E{i}", T0 + i * MINUTE) for i in range(6)}
    interleaved = [ev for step in zip(*stories.values(), strict=False) for ev in step]
    store = FakeOrderStore()
    p = projector(store, cache_keys=2)
    log = Log()
    run(p, *(log.events(interleaved[i:i + 4]) for i in range(0, len(interleaved), 4)))
    assert len(p.cache) == 2
    assert store.load(list(stories)) == expected(interleaved)
    assert len(store.loads) > 1


def test_projection_records_are_byte_identical_to_a_full_encode_of_the_view() -> None:
    stories = [order_story(f"O-B{i}", T0 + i * MINUTE, ending=e)
               for i, e in enumerate(["signed", "redispatched", "refused", "cancelled", "out_of_stock"])]
    events = [ev for step in zip(*stories, strict=False) for ev in step]
    output = ListOutput()
    run(projector(output=output), *([ev] for ev in Log().events(events)))
    full = AvroCodec(epoch_ms=True)
    recs = output.on(ORDER_STATE.name)
    assert len(recs) == len(events)
    for _, value in recs:
        assert full.encode("OrderState", full.decode(value).value) == value


def test_park_dead_letters_every_record_as_a_processing_error() -> None:
    recs = Log().events(order_story("O-PARK")[:2])
    output = ListOutput()
    p = projector(output=output)
    staged = p.park(recs, "RuntimeError: boom")
    assert isinstance(staged, Staged) and staged.counts == Counts(records=2, dead_letters=2)
    p.write(staged)
    for dl, rec in zip(dead_letters(output), recs, strict=True):
        assert_dead_letter(dl, rec, "PROCESSING_ERROR")
        assert dl["reason"] == "RuntimeError: boom"
