"""The command side on a REAL PostgreSQL (``infra.postgres``, test profile, port 25432).

``eventstore_config`` maps ``postgresql://...`` URLs to the library's settings (unit-tested);
here the same URLs drive ``OrderService`` and ``OutboxRelay`` against the server:

1. a full set of order stories recorded by one service and reloaded by a second instance: identical
   views, equal to the same commands run on an in-process store, and every event is a row in PostgreSQL;
2. optimistic concurrency: two services load the same order, both pay: exactly one wins, the other
   gets ``ConcurrentModification`` and nothing of it is stored;
3. the relay publishes to the real test Kafka (a fresh 6-partition topic, deleted afterwards); its
   tracking position is a row in PostgreSQL, and a new relay on a new service continues from it:
   nothing is published twice, nothing is missing;
4. illegal commands are refused and nothing is recorded.

Every test gets its own database on the cluster (``kuailv_it_<random>``), dropped afterwards.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from commands.errors import CommandRejected, ConcurrentModification, OrderAlreadyExists, OrderNotFound
from commands.eventstore_config import eventstore_env
from commands.order_service import OrderService
from commands.relay import OutboxRelay, kafka_producer_factory
from config.settings import Settings
from infra import postgres as infra_postgres
from schemas.topics import ORDER_EVENTS
from simulator.events import T0
from streams.replay import read_topic
from tests.unit.commands import relay_contract as contract
from tests.unit.commands.order_commands_kit import (
    PATHS,
    command_for,
    drive,
    pause_after_load,
    record_stories,
    status_of,
)

pytestmark = pytest.mark.integration

EVENTS_TABLE = "orderservice_events"  # eventsourcing.postgres: <application name>_events
TRACKING_TABLE = "orderservice_tracking"
PARTITIONS = 6


@pytest.fixture
def database(postgres: infra_postgres.Cluster) -> Iterator[str]:
    """A fresh database for this test; yields its name."""
    name = f"kuailv_it_{uuid.uuid4().hex[:12]}"
    infra_postgres.create_database(postgres, name)
    try:
        yield name
    finally:
        infra_postgres.drop_database(postgres, name)


@pytest.fixture
def pg_url(postgres: infra_postgres.Cluster, database: str) -> str:
    return postgres.url(database)


@pytest.fixture
def open_service(pg_url: str) -> Iterator[Callable[[], OrderService]]:
    """``open_service()``: a new OrderService on the test database (its own connection pool), closed after."""
    opened: list[OrderService] = []

    def make() -> OrderService:
        service = OrderService.from_url(pg_url)
        opened.append(service)
        return service

    yield make
    for service in opened:
        service.close()


def sql(postgres: infra_postgres.Cluster, database: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Ask PostgreSQL directly, around the library."""
    with postgres.connect(database) as conn:
        return list(conn.execute(query, params or None).fetchall())


def test_the_url_really_selects_postgres(pg_url: str, open_service: Callable[[], OrderService]) -> None:
    env = eventstore_env(pg_url)
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert env["POSTGRES_PORT"] == "25432" and env["POSTGRES_USER"] == "kuailv"
    assert type(open_service().recorder).__module__ == "eventsourcing.postgres"


# --- 1. record, reload -----------------------------------------------------------------------------------


def opened(service: OrderService, view: dict[str, Any] | None) -> dict[str, Any] | None:
    from privacy.fields import reveal_record

    return None if view is None else reveal_record("OrderState", view, service.keys)


def test_order_stories_recorded_on_postgres_reload_identically_in_a_second_service(
        postgres: infra_postgres.Cluster, database: str, open_service: Callable[[], OrderService]) -> None:
    writer = open_service()
    reference = OrderService.from_url("memory://")  # the same commands on an in-process store
    expected = record_stories(writer, 10, "PG")  # signed, redispatched, refused, cancelled, out of stock (x2)
    assert record_stories(reference, 10, "PG") == expected
    for i, situation in enumerate(("RETURNED", "CLAIM_SETTLED", "CLAIMING+from_exception",
                                   "CANCELLED+from_out_of_stock")):
        order_id = f"PG-PATH-{i}"
        drive(writer, order_id, PATHS[situation])
        drive(reference, order_id, PATHS[situation])
        expected[order_id] = status_of(situation)

    reader = open_service()  # a second instance: nothing cached, everything comes from PostgreSQL
    for order_id, status in expected.items():
        view = reader.view(order_id)
        assert view is not None, order_id
        assert view["status"] == status, order_id
        # the same views, personal data included (sealed with fresh nonces in each service: compared opened)
        assert opened(reader, view) == opened(reference, reference.view(order_id)) == \
            opened(writer, writer.view(order_id)), order_id

    recorded = contract.recorded_records(reader)
    assert [record["version"] for _, record in recorded if record["order_id"] == "PG-0000"] == list(
        range(1, reader.find("PG-0000").version + 1))
    total = sum(reader.find(order_id).version for order_id in expected)
    assert len(recorded) == total == reader.recorder.max_notification_id()
    assert sql(postgres, database, f"SELECT count(*), max(notification_id) FROM {EVENTS_TABLE}") == [(total, total)]


# --- 2. optimistic concurrency ---------------------------------------------------------------------------


def test_two_services_pay_the_same_order_exactly_one_wins(
        postgres: infra_postgres.Cluster, database: str, open_service: Callable[[], OrderService]) -> None:
    drive(open_service(), "PG-RACE", ["create"])
    barrier = threading.Barrier(2)
    writers = {"A": open_service(), "B": open_service()}
    for service in writers.values():
        pause_after_load(service, barrier)
    _, pay = command_for("confirm_payment", "PG-RACE", T0 + 60_000)
    outcomes: dict[str, BaseException | None] = {}

    def run(who: str) -> None:
        try:
            writers[who].confirm_payment("PG-RACE", **{**pay, "payment_id": f"PAY-{who}"})
            outcomes[who] = None
        except Exception as exc:
            outcomes[who] = exc

    threads = [threading.Thread(target=run, args=(who,)) for who in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert set(outcomes) == {"A", "B"}, f"a writer hung: {outcomes}"
    winners = [who for who, exc in outcomes.items() if exc is None]
    losers = {who: exc for who, exc in outcomes.items() if exc is not None}
    assert len(winners) == 1, outcomes
    (loser, error), = losers.items()
    assert isinstance(error, ConcurrentModification), repr(error)
    assert error.order_id == "PG-RACE" and error.command == "confirm_payment"

    view = open_service().view("PG-RACE")
    assert view is not None
    assert view["status"] == "PAID" and view["version"] == 2
    assert view["payment"]["payment_id"] == f"PAY-{winners[0]}"
    assert sql(postgres, database, f"SELECT count(*) FROM {EVENTS_TABLE}") == [(2,)]

    # The loser reloads and sees the winner's payment: paying again is now illegal, not a conflict.
    with pytest.raises(CommandRejected):
        open_service().confirm_payment("PG-RACE", **{**pay, "payment_id": f"PAY-{loser}"})


# --- 3. the relay on PostgreSQL -> real Kafka ------------------------------------------------------------


@pytest.fixture
def topic(stack: Settings) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"kuailv.order-events.it-pg-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    new = NewTopic(name, num_partitions=PARTITIONS, replication_factor=1, config=dict(ORDER_EVENTS.config))
    admin.create_topics([new], operation_timeout=30)[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # every partition has a leader
        meta = admin.list_topics(name, timeout=10).topics[name]
        if meta.error is None and len(meta.partitions) == PARTITIONS and all(
                p.leader >= 0 for p in meta.partitions.values()):
            break
        assert time.monotonic() < deadline, f"{name}: partitions without a leader after 30s"
        time.sleep(0.2)
    try:
        yield name
    finally:
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)


def test_relay_publishes_from_postgres_and_its_position_survives_a_restart(
        stack: Settings, topic: str, postgres: infra_postgres.Cluster, database: str,
        open_service: Callable[[], OrderService]) -> None:
    bootstrap = stack.kafka_bootstrap
    writer = open_service()
    expected = record_stories(writer, 6, "PG-R1")

    first = OutboxRelay(open_service(), kafka_producer_factory(bootstrap), topic=topic, flush_timeout=30.0)
    assert first.position == 0
    assert first.run_once(limit=10) == 10
    assert first.run_once(limit=10) == 10
    first.close()  # "the relay process stops" after two batches
    assert first.position == 20
    position_row = f"SELECT notification_id FROM {TRACKING_TABLE} WHERE application_name = %s"
    assert sql(postgres, database, position_row, first.name) == [(20,)]

    expected |= record_stories(writer, 4, "PG-R2")  # more commands while no relay runs
    total = writer.recorder.max_notification_id()
    assert total > 20

    restarted = OutboxRelay(open_service(), kafka_producer_factory(bootstrap), topic=topic, flush_timeout=30.0)
    assert restarted.name == first.name
    assert restarted.position == 20  # read back from PostgreSQL by a new service and a new recorder
    published = 0
    while (n := restarted.run_once(limit=7)) > 0:
        published += n
    restarted.close()
    assert published == total - 20
    assert restarted.position == total
    assert sql(postgres, database, position_row, first.name) == [(total,)]

    messages = [(r.key, r.value) for r in read_topic(bootstrap, topic)]
    assert len(messages) == total, "a record was published twice or not at all"
    recorded = contract.recorded_records(writer)
    copies = contract.check_topic(messages, recorded, expected)  # keyed by order id, fold gives the statuses
    assert len(copies) == total
    partitions = {r.partition for r in read_topic(bootstrap, topic)}
    assert len(partitions) > 1, "all orders landed on one partition"


# --- 4. illegal commands ---------------------------------------------------------------------------------


def test_illegal_commands_are_refused_and_nothing_is_recorded(
        postgres: infra_postgres.Cluster, database: str, open_service: Callable[[], OrderService]) -> None:
    service = open_service()
    at = drive(service, "PG-ILL", ["create", "confirm_payment"])
    before = open_service().view("PG-ILL")
    rows_before = sql(postgres, database, f"SELECT originator_version, topic FROM {EVENTS_TABLE} ORDER BY 1")
    assert len(rows_before) == 2

    deliver, deliver_kwargs = command_for("deliver", "PG-ILL", at)
    with pytest.raises(CommandRejected, match="not allowed in state PAID"):
        service.execute(deliver, "PG-ILL", **deliver_kwargs)
    create, create_kwargs = command_for("create", "PG-ILL", at)
    with pytest.raises(OrderAlreadyExists):
        service.execute(create, "PG-ILL", **create_kwargs)
    pay, pay_kwargs = command_for("confirm_payment", "PG-NOPE", at)
    with pytest.raises(OrderNotFound):
        service.execute(pay, "PG-NOPE", **pay_kwargs)

    assert open_service().view("PG-ILL") == before
    assert open_service().find("PG-NOPE") is None
    assert sql(postgres, database, f"SELECT originator_version, topic FROM {EVENTS_TABLE} ORDER BY 1") == rows_before
    assert service.recorder.max_notification_id() == 2
